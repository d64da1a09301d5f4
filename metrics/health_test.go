package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLagAt(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		streaming bool
		lag       time.Duration
		asOf      time.Time
		want      time.Duration
		known     bool
	}{
		{name: "streaming caught up", streaming: true, asOf: now.Add(-time.Hour), want: 0, known: true},
		{name: "streaming behind", streaming: true, lag: 5 * time.Second, want: 5 * time.Second, known: true},
		{name: "disconnected: time since the stored commit or heartbeat", asOf: now.Add(-10 * time.Minute), lag: 0,
			want: 10 * time.Minute, known: true},
		{name: "disconnected while behind: the stored commit is older than the lag said", asOf: now.Add(-time.Minute),
			lag: 50 * time.Second, want: time.Minute, known: true},
		{name: "disconnected, nothing proves a time", want: 0, known: false},
		{name: "clock skew never gives a negative lag", asOf: now.Add(time.Second), want: 0, known: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, known := lagAt(now, tc.streaming, tc.lag, tc.asOf)
			if got != tc.want || known != tc.known {
				t.Errorf("lagAt = %s, %v; want %s, %v", got, known, tc.want, tc.known)
			}
		})
	}
}

// scrape returns the /metrics text and the /readyz status and body.
func scrape(t *testing.T, m *Metrics) (metrics string, ready int, why string) {
	t.Helper()
	srv := httptest.NewServer(m.Handler(time.Second))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, metrics = get("/metrics")
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	ready, why = get("/readyz")
	return metrics, ready, why
}

func hasLine(metrics, line string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// TestLagRisesWhileDisconnected follows a daemon that streams, loses its
// servers and halts: the lag rises from the stored position, and without
// one that proves a time it says it cannot tell.
func TestLagRisesWhileDisconnected(t *testing.T) {
	m := New()
	out, code, why := scrape(t, m)
	for _, want := range []string{"replicator_lag_seconds NaN", "replicator_lag_known 0",
		`replicator_connected{server="clickhouse"} 0`, `replicator_connected{server="postgres"} 0`,
		`replicator_halted{reason="bad_data"} 0`, "replicator_last_checkpoint_timestamp_seconds 0",
		"replicator_config_last_reload_successful 1"} {
		if !hasLine(out, want) {
			t.Errorf("at start, /metrics lacks %q", want)
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(why, "not streaming") {
		t.Errorf("/readyz at start: %d %q", code, why)
	}

	m.SetConnected("postgres", true)
	m.SetConnected("clickhouse", true)
	m.SetStreaming(true)
	m.SetLag(0, 0)
	written := time.Now().Add(-2 * time.Second)
	m.Durable(written, time.Now().Add(-3*time.Second))
	m.Durable(time.Time{}, time.Now().Add(-time.Hour)) // an older proof does not move it back
	if lag, known := m.lagAt(time.Now().Add(time.Minute)); !known || lag > 2*time.Minute {
		t.Errorf("an older proof moved the lag back: %s %v", lag, known)
	}
	// An idle position that nothing proves makes it unknown; the next
	// commit checkpoint makes it known again.
	m.SetStreaming(false)
	m.Durable(time.Now(), time.Time{})
	if _, known := m.lagAt(time.Now()); known {
		t.Error("an idle position without a heartbeat left the lag known")
	}
	m.SetStreaming(true)
	m.Durable(written, time.Now().Add(-3*time.Second))
	out, code, _ = scrape(t, m)
	if !hasLine(out, "replicator_lag_seconds 0") || !hasLine(out, "replicator_lag_known 1") || code != http.StatusOK ||
		!hasLine(out, "replicator_ready 1") || !hasLine(out, "replicator_streaming 1") {
		t.Errorf("streaming, caught up: /readyz %d\n%s", code, grep(out, "replicator_lag"))
	}

	// The servers go away: the lag is the time since the stored position.
	m.SetStreaming(false)
	m.SetConnected("postgres", false)
	lag, known := m.lagAt(time.Now())
	if !known || lag < 3*time.Second || lag > time.Minute {
		t.Errorf("disconnected: lag %s known %v, want about 3s", lag, known)
	}
	later, _ := m.lagAt(time.Now().Add(10 * time.Minute))
	if later < 10*time.Minute {
		t.Errorf("the lag does not rise while disconnected: %s ten minutes later", later)
	}
	out, code, why = scrape(t, m)
	if !hasLine(out, `replicator_connected{server="postgres"} 0`) || !hasLine(out, `replicator_connected{server="clickhouse"} 1`) {
		t.Errorf("connected:\n%s", grep(out, "replicator_connected"))
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(why, "not streaming") {
		t.Errorf("/readyz disconnected: %d %q", code, why)
	}
	if !strings.Contains(out, "replicator_last_checkpoint_timestamp_seconds 1.") {
		t.Errorf("last checkpoint time:\n%s", grep(out, "replicator_last_checkpoint"))
	}

	// Halted: /readyz says why, the metric too; /healthz stays 200.
	m.SetHalt(&Halt{Reason: ReasonBadData, Err: errors.New(`public.events: column project_id: negative`).Error(), Since: time.Now()})
	out, code, why = scrape(t, m)
	if code != http.StatusServiceUnavailable || !strings.Contains(why, "halted (bad_data)") || !strings.Contains(why, "column project_id") {
		t.Errorf("/readyz halted: %d %q", code, why)
	}
	if !hasLine(out, `replicator_halted{reason="bad_data"} 1`) || !hasLine(out, "replicator_ready 0") || !hasLine(out, "replicator_streaming 0") {
		t.Errorf("halted:\n%s", grep(out, "replicator_"))
	}
	m.SetHalt(nil)
	if out, _, _ = scrape(t, m); !hasLine(out, `replicator_halted{reason="bad_data"} 0`) {
		t.Errorf("after the halt:\n%s", grep(out, "replicator_halted"))
	}
}

func TestBuildInfoAndReload(t *testing.T) {
	m := New()
	m.SetBuildInfo("1.2.3", "abc123")
	m.Reloaded(false)
	out, _, _ := scrape(t, m)
	if !strings.Contains(out, `replicator_build_info{commit="abc123",goversion="go`) || !strings.Contains(out, `version="1.2.3"} 1`) {
		t.Errorf("build info:\n%s", grep(out, "build_info"))
	}
	if !hasLine(out, "replicator_config_last_reload_successful 0") {
		t.Errorf("a failed reload:\n%s", grep(out, "reload"))
	}
	for _, want := range []string{"go_goroutines ", "process_start_time_seconds ", "process_resident_memory_bytes "} {
		if !strings.Contains(out, "\n"+want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	m.Reloaded(true)
	if out, _, _ = scrape(t, m); !hasLine(out, "replicator_config_last_reload_successful 1") {
		t.Errorf("a successful reload:\n%s", grep(out, "reload"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

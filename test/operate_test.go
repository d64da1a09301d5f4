package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replicator/replicator/test/harness"
)

func (e *env) statusCode(args ...string) (map[string]any, int, string) {
	e.t.Helper()
	out, errs, code := e.cli(append([]string{"status", "--config", e.config, "--json"}, args...)...)
	m := map[string]any{}
	if out != "" {
		if err := jsonUnmarshal(out, &m); err != nil {
			e.t.Fatalf("status json: %v\n%s", err, out)
		}
	}
	return m, code, errs
}

func num(m map[string]any, k string) float64 {
	f, _ := m[k].(float64)
	return f
}

// TestStatusLag checks lag_bytes and lag_seconds while the daemon is
// stopped (they grow), after a restart (back to ~0), and when idle (0), and
// the exit codes of --max-lag.
func TestStatusLag(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	d := e.start()
	e.insertEvents(100)
	e.converge("before stop", convergeTimeout)
	d.stop(t)

	e.insertEvents(50)
	time.Sleep(1500 * time.Millisecond)
	first, code, _ := e.statusCode()
	if code != 0 {
		t.Fatalf("status exit %d without --max-lag", code)
	}
	e.insertEvents(50)
	time.Sleep(time.Second)
	second, _, _ := e.statusCode()
	for _, k := range []string{"slot", "slot_active", "wal_status", "current_wal_lsn", "confirmed_flush_lsn", "restart_lsn",
		"checkpoint_lsn", "lag_bytes", "retained_wal_bytes", "last_commit_time", "lag_seconds", "tables"} {
		if _, ok := second[k]; !ok {
			t.Errorf("status JSON lacks %q", k)
		}
	}
	if second["slot_active"] != false {
		t.Errorf("slot_active = %v while the daemon is stopped", second["slot_active"])
	}
	if num(first, "lag_seconds") < 1.4 || num(second, "lag_seconds") <= num(first, "lag_seconds") {
		t.Errorf("lag_seconds while stopped: %v then %v, want >= 1.5 and growing", first["lag_seconds"], second["lag_seconds"])
	}
	if num(second, "lag_bytes") <= num(first, "lag_bytes") || num(first, "lag_bytes") <= 0 {
		t.Errorf("lag_bytes while stopped: %v then %v, want > 0 and growing", first["lag_bytes"], second["lag_bytes"])
	}
	if _, code, errs := e.statusCode("--max-lag", "1s"); code == 0 {
		t.Errorf("--max-lag 1s exits 0 with lag %v", second["lag_seconds"])
	} else if !strings.Contains(errs, "max-lag") {
		t.Errorf("--max-lag failure does not say why: %s", errs)
	}
	if _, code, _ := e.statusCode("--max-lag", "1h"); code != 0 {
		t.Errorf("--max-lag 1h exits %d", code)
	}

	d = e.start()
	e.converge("after restart", convergeTimeout)
	// Idle: heartbeats and keepalives bring the checkpoint to the WAL end.
	deadline := time.Now().Add(30 * time.Second)
	var st map[string]any
	for time.Now().Before(deadline) {
		st, _, _ = e.statusCode()
		if num(st, "lag_seconds") == 0 && num(st, "lag_bytes") < 4096 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if num(st, "lag_seconds") != 0 || num(st, "lag_bytes") >= 4096 || st["slot_active"] != true {
		t.Errorf("idle after catching up: lag_seconds %v lag_bytes %v slot_active %v, want 0, ~0, true",
			st["lag_seconds"], st["lag_bytes"], st["slot_active"])
	}
	d.stop(t)
}

// TestStatusOnALargeBacklog gives a stopped daemon's slot one transaction
// that Postgres takes longer to decode than status may hold the slot (a
// daemon starting meanwhile waits 10 s for it, then exits): status
// returns within its limit, with the age of the last stored commit as an
// upper bound of the lag, and leaves the slot free.
func TestStatusOnALargeBacklog(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	d := e.start()
	e.insertEvents(10)
	e.converge("before stop", convergeTimeout)
	d.stop(t)
	// One transaction whose decoding takes well over status's 2 s: 3
	// million rows took 1.9 to 5 s on this machine, depending on its load.
	e.exec(`INSERT INTO events (author_id, action) SELECT g, 1 FROM generate_series(1, 6000000) g`)
	start := time.Now()
	e.exec(`SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, 16, 'proto_version', '1', 'publication_names', $2)`,
		"slot_"+e.name, "pub_"+e.name)
	full := time.Since(start)
	if full < 3*time.Second {
		t.Fatalf("one peek decodes the backlog in %s: too little backlog for this test", full)
	}
	start = time.Now()
	st, code, errs := e.statusCode()
	took := time.Since(start)
	t.Logf("a peek decodes the backlog in %s; status took %s", full.Round(time.Millisecond), took.Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("status exited %d: %s", code, errs)
	}
	if took > 3500*time.Millisecond {
		t.Errorf("status took %s, a peek of the backlog %s: it held the slot for the whole backlog", took, full)
	}
	if st["lag_upper_bound"] != true || num(st, "lag_seconds") <= 0 {
		t.Errorf("lag_seconds %v, lag_upper_bound %v; want the age of the last stored commit, as a bound", st["lag_seconds"], st["lag_upper_bound"])
	}
	var active bool
	if err := e.pg.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", "slot_"+e.name).Scan(&active); err != nil || active {
		t.Errorf("slot active %v (%v) after status, want free", active, err)
	}
}

// TestHeartbeatAdvancesIdleSlot writes only to an unpublished table: the
// slot's confirmed_flush_lsn and the checkpoint must follow the WAL.
func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	e := newEnv(t, "")
	e.exec(`CREATE TABLE other (id bigserial PRIMARY KEY, payload text)`)
	e.setup()
	d := e.start()
	defer d.stop(t)
	time.Sleep(2 * time.Second)
	before := e.status()
	for i := 0; i < 20; i++ {
		e.exec(`INSERT INTO other (payload) SELECT repeat('x', 200) FROM generate_series(1, 500)`)
		time.Sleep(100 * time.Millisecond)
	}
	var after map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		after = e.status()
		if after["checkpoint_lsn"] != before["checkpoint_lsn"] && num(after, "lag_bytes") < 4096 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if after["checkpoint_lsn"] == before["checkpoint_lsn"] || after["confirmed_flush_lsn"] == before["confirmed_flush_lsn"] {
		t.Errorf("checkpoint/confirmed_flush did not advance: before %v/%v after %v/%v",
			before["checkpoint_lsn"], before["confirmed_flush_lsn"], after["checkpoint_lsn"], after["confirmed_flush_lsn"])
	}
	if num(after, "lag_bytes") >= 4096 {
		t.Errorf("lag_bytes = %v after idle writes elsewhere, want ~0", after["lag_bytes"])
	}
	if m := e.scrape(); metric(m, `replicator_heartbeats_total`) < 2 {
		t.Errorf("fewer than 2 heartbeats recorded")
	}
}

func (e *env) scrape() string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.monitor + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of the first sample whose name and labels start
// with prefix.
func metric(text, prefix string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `(\{[^}]*\})?\s+(\S+)$`)
	if m := re.FindStringSubmatch(text); m != nil {
		f, _ := strconv.ParseFloat(m[2], 64)
		return f
	}
	return -1
}

func TestMetricsMatchChanges(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.insertEvents(100)
	e.exec(`UPDATE events SET action = 3 WHERE id <= 30`)
	e.exec(`DELETE FROM events WHERE id > 90`)
	e.converge("metrics workload", convergeTimeout)
	var m string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m = e.scrape()
		if metric(m, `replicator_transactions_total`) >= 3 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{`replicator_changes_total{op="insert",table="public.events"}`, 100},
		{`replicator_changes_total{op="update",table="public.events"}`, 30},
		{`replicator_changes_total{op="delete",table="public.events"}`, 10},
		{`replicator_transactions_total`, 3},
	} {
		if got := metric(m, c.name); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	for _, name := range []string{"replicator_flushes_total", "replicator_flush_duration_seconds_count", "replicator_flush_rows_count",
		"replicator_checkpoint_lsn", "replicator_lag_seconds", "replicator_lag_bytes", "replicator_reconnects_total",
		`replicator_errors_total{kind="clickhouse"}`, "replicator_retained_wal_bytes", "replicator_build_info",
		"replicator_config_last_reload_successful", "process_start_time_seconds", "process_resident_memory_bytes", "go_goroutines"} {
		if metric(m, name) < 0 {
			t.Errorf("metric %s missing", name)
		}
	}
	if metric(m, "replicator_flushes_total") < 1 || metric(m, "replicator_checkpoint_lsn") <= 0 {
		t.Errorf("no flush or checkpoint recorded")
	}
	resp, err := http.Get("http://" + e.monitor + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz: %v %v", resp, err)
	}
}

// TestReadyzFlipsWithLag sets the ready bound at 1s and applies a
// transaction that takes longer than that to copy: /readyz must fail while
// it is behind and pass again once caught up.
func TestReadyzFlipsWithLag(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	d := e.start()
	defer d.stop(t)
	ready := func() int {
		resp, err := http.Get("http://" + e.monitor + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(15 * time.Second)
	for ready() != 200 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if code := ready(); code != 200 {
		t.Fatalf("/readyz = %d when idle, want 200", code)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.insertEvents(400000)
	}()
	sawNotReady := false
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if ready() == 503 {
			sawNotReady = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-done
	if !sawNotReady {
		t.Error("/readyz never failed while a 400k-row transaction was behind by more than 1s")
	}
	e.converge("after the big transaction", 2*convergeTimeout)
	deadline = time.Now().Add(30 * time.Second)
	for ready() != 200 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if code := ready(); code != 200 {
		t.Errorf("/readyz = %d after catching up, want 200", code)
	}
}

// TestLostSlotStops makes Postgres invalidate the slot
// (max_slot_wal_keep_size) while the daemon is stopped: with
// postgres.recovery = "manual" run must refuse with an error that says
// data is missing and how to recover; by default it recovers.
func TestLostSlotStops(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	pg, err := harness.StartPostgres(ctx, harness.Options{Fast: true, PGSettings: map[string]string{
		"max_slot_wal_keep_size": "1MB", "min_wal_size": "32MB", "max_wal_size": "64MB"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if _, err := pg.Psql(ctx, "postgres", eventsDDL+"; CREATE TABLE filler (x text)"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "")
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(cfg), pgServer.DSN(e.name), pg.DSN("postgres"), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.setup()
	status := ""
	for i := 0; i < 40 && status != "lost"; i++ {
		if _, err := pg.Psql(ctx, "postgres", `INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 5000);
			SELECT pg_switch_wal(); CHECKPOINT;`); err != nil {
			t.Fatal(err)
		}
		status, err = pg.Psql(ctx, "postgres", fmt.Sprintf("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'slot_%s'", e.name))
		if err != nil {
			t.Fatal(err)
		}
	}
	if status != "lost" {
		t.Fatalf("could not make the slot lost (wal_status %q)", status)
	}
	st, code, _ := e.statusCode()
	if code == 0 || st["wal_status"] != "lost" {
		t.Errorf("status on a lost slot: exit %d wal_status %v, want non-zero and lost", code, st["wal_status"])
	}
	manual := e.dir + "/manual.hcl"
	if err := os.WriteFile(manual, []byte(strings.Replace(string(must(os.ReadFile(e.config))), `publication = "pub_`,
		`recovery = "manual"
  publication = "pub_`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := e.startWith(manual)
	if code := d.wait(t, 30*time.Second); code == 0 {
		t.Fatal("daemon ran on a lost slot")
	}
	logs := d.Logs()
	for _, want := range []string{"slot-lost", "invalidated", "replicator resync --all"} {
		if !strings.Contains(logs, want) {
			t.Errorf("error does not say %q:\n%s", want, tail(logs, 1500))
		}
	}
	// By default the daemon copies every table again from a new slot.
	d = e.start()
	e.waitLog(d, "complete: every table holds the rows of the server's history")
	d.stop(t)
}

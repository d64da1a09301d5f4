package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Servers are the values of replicator_connected's server label.
var Servers = []string{"postgres", "clickhouse"}

// HaltReasons are the values of replicator_halted's reason label.
var HaltReasons = []string{ReasonBadData}

// ReasonBadData is the halt of a daemon that met a value it cannot map
// (a *mapping.RowError): only a change of the configuration or of the data
// gets it past it.
const ReasonBadData = "bad_data"

// Halt is why the daemon stays stopped.
type Halt struct {
	Reason string
	Err    string
	Since  time.Time
}

// SetStreaming records whether the replication stream is up.
func (m *Metrics) SetStreaming(up bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.streaming = up
	m.mu.Unlock()
}

// SetLag records the lag while streaming.
func (m *Metrics) SetLag(lag time.Duration, bytes uint64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.lag = lag
	m.mu.Unlock()
	m.LagBytes.Set(float64(bytes))
}

// SetConnected records whether the daemon reached server (one of Servers)
// or lost its connection to it.
func (m *Metrics) SetConnected(server string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.Connected.WithLabelValues(server).Set(v)
}

// Durable records a checkpoint saved in ClickHouse at written that covers
// every transaction that committed before asOf: the commit time of its
// newest transaction, or for a position reached while idle the emission
// time of the newest heartbeat it covers. A zero asOf (an idle position
// that no heartbeat proves, as without heartbeats) makes the lag unknown
// until the stream is up again: the daemon cannot tell whether anything
// committed since. asOf never moves back.
func (m *Metrics) Durable(written, asOf time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if !written.IsZero() {
		m.lastWritten = float64(written.UnixNano()) / 1e9
		m.LastCheckpoint.Set(m.lastWritten)
	}
	switch {
	case asOf.IsZero():
		m.asOf = time.Time{}
	case asOf.After(m.asOf):
		m.asOf = asOf
	}
	m.mu.Unlock()
}

// Loaded records the checkpoint a session starts from, saved at written
// (zero: not known) and covering every transaction that committed before
// asOf (zero: it proves no time). Unlike Durable it only adds what it
// knows: the lag this process measured before stays.
func (m *Metrics) Loaded(written, asOf time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !written.IsZero() && float64(written.Unix()) > m.lastWritten {
		m.lastWritten = float64(written.Unix())
		m.LastCheckpoint.Set(float64(written.Unix()))
	}
	if asOf.After(m.asOf) {
		m.asOf = asOf
	}
}

// lagAt returns the lag at now and whether it is known.
func (m *Metrics) lagAt(now time.Time) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return lagAt(now, m.streaming, m.lag, m.asOf)
}

// lagAt is the lag at now. While streaming it is the lag the applier
// measured (the age of the oldest received, unstored commit; 0 when caught
// up). Otherwise nothing new is stored, so it is the time since asOf,
// before which every committed transaction is stored: it rises while the
// daemon is disconnected, retrying or halted. An asOf of zero means that
// no stored position proves a time (idle without heartbeats, nothing read
// yet): the lag is not known.
func lagAt(now time.Time, streaming bool, lag time.Duration, asOf time.Time) (time.Duration, bool) {
	switch {
	case streaming:
		return lag, true
	case asOf.IsZero():
		return 0, false
	}
	return max(now.Sub(asOf), 0), true
}

// SetHalt records that the daemon stays stopped for reason (one of
// HaltReasons) on err; nil clears it.
func (m *Metrics) SetHalt(h *Halt) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.halt = h
	m.mu.Unlock()
	for _, r := range HaltReasons {
		v := 0.0
		if h != nil && h.Reason == r {
			v = 1
		}
		m.Halted.WithLabelValues(r).Set(v)
	}
}

// SetBuildInfo exports replicator_build_info; an empty commit is taken from
// the binary's VCS stamp where Go recorded one.
func (m *Metrics) SetBuildInfo(version, commit string) {
	if m == nil {
		return
	}
	if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
}

// Reloaded records a reading of the configuration file on SIGHUP: ok
// false when it had an error and the daemon kept its configuration.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	if !ok {
		m.ReloadSuccess.Set(0)
		return
	}
	m.ReloadSuccess.Set(1)
	m.ReloadTime.Set(float64(time.Now().Unix()))
}

// gauge returns 1 when f, called under the lock, is true.
func (m *Metrics) gauge(f func() bool) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f() {
		return 1
	}
	return 0
}

// Readiness reports whether the stream is up and the lag is at most maxLag;
// a halted daemon is not ready, and says why.
func (m *Metrics) Readiness(maxLag time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ready(maxLag)
}

func (m *Metrics) ready(maxLag time.Duration) error {
	switch {
	case m.halt != nil:
		return fmt.Errorf("halted (%s) since %s: %s", m.halt.Reason, m.halt.Since.UTC().Format(time.RFC3339), m.halt.Err)
	case !m.streaming:
		return errors.New("not streaming")
	case m.lag > maxLag:
		return fmt.Errorf("lag %s exceeds %s", m.lag.Round(time.Millisecond), maxLag)
	}
	return nil
}

// Handler serves /metrics, /healthz (process alive, also while halted) and
// /readyz (streaming, lag at most maxLag, not halted).
func (m *Metrics) Handler(maxLag time.Duration) http.Handler {
	m.mu.Lock()
	m.readyMaxLag = maxLag
	m.mu.Unlock()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := m.Readiness(maxLag); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

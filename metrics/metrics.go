// Package metrics holds the daemon's Prometheus metrics and serves them with
// its health endpoints. It observes; it never changes what is replicated.
package metrics

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the daemon's counters and gauges. The zero of *Metrics (nil)
// records nothing, so components work without it.
type Metrics struct {
	reg *prometheus.Registry

	Changes       *prometheus.CounterVec
	Transactions  prometheus.Counter
	Flushes       prometheus.Counter
	FlushDuration prometheus.Histogram
	FlushRows     prometheus.Histogram
	LagBytes      prometheus.Gauge
	// LagSeconds and LagKnown are computed at each scrape (see lagAt).
	LagSeconds     prometheus.GaugeFunc
	LagKnown       prometheus.GaugeFunc
	Streaming      prometheus.GaugeFunc
	Ready          prometheus.GaugeFunc
	Connected      *prometheus.GaugeVec
	LastCheckpoint prometheus.Gauge
	Halted         *prometheus.GaugeVec
	BuildInfo      *prometheus.GaugeVec
	ReloadSuccess  prometheus.Gauge
	ReloadTime     prometheus.Gauge
	RetainedWAL    prometheus.Gauge
	CheckpointLSN  prometheus.Gauge
	Reconnects     prometheus.Counter
	Retries        *prometheus.CounterVec
	Retrying       prometheus.Gauge
	Errors         *prometheus.CounterVec
	Heartbeats     prometheus.Counter
	Held           prometheus.Gauge
	Invalid        *prometheus.CounterVec
	StreamedOpen   prometheus.Gauge
	SpoolMemory    prometheus.Gauge
	SpoolDisk      prometheus.Gauge
	Rewrites       *prometheus.CounterVec
	HistoryBreaks  *prometheus.CounterVec
	Recovering     prometheus.Gauge
	Recoveries     *prometheus.CounterVec
	// Continuous verification (verify.Sampler).
	VerifyDifferences *prometheus.GaugeVec
	VerifyRows        *prometheus.CounterVec
	VerifyLastPass    *prometheus.GaugeVec
	VerifyErrors      prometheus.Counter
	CompactRows       *prometheus.CounterVec
	CompactLast       *prometheus.GaugeVec
	CompactErrors     prometheus.Counter

	mu        sync.Mutex
	streaming bool
	lag       time.Duration
	// asOf is a time before which every committed transaction is stored
	// in ClickHouse (zero: not known), see Durable.
	asOf        time.Time
	lastWritten float64
	halt        *Halt
	readyMaxLag time.Duration
}

// New returns metrics registered on a new registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.Changes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_changes_total",
		Help: "Row changes applied, by source table and operation (insert, update, delete)."}, []string{"table", "op"})
	m.Transactions = prometheus.NewCounter(prometheus.CounterOpts{Name: "replicator_transactions_total",
		Help: "Transactions applied (replayed ones already stored are not counted)."})
	m.Flushes = prometheus.NewCounter(prometheus.CounterOpts{Name: "replicator_flushes_total",
		Help: "Flushes to ClickHouse (data INSERTs followed by a checkpoint)."})
	m.FlushDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replicator_flush_duration_seconds",
		Help: "Time to write a flush's INSERTs and checkpoint.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)})
	m.FlushRows = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replicator_flush_rows",
		Help: "Rows written per flush.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)})
	m.LagBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_lag_bytes",
		Help: "Server WAL end minus the checkpoint, as of the latest server message."})
	m.LagSeconds = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "replicator_lag_seconds",
		Help: "While streaming: age of the oldest committed change received but not yet stored in ClickHouse, 0 when caught up. " +
			"Otherwise (disconnected, retrying, halted): time since the newest commit or heartbeat the last durable checkpoint covers, " +
			"rising; NaN when that is not known (replicator_lag_known 0)."},
		func() float64 {
			lag, ok := m.lagAt(time.Now())
			if !ok {
				return math.NaN()
			}
			return lag.Seconds()
		})
	m.LagKnown = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "replicator_lag_known",
		Help: "1 when replicator_lag_seconds is known; 0 when the daemon does not stream and its checkpoint proves no time " +
			"(idle without heartbeats, or nothing read from ClickHouse since the start)."},
		func() float64 {
			if _, ok := m.lagAt(time.Now()); ok {
				return 1
			}
			return 0
		})
	m.Streaming = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "replicator_streaming",
		Help: "1 while the replication stream is up, else 0."}, func() float64 { return m.gauge(func() bool { return m.streaming }) })
	m.Ready = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "replicator_ready",
		Help: "1 while /readyz answers 200 (streaming, lag at most monitor.ready_max_lag, not halted), else 0."},
		func() float64 { return m.gauge(func() bool { return m.ready(m.readyMaxLag) == nil }) })
	m.Connected = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replicator_connected",
		Help: "1 when the daemon's last attempt to reach the server succeeded and no connection to it was lost since, else 0; by server (postgres, clickhouse)."},
		[]string{"server"})
	m.LastCheckpoint = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_last_checkpoint_timestamp_seconds",
		Help: "Unix time the newest checkpoint was saved in ClickHouse (0: none read or saved since the start)."})
	m.Halted = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replicator_halted",
		Help: "1 while the daemon stays stopped on an error that a restart cannot fix, by reason (bad_data: a value it cannot map); " +
			"nothing is acknowledged meanwhile, and a SIGHUP tries again."},
		[]string{"reason"})
	m.BuildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replicator_build_info",
		Help: "1, labelled with the daemon's version, commit and Go version."}, []string{"version", "commit", "goversion"})
	m.ReloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_config_last_reload_successful",
		Help: "1 when the last reading of the configuration file (at start or on SIGHUP) succeeded, 0 when it had an error and the daemon kept its configuration."})
	m.ReloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful reading of the configuration file (at start or on SIGHUP)."})
	m.RetainedWAL = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_retained_wal_bytes",
		Help: "WAL the slot keeps on the Postgres server (current WAL minus restart_lsn), checked each minute."})
	m.CheckpointLSN = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_checkpoint_lsn",
		Help: "The newest checkpoint saved in ClickHouse, as a number."})
	m.Reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "replicator_reconnects_total",
		Help: "Reconnects after a lost connection to Postgres or ClickHouse."})
	m.Retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_retries_total",
		Help: "Sessions ended by a transient error and retried from the checkpoint, by reason (replica_unavailable, quorum_not_met, zookeeper_unavailable, clickhouse_connection, postgres_connection, ...)."},
		[]string{"reason"})
	m.Retrying = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_retrying",
		Help: "1 from a transient error until a new session streams again: nothing new is acknowledged meanwhile."})
	m.Errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_errors_total",
		Help: "Errors by kind: postgres, clickhouse, mapping, other."}, []string{"kind"})
	m.Heartbeats = prometheus.NewCounter(prometheus.CounterOpts{Name: "replicator_heartbeats_total",
		Help: "Heartbeat messages written with pg_logical_emit_message."})
	m.Held = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_checkpoint_held",
		Help: "1 while the checkpoint is held for a table copy in progress (setup of an added table, resync), else 0."})
	m.Invalid = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_invalid_values_total",
		Help: "Values a column's type cannot hold, stored as its default or nearest value by the column's invalid option."},
		[]string{"table", "column"})
	m.StreamedOpen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_streamed_transactions_open",
		Help: "Transactions Postgres is streaming before their commit (protocol 2), held until it or their abort comes."})
	m.SpoolMemory = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_stream_spool_memory_bytes",
		Help: "Bytes of open streamed transactions held in memory (bounded by stream.memory)."})
	m.SpoolDisk = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_stream_spool_disk_bytes",
		Help: "Bytes of open streamed transactions spilled to files in stream.spill_dir (bounded by stream.spill_limit)."})
	m.Rewrites = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_rewrites_total",
		Help: "Table rewrites noticed by the storage check, by what was done: recorded (no value in doubt), verified (equal), recopied."},
		[]string{"action"})
	m.HistoryBreaks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_history_breaks_total",
		Help: "Sessions refused because the Postgres server does not continue the history of the checkpoint, by reason (other-system, timeline, rollback, diverged, slot-missing, slot-lost, slot-ahead)."},
		[]string{"reason"})
	m.Recovering = prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicator_recovering",
		Help: "1 while the daemon copies every table again because the Postgres server does not continue the checkpoint's history (readers keep the previous copy of each table until its new one is in place), else 0."})
	m.Recoveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_recoveries_total",
		Help: "Recoveries completed, by the reason of the history break."}, []string{"reason"})
	m.VerifyDifferences = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replicator_verify_differences",
		Help: "Keys continuous verification found lastingly different between Postgres and ClickHouse in its last complete cycle over the table (or in the current one, when more), by source table."},
		[]string{"table"})
	m.VerifyRows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_verify_rows_total",
		Help: "Postgres rows continuous verification compared, by source table."}, []string{"table"})
	m.VerifyLastPass = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replicator_verify_last_pass_timestamp_seconds",
		Help: "Unix time the latest pass of continuous verification of the table completed."}, []string{"table"})
	m.VerifyErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "replicator_verify_errors_total",
		Help: "Passes of continuous verification that failed (logged; the next pass tries again)."})
	m.CompactRows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replicator_compaction_rows_total",
		Help: "Rows of deleted keys scheduled compaction removed, by source table."}, []string{"table"})
	m.CompactLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replicator_compaction_last_success_timestamp_seconds",
		Help: "Unix time the latest scheduled compaction of the table completed."}, []string{"table"})
	m.CompactErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "replicator_compaction_errors_total",
		Help: "Scheduled compactions that failed (logged; the next one tries again)."})
	for _, c := range []prometheus.Collector{m.Changes, m.Transactions, m.Flushes, m.FlushDuration, m.FlushRows,
		m.LagBytes, m.LagSeconds, m.RetainedWAL, m.CheckpointLSN, m.Reconnects, m.Retries, m.Retrying, m.Errors, m.Heartbeats, m.Held, m.Invalid,
		m.StreamedOpen, m.SpoolMemory, m.SpoolDisk, m.Rewrites, m.HistoryBreaks, m.Recovering, m.Recoveries,
		m.VerifyDifferences, m.VerifyRows, m.VerifyLastPass, m.VerifyErrors, m.CompactRows, m.CompactLast, m.CompactErrors,
		m.LagKnown, m.Streaming, m.Ready, m.Connected, m.LastCheckpoint, m.Halted, m.BuildInfo, m.ReloadSuccess, m.ReloadTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	for _, s := range Servers {
		m.Connected.WithLabelValues(s)
	}
	for _, r := range HaltReasons {
		m.Halted.WithLabelValues(r)
	}
	m.ReloadSuccess.Set(1)
	m.ReloadTime.Set(float64(time.Now().Unix()))
	for _, k := range []string{"postgres", "clickhouse", "mapping", "other"} {
		m.Errors.WithLabelValues(k)
	}
	for _, a := range []string{"recorded", "verified", "recopied"} {
		m.Rewrites.WithLabelValues(a)
	}
	return m
}

// SetSpool records the streamed transactions held until their commit and
// the bytes they hold in memory and on disk.
func (m *Metrics) SetSpool(txns int, memory, disk int64) {
	if m == nil {
		return
	}
	m.StreamedOpen.Set(float64(txns))
	m.SpoolMemory.Set(float64(memory))
	m.SpoolDisk.Set(float64(disk))
}

// Server serves Handler on an address until its Serve context ends.
type Server struct {
	addr string
	h    http.Handler
	ln   net.Listener
}

// NewServer returns a server; it starts nothing.
func NewServer(addr string, h http.Handler) *Server { return &Server{addr: addr, h: h} }

// Listen binds the server's address, so that a caller says it serves only
// once it does.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("monitor listen %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the address Listen bound.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves on the address Listen bound until ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("monitor server: %w", err)
	}
}

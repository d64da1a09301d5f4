package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// Runner runs the replication daemon: it streams the slot, writes changes
// to ClickHouse, checkpoints them, and acknowledges to Postgres only what the
// checkpoint covers.
type Runner struct {
	cfg     config.Config
	log     hclog.Logger
	metrics *metrics.Metrics
	// ShutdownTimeout bounds the final flush after a stop.
	ShutdownTimeout time.Duration
	// MaxBackoff caps the wait between reconnects.
	MaxBackoff time.Duration
}

// NewRunner returns a runner; it starts nothing.
func NewRunner(cfg config.Config, log hclog.Logger) *Runner {
	return &Runner{cfg: cfg, log: log, metrics: metrics.New(), ShutdownTimeout: 10 * time.Second, MaxBackoff: 30 * time.Second}
}

// Run runs replication, the monitor endpoint, heartbeats and the WAL
// safety check until ctx is done or one of them fails. After a stop it
// flushes what is complete, checkpoints, acknowledges and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if addr := r.cfg.Monitor.Listen; addr != "" {
		srv := metrics.NewServer(addr, r.metrics.Handler(r.cfg.Monitor.ReadyMaxLag))
		g.Go(func() error { return srv.Run(gctx) })
		r.log.Info("serving /metrics, /healthz and /readyz", "addr", addr)
	}
	g.Go(func() error { return r.watch(gctx) })
	g.Go(func() error {
		err := r.replicate(gctx)
		if err == nil {
			// Stopped: end the other parts too.
			return errStopped
		}
		return err
	})
	if err := g.Wait(); err != nil && !errors.Is(err, errStopped) {
		return err
	}
	return nil
}

var errStopped = errors.New("stopped")

// replicate runs sessions until ctx is done (then it flushes what is
// complete, checkpoints, acknowledges and returns nil) or a permanent error
// occurs. Transient connection errors are retried with capped exponential
// backoff and jitter; every retry restarts from the checkpoint in ClickHouse.
func (r *Runner) replicate(ctx context.Context) error {
	backoff := time.Second
	var lostAt time.Time // when the last connection loss happened
	for attempt := 1; ; attempt++ {
		started := time.Now()
		err := r.session(ctx)
		r.metrics.SetStreaming(false)
		if err == nil || ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil
		}
		r.metrics.Errors.WithLabelValues(errorKind(err)).Inc()
		var inUse *replication.SlotInUseError
		// After a connection loss the old walsender may hold the slot for
		// a moment; a slot in use at first start is another daemon.
		transientInUse := errors.As(err, &inUse) && !lostAt.IsZero() && time.Since(lostAt) < 30*time.Second
		if !replication.IsRetryable(err) && !sink.IsRetryable(err) && !transientInUse {
			return err
		}
		if !transientInUse {
			lostAt = time.Now()
		}
		if time.Since(started) > time.Minute {
			backoff, attempt = time.Second, 1
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.Warn("connection lost; reconnecting", "attempt", attempt, "wait", wait.Round(time.Millisecond), "error", err)
		r.metrics.Reconnects.Inc()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, r.MaxBackoff)
	}
}

// session runs one connected stretch of replication.
func (r *Runner) session(ctx context.Context) (err error) {
	cfg := r.cfg
	client, err := sink.Open(ctx, sinkOptions(cfg))
	if err != nil {
		return err
	}
	defer client.Close()
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	if err := client.Exec(ctx, checkpoint.CreateProgressTable(cfg.ClickHouse.Database)); err != nil {
		return fmt.Errorf("create progress table: %w", err)
	}
	resume, found, err := store.Load(ctx)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no checkpoint for slot %s in ClickHouse database %s: run `replicator setup` first",
			cfg.Postgres.Slot, cfg.ClickHouse.Database)
	}

	conn, err := replication.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := conn.CheckServer(ctx); err != nil {
		return err
	}
	slot, err := conn.Slot(ctx, cfg.Postgres.Slot)
	if err != nil {
		if errors.Is(err, replication.ErrSlotMissing) {
			return fmt.Errorf("%w: the slot was dropped, so changes since checkpoint %s are lost to it; "+
				"run `replicator setup` to recreate it and copy the tables again", err, resume.LSN)
		}
		return err
	}
	if err := checkSlot(cfg.Postgres.Slot, slot, resume); err != nil {
		return err
	}

	a, err := newApplier(ctx, cfg, client, store, resume, r.log, r.metrics)
	if err != nil {
		return err
	}
	stream := replication.NewStream(conn, replication.StreamOptions{
		Slot: cfg.Postgres.Slot, Publication: cfg.Postgres.Publication, Logger: r.log.Named("stream"),
	})
	if err := stream.Start(ctx, resume.LSN); err != nil {
		return err
	}
	r.metrics.SetStreaming(true)
	r.log.Info("replicating", "from", resume.LSN, "clickhouse", client.Version())

	runErr := stream.Run(ctx, a)
	if runErr != nil {
		return runErr
	}
	// Soft stop: store what is complete, checkpoint it and acknowledge it
	// under a fresh deadline.
	fctx, cancel := context.WithTimeout(context.Background(), r.ShutdownTimeout)
	defer cancel()
	if err := a.flush(fctx); err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	if err := stream.SendStatus(fctx, a.Durable()); err != nil {
		return fmt.Errorf("final acknowledgement: %w", err)
	}
	r.log.Info("stopped", "checkpoint", a.durable.LSN, "changes", a.stats.changes, "transactions", a.stats.txns)
	return nil
}

// checkSlot refuses to stream from a slot that is taken, lost, or ahead of
// the checkpoint (DESIGN invariant 6).
func checkSlot(name string, slot replication.SlotInfo, resume checkpoint.Position) error {
	if slot.Plugin != "pgoutput" {
		return fmt.Errorf("replication slot %s uses plugin %q, not pgoutput: drop it and run `replicator setup`", name, slot.Plugin)
	}
	if slot.Active {
		return &replication.SlotInUseError{Slot: name, PID: slot.ActivePID}
	}
	if slot.WALStatus == "lost" {
		return lostSlotError(name)
	}
	if slot.ConfirmedFlushLSN > resume.LSN {
		return fmt.Errorf("replication slot %s has confirmed_flush_lsn %s, beyond the ClickHouse checkpoint %s: "+
			"ClickHouse lost data that the slot no longer holds (checkpoint table dropped or restored from an older backup); "+
			"to resync, drop the slot (SELECT pg_drop_replication_slot('%s')), truncate the target tables, and run `replicator setup`",
			name, slot.ConfirmedFlushLSN, resume.LSN, name)
	}
	return nil
}

func newApplier(ctx context.Context, cfg config.Config, client *sink.Client, store *checkpoint.Store,
	resume checkpoint.Position, log hclog.Logger, m *metrics.Metrics) (*applier, error) {
	a := &applier{
		log: log.Named("apply"), client: client, caps: client.Caps(), store: store,
		maxRows: cfg.Batch.MaxRows, maxDelay: cfg.Batch.MaxDelay, idleGap: max(cfg.Batch.MaxDelay, time.Second),
		index: map[string]int{}, rels: map[uint32]int{},
		resume: resume, durable: resume, metrics: m, faults: loadFaults(),
	}
	for i, tc := range cfg.Tables {
		names, types, err := client.ColumnTypes(ctx, tc.Target)
		if err != nil {
			return nil, fmt.Errorf("read ClickHouse table %s: %w", tc.Target, err)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("ClickHouse table %s.%s does not exist: run `replicator setup`", cfg.ClickHouse.Database, tc.Target)
		}
		a.index[tc.Name] = i
		a.specs = append(a.specs, tc.Spec())
		var ops [3]prometheus.Counter
		if m != nil {
			for j, op := range []string{"insert", "update", "delete"} {
				ops[j] = m.Changes.WithLabelValues(tc.Name, op)
			}
		}
		a.opCounters = append(a.opCounters, ops)
		// Until the Relation message arrives, the table is known by its spec only.
		a.tables = append(a.tables, &mapping.Table{Source: tc.Name, Target: tc.Target, OrderBy: tc.OrderBy, PartitionBy: tc.PartitionBy})
		a.targets = append(a.targets, targetSchema{names: names, types: types})
	}
	a.writer = sink.NewWriter(client, a.tables)
	return a, nil
}

func sinkOptions(cfg config.Config) sink.Options {
	return sink.Options{Addr: cfg.ClickHouse.Addr, Database: cfg.ClickHouse.Database,
		Username: cfg.ClickHouse.Username, Password: cfg.ClickHouse.Password}
}

func errorKind(err error) string {
	var me *MappingError
	switch {
	case errors.As(err, &me):
		return "mapping"
	case sink.IsRetryable(err):
		return "clickhouse"
	case replication.IsRetryable(err):
		return "postgres"
	}
	return "other"
}

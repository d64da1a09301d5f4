package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/errgroup"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/notify"
	"github.com/replicator/replicator/postgres"
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
	// reload holds a configuration to switch to (Reload), and cancel ends
	// the current session for it.
	mu     sync.Mutex
	reload *config.Config
	cancel context.CancelFunc
	// recheck ends the current session for a new check of the history
	// (recheckHistory).
	recheck bool
	// shutdownTimeout bounds the final flush after a stop.
	shutdownTimeout time.Duration
	// maxBackoff caps the wait between reconnects.
	maxBackoff time.Duration
	// current is the configuration of the current session; rewrites
	// checks the tables for rewrites with the actions of recovery.
	current  config.Config
	rewrites *rewrites
	recovery Recovery
	// recovering is true while a recovery copies every table again.
	recovering atomic.Bool
	// halted is true while the daemon stays stopped on an error a restart
	// cannot fix (halt); wake tells a halt or a backoff wait that a
	// configuration was reloaded.
	halted atomic.Bool
	wake   chan struct{}
}

// NewRunner returns a runner; it starts nothing.
func NewRunner(cfg config.Config, log hclog.Logger) *Runner {
	m := metrics.New()
	return &Runner{cfg: cfg, log: log, metrics: m, shutdownTimeout: 10 * time.Second, maxBackoff: 30 * time.Second,
		current: cfg, rewrites: newRewrites(log, m), wake: make(chan struct{}, 1)}
}

// config returns the configuration of the current session.
func (r *Runner) config() config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Run runs replication, the monitor endpoint, heartbeats and the WAL
// safety check until ctx is done or one of them fails. After a stop it
// flushes what is complete, checkpoints, acknowledges and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	if r.cfg.Stream.Enabled {
		if err := replication.CheckSpillDir(r.cfg.Stream.SpillDir); err != nil {
			return err
		}
	}
	// Tell systemd (Type=notify) that a stop has begun: the final flush
	// may take up to shutdownTimeout.
	defer context.AfterFunc(ctx, func() { r.notify(notify.Stopping()) })()
	g, gctx := errgroup.WithContext(ctx)
	if addr := r.cfg.Monitor.Listen; addr != "" {
		srv := metrics.NewServer(addr, r.metrics.Handler(r.cfg.Monitor.ReadyMaxLag))
		if err := srv.Listen(); err != nil {
			return err
		}
		r.log.Info("serving /metrics, /healthz and /readyz", "addr", srv.Addr())
		g.Go(func() error { return srv.Serve(gctx) })
	}
	g.Go(func() error { return r.watch(gctx) })
	g.Go(func() error { return r.checkRewrites(gctx) })
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

// notify logs a failure to tell the service manager (a result of package
// notify); the daemon goes on without it.
func (r *Runner) notify(_ bool, err error) {
	if err != nil {
		r.log.Warn("cannot notify the service manager", "error", err)
	}
}

// Reload makes the daemon continue with cfg: the current session stores
// what is complete, checkpoints it, and a new one starts from the
// checkpoint with the tables and settings of cfg (the monitor address and
// the heartbeat settings stay as they were). A daemon that waits to
// reconnect, or is halted, tries again at once.
func (r *Runner) Reload(cfg config.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reload = &cfg
	if r.cancel != nil {
		r.cancel()
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	r.metrics.Reloaded(true)
}

// ReloadFailed records a configuration file that could not be read on
// SIGHUP: the daemon keeps its configuration.
func (r *Runner) ReloadFailed() { r.metrics.Reloaded(false) }

// startSession returns the configuration of the next session and its
// context, which Reload cancels.
func (r *Runner) startSession(ctx context.Context, cfg config.Config) (config.Config, context.Context, context.CancelFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reload != nil {
		cfg, r.reload = *r.reload, nil
		r.log.Info("configuration reloaded", "tables", len(cfg.Tables))
	}
	r.current = cfg
	// (A new session checks the history at connect anyway.)
	r.recheck = false
	select {
	case <-r.wake: // this session has the reload
	default:
	}
	sctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	return cfg, sctx, cancel
}

// reloading reports whether a session ended for a Reload or a recheck.
func (r *Runner) reloading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	recheck := r.recheck
	r.recheck = false
	return r.reload != nil || recheck
}

// recheckHistory ends the current session so that the next one checks
// again that the server continues the checkpoint's history (the slot was
// found lost or dropped): it then recovers, or stops with the command.
func (r *Runner) recheckHistory() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recheck = true
	if r.cancel != nil {
		r.cancel()
	}
}

// replicate runs sessions until ctx is done (then it flushes what is
// complete, checkpoints, acknowledges and returns nil) or a permanent error
// occurs. Transient connection errors are retried with capped exponential
// backoff and jitter; every retry restarts from the checkpoint in ClickHouse.
func (r *Runner) replicate(ctx context.Context) error {
	backoff := time.Second
	var lostAt time.Time     // when the last connection loss happened
	var inUseSince time.Time // when the slot was first found in use, in this stretch
	cfg := r.cfg
	for attempt := 1; ; attempt++ {
		started := time.Now()
		var sctx context.Context
		var cancel context.CancelFunc
		cfg, sctx, cancel = r.startSession(ctx, cfg)
		err := r.session(sctx, cfg)
		cancel()
		r.metrics.SetStreaming(false)
		r.metrics.Held.Set(0)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			// systemctl status shows why (a reload shows nothing).
			r.notify(notify.Status("not streaming: " + err.Error()))
		}
		switch {
		case ctx.Err() == nil && r.reloading():
			continue
		case err == nil || ctx.Err() != nil && errors.Is(err, context.Canceled):
			return nil
		case errors.Is(err, errRestart):
			r.log.Info("starting again from the checkpoint", "reason", err)
			continue
		}
		if brk := (*history.Break)(nil); errors.As(err, &brk) {
			r.metrics.HistoryBreaks.WithLabelValues(brk.Reason).Inc()
		}
		healed, herr := r.heal(ctx, cfg, err)
		switch {
		case healed:
			continue
		case ctx.Err() != nil && errors.Is(herr, context.Canceled):
			return nil
		}
		err = herr
		r.metrics.Errors.WithLabelValues(errorKind(err)).Inc()
		if reason, ok := failure.Retryable(err); ok {
			if server, lost := lostServer(reason); lost {
				r.metrics.SetConnected(server, false)
			}
		}
		inUse := slotInUse(err)
		switch {
		case !inUse:
			inUseSince = time.Time{}
		case inUseSince.IsZero():
			inUseSince = time.Now()
		}
		if !retryable(err, lostAt, inUseSince) {
			reason, halts := haltReason(err)
			if !halts {
				return err
			}
			if !r.halt(ctx, cfg, reason, err) {
				return nil
			}
			backoff, attempt = time.Second, 0
			continue
		}
		if time.Since(started) > time.Minute {
			backoff, attempt = time.Second, 1
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if inUse {
			// A walsender that has not noticed its client is gone, or a
			// moment's peek by `replicator status`: try again soon.
			wait = slotPoll
			r.log.Warn("replication slot is in use; waiting for it", "waited", time.Since(inUseSince).Round(time.Millisecond), "error", err)
		} else {
			lostAt = time.Now()
			reason, _ := failure.Retryable(err)
			r.metrics.Retries.WithLabelValues(reason).Inc()
			r.metrics.Retrying.Set(1)
			r.log.Warn("transient error; reconnecting: the session starts again from the checkpoint and acknowledges nothing new until then",
				"reason", reason, "attempt", attempt, "wait", wait.Round(time.Millisecond).String(), "error", err)
		}
		r.metrics.Reconnects.Inc()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		case <-r.wake: // a reload: its session starts now
		}
		if !inUse {
			backoff = min(backoff*2, r.maxBackoff)
		}
	}
}

// session runs one connected stretch of replication.
func (r *Runner) session(ctx context.Context, cfg config.Config) (err error) {
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	r.metrics.SetConnected("clickhouse", true)
	if err := client.CheckWritable(); err != nil {
		return err
	}
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	// Tables of the replicator's own that an earlier version's setup did
	// not create.
	if err := checkpoint.EnsureTables(ctx, client); err != nil {
		return err
	}
	if err := store.Sync(ctx); err != nil {
		return err
	}
	resume, found, err := store.Load(ctx)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w for slot %s in ClickHouse database %s: run `replicator setup` first",
			checkpoint.ErrNoCheckpoint, cfg.Postgres.Slot, cfg.ClickHouse.Database)
	}
	var asOf time.Time
	if resume.Commit {
		// (An idle position proves no time: see position.asOf.)
		asOf = resume.CommitTime
	}
	r.metrics.Loaded(resume.Written, asOf)
	if err := checkRecovery(ctx, store, resume); err != nil {
		return err
	}

	conn, err := replication.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	r.metrics.SetConnected("postgres", true)
	if err := conn.CheckServer(ctx); err != nil {
		return err
	}
	witness, err := r.checkHistory(ctx, conn, store, resume, cfg.Postgres.Slot)
	if err != nil {
		return err
	}

	reg, err := loadRegistry(ctx, cfg.Tables, client, store, r.log)
	if err != nil {
		return err
	}
	pg, err := postgres.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer pg.Close()
	names := make([]string, len(cfg.Tables))
	for i, t := range cfg.Tables {
		names[i] = t.Name
	}
	oids, err := pg.TableOIDs(ctx, names)
	if err != nil {
		return err
	}
	reg.setOIDs(oids, pg)
	// A sorting key that does not identify a row is refused before any
	// change, as setup refuses it (a change of the table refuses it again
	// with the schema the change has).
	for _, tc := range cfg.Tables {
		cols, err := pg.Columns(ctx, tc.Name, cfg.Postgres.Publication)
		if err != nil {
			return err
		}
		if t, err := mapping.Resolve(tc.Spec(), cols, client.Caps()); err == nil {
			if err := t.CheckUnique(); err != nil {
				return err
			}
		}
	}
	reg.log = r.log.Named("schema")
	reg.publication = &publicationWatch{pg: pg, name: cfg.Postgres.Publication, slot: cfg.Postgres.Slot}
	if err := reg.checkPublication(ctx, time.Now()); err != nil {
		return err
	}
	reg.recopy, reg.poke = r.rewrites.recopy, r.rewrites.check
	writer := sink.NewWriter(client, reg.tables)
	writer.OnServerFillOff = func(err error) {
		r.log.Warn("ClickHouse refused to write rows with unchanged TOAST values from their stored rows itself; "+
			"the daemon reads those values and writes them from now on", "error", err)
	}
	a := newApplier(cfg, writer, store, reg, resume, r.log, r.metrics)
	a.witness = witness
	defer a.abort()
	for idx := range reg.waiting {
		r.log.Warn("the copy of the table is not complete: the checkpoint is held until it is, and its changes "+
			"are written then", "table", cfg.Tables[idx].Name, "checkpoint", resume.LSN)
		a.holdFor(idx, 0)
	}
	stream := replication.NewStream(conn, replication.StreamOptions{
		Slot: cfg.Postgres.Slot, Publication: cfg.Postgres.Publication, Logger: r.log.Named("stream"),
		Streaming: cfg.Stream.Enabled,
		Spool: replication.SpoolOptions{Dir: cfg.Stream.SpillDir, Prefix: cfg.Postgres.Slot,
			Memory: int64(cfg.Stream.Memory), Limit: int64(cfg.Stream.SpillLimit)},
		Aborted:      pg.Aborted,
		Spooled:      r.metrics.SetSpool,
		Acknowledged: witness.Acknowledged(resume.LSN),
	})
	if err := stream.Start(ctx, witness.Start(resume.LSN)); err != nil {
		return err
	}
	defer func() {
		stream.Close()
		r.metrics.SetSpool(0, 0, 0)
	}()
	r.metrics.SetStreaming(true)
	r.metrics.Retrying.Set(0)
	r.log.Info("replicating", "from", resume.LSN, "clickhouse", client.Version(), "protocol", stream.Protocol())
	// Now the daemon does its job: systemd (Type=notify) reports the unit
	// started, as /readyz reports the stream up.
	r.notify(notify.Ready(fmt.Sprintf("replicating from %s", resume.LSN)))

	runErr := stream.Run(ctx, a)
	if runErr != nil && (ctx.Err() == nil || !errors.Is(runErr, context.Canceled)) {
		return runErr
	}
	// Soft stop: store what is complete, checkpoint it and acknowledge it
	// under a fresh deadline.
	fctx, cancel := context.WithTimeout(context.Background(), r.shutdownTimeout)
	defer cancel()
	if err := a.drain(fctx); err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	if err := stream.SendStatus(fctx, a.Durable()); err != nil {
		return fmt.Errorf("final acknowledgement: %w", err)
	}
	r.log.Info("stopped", "checkpoint", a.Durable(), "changes", a.rep.stats.changes, "transactions", a.rep.stats.txns)
	return nil
}

func newApplier(cfg config.Config, w rowWriter, store positionStore, reg *registry, resume checkpoint.Position,
	log hclog.Logger, m *metrics.Metrics) *applier {
	return &applier{
		log: log.Named("apply"), writer: w, store: store, reg: reg, pos: newPosition(resume), slot: cfg.Postgres.Slot,
		rep:     newReporter(cfg.Tables, store, log.Named("apply"), m),
		faults:  loadFaults(),
		maxRows: cfg.Batch.MaxRows, maxBytes: int(cfg.Batch.MaxBytes), maxDelay: cfg.Batch.MaxDelay, minInterval: cfg.Batch.MinInterval, lastFlush: time.Now(), idleGap: max(cfg.Batch.MaxDelay, time.Second),
	}
}

// How long a slot in use is waited for: after a connection loss of this
// daemon (the old walsender may hold the slot until it notices), and else
// (a daemon restarted after a crash, whose walsender lingers for a moment,
// or `replicator status` peeking at the idle slot). A slot held longer is
// another daemon's.
const (
	slotWaitAfterLoss = 30 * time.Second
	slotWait          = 10 * time.Second
	slotPoll          = 250 * time.Millisecond
)

// retryable is the one decision to reconnect after err: a lost or refused
// connection to either server, or the slot in use since inUseSince for
// less than slotWait, or less than slotWaitAfterLoss after a connection
// loss at lostAt.
func retryable(err error, lostAt, inUseSince time.Time) bool {
	if slotInUse(err) {
		return !lostAt.IsZero() && time.Since(lostAt) < slotWaitAfterLoss || time.Since(inUseSince) < slotWait
	}
	_, ok := failure.Retryable(err)
	return ok
}

func slotInUse(err error) bool {
	var inUse *postgres.SlotInUseError
	return errors.As(err, &inUse)
}

func errorKind(err error) string {
	var re *mapping.RowError
	switch {
	case errors.As(err, &re):
		return "mapping"
	case sink.IsRetryable(err):
		return "clickhouse"
	case postgres.IsRetryable(err):
		return "postgres"
	}
	return "other"
}

// checkHistory proves, before anything is streamed, that the server
// continues the history of the checkpoint resume (history.Check) and
// makes the store record the server's history with the positions it
// saves. It returns the witness that decides the rest from the stream's
// first transactions.
func (r *Runner) checkHistory(ctx context.Context, conn *replication.Conn, store *checkpoint.Store, resume checkpoint.Position,
	slotName string) (*history.Witness, error) {
	srv, err := history.Identify(ctx, conn)
	if err != nil {
		return nil, err
	}
	slot, slotErr := conn.Slot(ctx, slotName)
	slot.Name = slotName
	if err := history.Check(resume, srv, slot, slotErr); err != nil {
		return nil, err
	}
	h := resume.History
	switch {
	case !h.Known():
		r.log.Info("recording the Postgres history with the checkpoints (a version before this one saved them without it)",
			"system_id", srv.SystemID, "timeline", srv.Timeline, "checkpoint", resume.LSN)
	case srv.Timeline != h.Timeline:
		r.log.Warn("the server continues the checkpoint's history on a later timeline (a promoted standby that had received "+
			"every stored transaction)", "timeline", srv.Timeline, "checkpoint_timeline", h.Timeline, "checkpoint", resume.LSN)
	}
	store.SetHistory(srv.Identity(h.Epoch))
	w := history.NewWitness(resume, slot.ConfirmedFlushLSN, slotName)
	if w.Pending() {
		r.log.Debug("streaming from the newest stored transaction, which the server must send first",
			"commit", resume.Last.LSN, "xid", resume.Last.Xid, "checkpoint", resume.LSN, "confirmed", slot.ConfirmedFlushLSN)
	}
	return w, nil
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// Recovery holds what the daemon does about a table whose ClickHouse rows
// a rewrite may have left behind (see rewrites). cmd/replicator fills it
// with `replicator resync` and `replicator verify`, which pipeline does not
// import; a missing action makes the daemon stop with its command instead.
type Recovery struct {
	// Recopy copies table source again under the live stream into a
	// shadow table that the daemon swaps in (load.Resync), and records
	// the table's storage from the copy's snapshot.
	Recopy func(ctx context.Context, cfg config.Config, source string) error
	// Verify compares table source in Postgres and ClickHouse: equal is
	// false when a row differs; skipped, when not empty, says why the
	// table cannot be compared.
	Verify func(ctx context.Context, cfg config.Config, source string) (equal bool, skipped string, err error)
	// Recover copies every table again after a history break, readers
	// keeping the previous copies until each new one is in place
	// (load.Recover); reason is the break's.
	Recover func(ctx context.Context, cfg config.Config, reason string) error
}

// SetRecovery gives the daemon the actions it takes after a rewrite.
func (r *Runner) SetRecovery(rec Recovery) { r.recovery = rec }

// Metrics returns the metrics the runner exports, for the daemon's other
// components (continuous verification).
func (r *Runner) Metrics() *metrics.Metrics { return r.metrics }

// rewrites notices rewrites that no row change announces (invariant 11):
// Postgres decodes none for a table rewrite, so a type change with USING,
// timestamp to timestamptz under a non-UTC session, char(n) to text, or a
// column dropped and added again under the same name leaves the old
// values in ClickHouse, though the Relation message may look the same.
//
// Each table's storage record (postgres.Storage: attribute numbers,
// types, files) is what its ClickHouse rows agree with: a copy records its
// snapshot's. At start, at each Relation message of a configured table
// (poke: Postgres sends one again after a change of the relation in its
// catalog, a rewrite too, before the table's next change) and every
// monitor.rewrite_check_interval (a rewritten table may never
// be written again, so no Relation message comes), the catalog is
// compared with the record:
//
//   - a column whose attribute number changed (dropped and added again),
//     or that may carry a dropped column's values, or whose type changed
//     along with the table's files: the table is copied again online;
//   - the files changed alone (VACUUM FULL, CLUSTER, TRUNCATE, a type
//     change to the same type with USING): the table is verified, and
//     copied again if it differs. A TRUNCATE, which the stream applies,
//     costs one verify of the table, never a copy;
//   - a type changed without the files (Postgres skips the rewrite only
//     when it proved the stored bytes stay the same: varchar(n) to text,
//     timestamp to timestamptz under UTC), columns added or dropped: no
//     value is in doubt, and the record follows the catalog.
//
// A store without a record takes the catalog as its record and says so. A
// re-copy is started once per change: the record says that it runs
// (Storage.Recopy), so that a daemon stopped meanwhile starts it again,
// and the copy replaces the record when complete. Tables whose copy is in
// progress otherwise (an added table, a resync) are left to it. The
// checks run over their own connections, apart from the stream.
type rewrites struct {
	log     hclog.Logger
	metrics *metrics.Metrics
	rec     Recovery
	poke    chan struct{}
	// ensured reports that the replicator's own tables were made.
	ensured bool
	// asked holds the re-copies the stream asked for (registry.recopy),
	// by table.
	mu    sync.Mutex
	asked map[string]askedRecopy
}

// askedRecopy is a re-copy the stream asked for: why, and when.
type askedRecopy struct {
	reason string
	at     time.Time
}

func newRewrites(log hclog.Logger, m *metrics.Metrics) *rewrites {
	return &rewrites{log: log.Named("rewrites"), metrics: m, poke: make(chan struct{}, 1), asked: map[string]askedRecopy{}}
}

// check asks for a check of every table soon.
func (w *rewrites) check() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// recopy asks for a re-copy of table source, and a check soon.
func (w *rewrites) recopy(source, reason string) {
	w.mu.Lock()
	w.asked[source] = askedRecopy{reason: reason, at: time.Now()}
	w.mu.Unlock()
	w.check()
}

// pending reports whether the stream asked for a re-copy not yet made.
func (w *rewrites) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.asked) > 0
}

// count counts a rewrite handled by action.
func (w *rewrites) count(action string) {
	if w.metrics != nil {
		w.metrics.Rewrites.WithLabelValues(action).Inc()
	}
}

// rewriteCheckGap is the least time between the starts of two checks that
// Relation messages ask for.
const rewriteCheckGap = time.Second

// rewriteStop is an error that stops the daemon.
type rewriteStop struct{ err error }

func (e *rewriteStop) Error() string { return e.err.Error() }
func (e *rewriteStop) Unwrap() error { return e.err }

// checkRewrites runs the checks until ctx is done. Connection problems
// and failed verifies are logged and retried at the next check; a table
// that needs a copy the daemon cannot make stops it.
func (r *Runner) checkRewrites(ctx context.Context) error {
	w := r.rewrites
	w.rec = r.recovery
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-w.poke:
			// Relation messages come in bursts (one per streamed
			// transaction): they share a check.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(last.Add(rewriteCheckGap))):
			}
		}
		last = time.Now()
		cfg := r.config()
		var err error
		// A recovery copies every table. A halted daemon waits, but for a
		// re-copy the stream asked for: a value too wide for a key column
		// awaiting its copy in the wider type halts it (registry.reconcile),
		// and the copy is what lets it go on, so it tries again after one.
		halted, asked := r.halted.Load(), w.pending()
		if !r.recovering.Load() && (!halted || asked) {
			err = w.round(ctx, cfg)
			if halted && asked && err == nil {
				r.log.Info("a table was copied again while the daemon was halted: trying again")
				select {
				case r.wake <- struct{}{}:
				default:
				}
			}
		}
		var stop *rewriteStop
		switch {
		case errors.As(err, &stop):
			return stop.err
		case err != nil && ctx.Err() == nil:
			w.log.Warn("checking the tables for rewrites failed; trying again", "wait", cfg.Monitor.RewriteCheckInterval.String(), "error", err)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(cfg.Monitor.RewriteCheckInterval)
	}
}

// round checks every configured table once.
func (w *rewrites) round(ctx context.Context, cfg config.Config) error {
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	pg, err := postgres.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer pg.Close()
	if !w.ensured {
		// (The session makes them too, perhaps not yet.)
		if err := checkpoint.EnsureTables(ctx, client); err != nil {
			return err
		}
		w.ensured = true
	}
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	if err := store.Sync(ctx); err != nil {
		return err
	}
	records, err := store.LoadStorage(ctx)
	if err != nil {
		return err
	}
	chunks, err := store.LoadChunks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, tc := range cfg.Tables {
		t := &tableCheck{w: w, cfg: cfg, store: store, source: tc.Name, log: w.log.With("table", tc.Name)}
		rec, recorded := records[tc.Name]
		err := t.run(ctx, pg, rec, recorded, chunks[tc.Name])
		var stop *rewriteStop
		if errors.As(err, &stop) {
			return err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tableCheck checks one table.
type tableCheck struct {
	w      *rewrites
	cfg    config.Config
	store  *checkpoint.Store
	source string
	log    hclog.Logger
}

// run compares the table's storage now with its record (rec; recorded is
// false without one) and does what the difference asks for, unless a
// copy of the table (chunks) is in progress; a re-copy asked for or left
// unfinished comes first.
func (t *tableCheck) run(ctx context.Context, pg *postgres.Conn, rec postgres.Storage, recorded bool, chunks []checkpoint.Chunk) error {
	now, err := pg.Storage(ctx, t.source)
	if err != nil {
		return err
	}
	t.w.mu.Lock()
	asked, ok := t.w.asked[t.source]
	t.w.mu.Unlock()
	switch {
	case ok:
		return t.recopy(ctx, rec, asked.reason)
	case recorded && rec.Recopy != "":
		// A re-copy this daemon (or an earlier run of it) started and
		// that did not complete.
		return t.recopy(ctx, rec, rec.Recopy)
	case len(chunks) > 0 && checkpoint.Horizon(chunks) == 0:
		// Its copy is in progress (an added table, a resync): the copy
		// records the storage it agrees with.
		return nil
	case !recorded:
		if err := t.store.SaveStorage(ctx, t.source, now); err != nil {
			return err
		}
		t.log.Info("no record of the table's storage (set up by an earlier version): the catalog now is its record, " +
			"and rewrites are noticed from here on; `replicator verify` tells whether an earlier one left rows behind")
		return nil
	}
	action, reason := rewriteAction(postgres.DiffStorage(rec, now))
	switch action {
	case rewriteRecopy:
		return t.recopy(ctx, rec, reason)
	case rewriteVerify:
		return t.verify(ctx, rec, now, reason)
	case rewriteRecord:
		if reason != "" {
			t.log.Info("the table's storage changed without a rewrite that changes values: recorded", "change", reason)
			t.w.count("recorded")
		}
		return t.store.SaveStorage(ctx, t.source, now)
	}
	return nil
}

// verify compares the table after its files changed: equal, the record
// takes now; different, the table is copied again.
func (t *tableCheck) verify(ctx context.Context, rec, now postgres.Storage, reason string) error {
	if t.w.rec.Verify == nil {
		return t.recopy(ctx, rec, reason)
	}
	t.log.Info("the table was rewritten: verifying it", "change", reason)
	equal, skipped, err := t.w.rec.Verify(ctx, t.cfg, t.source)
	switch {
	case err != nil:
		return fmt.Errorf("verify %s after a rewrite (%s): %w", t.source, reason, err)
	case skipped != "":
		t.log.Warn("the table was rewritten and cannot be verified: if the rewrite changed values (ALTER TABLE ... TYPE ... USING), "+
			"copy it again", "change", reason, "not_verified", skipped,
			"fix", fmt.Sprintf("replicator resync --config FILE --table %s", t.source))
	case !equal:
		return t.recopy(ctx, rec, reason+", and verify found rows that differ")
	default:
		t.log.Info("the table was rewritten and ClickHouse equals Postgres: recorded its new files", "change", reason)
		t.w.count("verified")
	}
	return t.store.SaveStorage(ctx, t.source, now)
}

// recopy copies the table again, having recorded that it does so (a
// daemon stopped meanwhile starts it again); without the action, it
// stops the daemon with the command to run.
func (t *tableCheck) recopy(ctx context.Context, rec postgres.Storage, reason string) error {
	checkpointAt := "unknown"
	if pos, found, err := t.store.Load(ctx); err == nil && found {
		checkpointAt = pos.LSN.String()
	}
	if t.w.rec.Recopy == nil {
		return &rewriteStop{fmt.Errorf("table %s: %s (noticed at checkpoint %s): its ClickHouse rows may keep values that Postgres "+
			"no longer has: copy it again with `replicator resync --config FILE --table %s`", t.source, reason, checkpointAt, t.source)}
	}
	if rec.Recopy != reason {
		rec.Recopy = reason
		if err := t.store.SaveStorage(ctx, t.source, rec); err != nil {
			return err
		}
	}
	t.log.Warn("a rewrite may have left values behind in ClickHouse: copying the table again online (readers see the current copy until the new one is swapped in)",
		"change", reason, "checkpoint", checkpointAt)
	err := t.w.rec.Recopy(ctx, t.cfg, t.source)
	switch {
	case err == nil:
		// The re-copies the stream asked for until now are done too:
		// they were about the copy this one replaced.
		done := time.Now()
		t.w.mu.Lock()
		if a, ok := t.w.asked[t.source]; ok && a.at.Before(done) {
			delete(t.w.asked, t.source)
		}
		t.w.mu.Unlock()
		t.log.Info("the table was copied again after a rewrite", "change", reason)
		t.w.count("recopied")
		return nil
	case ctx.Err() != nil:
		return err
	}
	if _, ok := failure.Retryable(err); ok {
		return fmt.Errorf("copy %s again after a rewrite (%s), tried again at the next check: %w", t.source, reason, err)
	}
	return &rewriteStop{fmt.Errorf("table %s: %s, and copying it again failed: %w; fix the cause and run "+
		"`replicator resync --config FILE --table %s` (the daemon also tries again when it starts)", t.source, reason, err, t.source)}
}

// What a check does about a table.
const (
	rewriteNone = iota
	rewriteRecord
	rewriteVerify
	rewriteRecopy
)

// rewriteAction decides what a difference between a table's storage
// record and the catalog asks for (see rewrites), and says why.
func rewriteAction(d postgres.StorageDiff) (action int, reason string) {
	var why []string
	if len(d.Moved) > 0 {
		why = append(why, fmt.Sprintf("columns %s were dropped and added again (their attribute numbers changed)", strings.Join(d.Moved, ", ")))
	}
	if len(d.Reused) > 0 {
		why = append(why, fmt.Sprintf("columns %s were added after a column that was added and dropped since the last check, "+
			"whose values they may carry", strings.Join(d.Reused, ", ")))
	}
	if len(d.Retyped) > 0 && len(d.Rewritten) > 0 {
		why = append(why, fmt.Sprintf("columns %s changed type and the table was rewritten, which may have changed their values",
			strings.Join(d.Retyped, ", ")))
	}
	if len(d.Relabeled) > 0 {
		why = append(why, fmt.Sprintf("labels of the enums of columns %s were renamed (ALTER TYPE ... RENAME VALUE), "+
			"which changes the rows that carry them without a change in the stream", strings.Join(d.Relabeled, ", ")))
	}
	if len(d.Stored) > 0 {
		why = append(why, fmt.Sprintf("generated columns %s now store their values as any column (ALTER COLUMN ... DROP EXPRESSION), "+
			"and the stream, which did not send them while they were generated, sends them from now on", strings.Join(d.Stored, ", ")))
	}
	if len(why) > 0 {
		return rewriteRecopy, strings.Join(why, "; ")
	}
	if len(d.Rewritten) > 0 {
		why = append(why, fmt.Sprintf("the files of relations %s changed (VACUUM FULL, CLUSTER, TRUNCATE, "+
			"or ALTER TABLE ... TYPE ... USING to the same type)", oids(d.Rewritten)))
	}
	if len(d.Joined) > 0 {
		why = append(why, fmt.Sprintf("partitions %s were attached or created (an attached one may bring rows)", oids(d.Joined)))
	}
	if len(d.Left) > 0 {
		why = append(why, fmt.Sprintf("partitions %s were detached or dropped (their rows left the table)", oids(d.Left)))
	}
	if len(why) > 0 {
		return rewriteVerify, strings.Join(why, "; ")
	}
	if len(d.Retyped) > 0 {
		return rewriteRecord, fmt.Sprintf("columns %s changed type without a rewrite (the stored bytes stay the same)",
			strings.Join(d.Retyped, ", "))
	}
	if d.Changed() {
		return rewriteRecord, ""
	}
	return rewriteNone, ""
}

// oids renders relation OIDs.
func oids(rels []uint32) string {
	out := make([]string, len(rels))
	for i, rel := range rels {
		out[i] = fmt.Sprint(rel)
	}
	return strings.Join(slices.Compact(out), ", ")
}

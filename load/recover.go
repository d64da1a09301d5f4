package load

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// ReasonRequested is the reason of a recovery that `replicator resync
// --all` asked for.
const ReasonRequested = "requested"

// Recover copies every configured table again from the history the server
// has now, while readers keep the previous copy of each table until its
// new copy is complete: the recovery of a history that does not continue
// the checkpoint's (history.Break), which `replicator run` starts by itself
// and `replicator resync --all` by hand. The daemon must not stream
// meanwhile (the slot is not in use).
//
// It makes a new slot (the former one, if any, belongs to the lost
// history) and copies each table in turn, in the new slot's snapshot,
// into a new table (ddl.ShadowName) that replaces the target as soon as
// its copy is complete, so the extra disk is that of one table. The
// positions of the new slot are saved in the next history epoch, which
// outranks every position of the lost history whatever their LSNs, once
// every table is in place; the stream then starts at the new slot's
// consistent point. The state is recorded (checkpoint.Recovery) so that a
// recovery interrupted at any point is taken up by the next one: one whose
// copies were all complete puts the rest in place, any other starts over
// with a new slot (see copied), each table keeping the copy in place
// meanwhile.
//
// Until a table's new copy is in place its readers see the previous copy,
// stale but whole. Its committed view is bound by the lost history's
// newest position; so that it shows the new copy whole once swapped in,
// the recovery first saves, in the lost history's epoch, a position at the
// copy's snapshot when that is higher (the previous copies of the other
// tables then also show rows written above their last checkpoint, if
// any: rows of the lost history that the recovery replaces).
func Recover(ctx context.Context, cfg config.Config, reason string, log hclog.Logger, opts Options) (report []string, err error) {
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		report = append(report, line)
		log.Info(line)
	}
	srv, err := openServers(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	client, pg, repl := srv.ch, srv.pg, srv.repl
	tables, err := srv.resolveAll(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkpoint.EnsureTables(ctx, client); err != nil {
		return nil, err
	}
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	if err := store.Sync(ctx); err != nil {
		return nil, err
	}
	cp, found, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errNoCheckpoint(cfg)
	}
	rec, found, err := store.LoadRecovery(ctx)
	if err != nil {
		return nil, err
	}
	if !found || !rec.Pending(cp.History.Epoch) {
		rec = checkpoint.Recovery{Epoch: cp.History.Epoch + 1, Reason: reason, Started: time.Now(), Tables: len(tables)}
		if err := store.SaveRecovery(ctx, rec); err != nil {
			return nil, err
		}
		say("recovery of slot %s began (%s): every table is copied again into a new table that replaces it when complete; "+
			"readers see the previous copy until then", cfg.Postgres.Slot, reason)
	} else {
		say("continuing the recovery of slot %s begun at %s (%s): %d of %d tables in place", cfg.Postgres.Slot,
			rec.Started.Format(time.RFC3339), rec.Reason, rec.TablesDone, rec.Tables)
	}
	server, err := history.Identify(ctx, repl)
	if err != nil {
		return report, err
	}
	// A server brought back to a state before setup may lack the
	// publication, which the new slot decodes with.
	published := make([]string, 0, len(tables)+1)
	for _, t := range tables {
		published = append(published, t.Source)
	}
	if major := pg.ServerVersion(); postgres.NeedsMarkTable(major) {
		if _, err := pg.EnsureMarkTable(ctx); err != nil {
			return report, err
		}
		published = append(published, postgres.MarkTable)
	}
	lines, err := pg.EnsurePublication(ctx, cfg.Postgres.Publication, published)
	for _, line := range lines {
		say("%s", line)
	}
	if err != nil {
		return report, err
	}

	r := &recovery{cfg: cfg, log: log, opts: opts, client: client, pg: pg, store: store, rec: rec, cp: cp, say: say}
	slot, err := repl.Slot(ctx, cfg.Postgres.Slot)
	switch {
	case err == nil && slot.Active:
		return report, &postgres.SlotInUseError{Slot: cfg.Postgres.Slot, PID: slot.ActivePID}
	case err == nil && rec.Load != 0 && slot.ConfirmedFlushLSN == rec.Load && slot.Plugin == "pgoutput" && !slot.Lost() &&
		r.copied(ctx, tables):
		// The recovery's own slot, which has acknowledged nothing, and
		// every copy complete: put the rest in place.
		if err := r.resume(ctx, tables); err != nil {
			return report, err
		}
	case err == nil:
		if err := repl.DropSlot(ctx, cfg.Postgres.Slot); err != nil {
			return report, err
		}
		say("dropped replication slot %s (confirmed %s): the recovery copies from a new one", cfg.Postgres.Slot, slot.ConfirmedFlushLSN)
		fallthrough
	default:
		if err != nil && !isSlotMissing(err) {
			return report, err
		}
		if err := store.DeleteChunks(ctx, ""); err != nil {
			return report, err
		}
		for _, t := range tables {
			if err := dropTarget(ctx, client, ddl.ShadowName(t.Target)); err != nil {
				return report, err
			}
		}
		lsn, name, err := repl.CreateSlot(ctx, cfg.Postgres.Slot)
		if err != nil {
			return report, err
		}
		say("created replication slot %s at %s", cfg.Postgres.Slot, lsn)
		r.rec.Load, r.rec.TablesDone = lsn, 0
		if err := store.SaveRecovery(ctx, r.rec); err != nil {
			return report, err
		}
		recoveryFault(0)
		for _, t := range tables {
			if err := r.copyTable(ctx, t, func(shadow *mapping.Table) error {
				c := r.copier(ctx)
				return copyAll(ctx, c, pg, []*mapping.Table{shadow}, nil, snapshot{name: name, lsn: lsn}, lsn, say)
			}); err != nil {
				return report, err
			}
		}
	}

	// The lost history's truncations would cover the new one's changes.
	if err := store.DeleteTruncations(ctx); err != nil {
		return report, err
	}
	store.SetHistory(server.Identity(r.rec.Epoch))
	if err := finish(ctx, store, tables, r.rec.Load, say); err != nil {
		return report, err
	}
	r.rec.Finished = true
	if err := store.SaveRecovery(ctx, r.rec); err != nil {
		return report, err
	}
	say("recovery of slot %s complete: every table holds the rows of the server's history at %s, history epoch %d",
		cfg.Postgres.Slot, r.rec.Load, r.rec.Epoch)
	return report, nil
}

// recovery is one run of Recover.
type recovery struct {
	cfg    config.Config
	log    hclog.Logger
	opts   Options
	client *sink.Client
	pg     *postgres.Conn
	store  *checkpoint.Store
	rec    checkpoint.Recovery
	cp     checkpoint.Position
	say    func(string, ...any)
	// bridged is the highest position saved in the lost history's epoch
	// for the committed views (see Recover).
	bridged pglogrepl.LSN
}

func (r *recovery) copier(ctx context.Context) *copier {
	return &copier{cfg: r.cfg, store: r.store, log: r.log, progress: newProgress(ctx, r.log, r.opts.Terminal)}
}

// copied reports whether every table's copy is complete, in place or
// not. A copy finished in a later snapshot than the slot's would hold rows
// of versions above the new history's first position, which its committed
// view would hide until the stream passes them: so an interrupted copy
// makes the recovery start over instead (each table keeps the copy in
// place meanwhile, the previous one or the first attempt's).
func (r *recovery) copied(ctx context.Context, tables []*mapping.Table) bool {
	chunks, err := r.store.LoadChunks(ctx)
	if err != nil {
		return false
	}
	for _, t := range tables {
		if !checkpoint.CopiedInto(chunks[t.Source], ddl.ShadowName(t.Target)) {
			return false
		}
	}
	return true
}

// resume finishes a recovery whose slot exists and whose copies are
// complete: tables in place stay, and the other copies are swapped in.
func (r *recovery) resume(ctx context.Context, tables []*mapping.Table) error {
	chunks, err := r.store.LoadChunks(ctx)
	if err != nil {
		return err
	}
	db := r.client.DB()
	for _, t := range tables {
		shadow := ddl.ShadowName(t.Target)
		exists, err := r.client.Existing(ctx, db.Storage(shadow))
		if err != nil {
			return err
		}
		cs := chunks[t.Source]
		if !exists[db.Storage(shadow)] && checkpoint.CopiedInto(cs, shadow) {
			// In place; the swap may not have finished.
			if err := r.swap(ctx, t); err != nil {
				return err
			}
			continue
		}
		if !exists[db.Storage(shadow)] {
			return fmt.Errorf("recovery: the new copy of %s is neither in place nor in %s.%s", t.Source, db.Name, shadow)
		}
		if err := r.putInPlace(ctx, t, cs); err != nil {
			return err
		}
	}
	return nil
}

// copyTable copies t into a new, empty table with copy, then swaps it in.
func (r *recovery) copyTable(ctx context.Context, t *mapping.Table, copy func(*mapping.Table) error) error {
	shadow, err := newShadow(ctx, r.client, t)
	if err != nil {
		return err
	}
	if err := copy(shadow); err != nil {
		return fmt.Errorf("recovery: copy %s: %w; the next start of `replicator run` (or `replicator resync --all`) "+
			"starts the recovery over", t.Source, err)
	}
	chunks, err := r.store.LoadChunks(ctx)
	if err != nil {
		return err
	}
	return r.putInPlace(ctx, t, chunks[t.Source])
}

// putInPlace swaps the complete copy of t (its copy state cs) in.
func (r *recovery) putInPlace(ctx context.Context, t *mapping.Table, cs []checkpoint.Chunk) error {
	db := r.client.DB()
	if err := r.bridge(ctx, checkpoint.Horizon(cs)); err != nil {
		return err
	}
	if err := r.swap(ctx, t); err != nil {
		return err
	}
	r.rec.TablesDone++
	if err := r.store.SaveRecovery(ctx, r.rec); err != nil {
		return err
	}
	r.say("%s.%s now holds the new copy of %s (%d of %d tables in place)", db.Name, t.Target, t.Source, r.rec.TablesDone, r.rec.Tables)
	recoveryFault(r.rec.TablesDone)
	return nil
}

// bridge saves, in the lost history's epoch, a position at horizon when
// it is above every position of that epoch, so that a committed view
// bound by that epoch shows a copy made at horizon whole.
func (r *recovery) bridge(ctx context.Context, horizon pglogrepl.LSN) error {
	if horizon <= max(r.cp.LSN, r.bridged) {
		return nil
	}
	r.store.SetHistory(r.cp.History)
	if err := r.store.Save(ctx, checkpoint.Position{LSN: horizon, CommitTime: r.cp.CommitTime, Last: r.cp.Last}); err != nil {
		return err
	}
	r.bridged = horizon
	return nil
}

// swap puts the new copy of t in place of its target, with its views made
// again for its columns where they changed (a query of the views in that
// instant may fail; none sees an empty or partial table), and drops the
// previous copy.
func (r *recovery) swap(ctx context.Context, t *mapping.Table) error {
	complete := func(context.Context) (bool, error) { return true, nil }
	if _, err := r.client.SwapIn(ctx, t, complete); err != nil {
		return fmt.Errorf("put the new copy of %s in place: %w", t.Source, err)
	}
	if err := execAll(ctx, r.client, r.client.DB().CreateViews(t, r.cfg.Postgres.Slot)); err != nil {
		return fmt.Errorf("put the new copy of %s in place: create its views: %w", t.Source, err)
	}
	return r.dropReplaced(ctx, t)
}

// dropReplaced drops the previous copy of t once the new one is in place,
// or keeps it (keptName) when it holds rows Postgres does not have: the
// first previous copy of the recovery's epoch, not that of an attempt
// that was started over.
func (r *recovery) dropReplaced(ctx context.Context, t *mapping.Table) error {
	db := r.client.DB()
	replaced := ddl.ReplacedName(t.Target)
	var stmts []string
	if keep := keptName(t, r.rec.Epoch); keep != "" {
		exists, err := r.client.Existing(ctx, db.Storage(keep), db.Storage(replaced))
		if err != nil {
			return err
		}
		if !exists[db.Storage(keep)] && exists[db.Storage(replaced)] {
			stmts = db.RenameTarget(t, replaced, keep)
			r.say("WARNING: %s keeps rows that Postgres does not have (%s): its previous copy stays in %s.%s, "+
				"the new one holds Postgres' rows at the recovery's snapshot", t.Target, keptWhy(t), db.Name, keep)
		}
	}
	if stmts != nil {
		if err := execAll(ctx, r.client, stmts); err != nil {
			return fmt.Errorf("put the new copy of %s in place: %w", t.Source, err)
		}
		return nil
	}
	kept, why, err := r.client.ClearReplaced(ctx, t)
	if err != nil {
		return fmt.Errorf("put the new copy of %s in place: %w", t.Source, err)
	}
	if kept != "" {
		r.say("WARNING: the previous copy of %s could not be dropped (%v): it is kept as %s.%s; drop it by hand", t.Target, why, db.Name, kept)
	}
	return nil
}

func isSlotMissing(err error) bool { return errors.Is(err, postgres.ErrSlotMissing) }

// recoveryFault is the test-only fault point of a recovery: with
// REPLICATOR_TEST_FAULT="crash-in-recovery:N" the process kills itself
// (SIGKILL) once N tables of the recovery are in place (0: right after the
// recovery's slot is made, before any copy). Unset, it does nothing.
func recoveryFault(done int) {
	for _, spec := range strings.Split(os.Getenv("REPLICATOR_TEST_FAULT"), ",") {
		if n, ok := strings.CutPrefix(spec, "crash-in-recovery:"); ok && n == strconv.Itoa(done) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

// keptName names the table that keeps the previous copy of t after a
// recovery in epoch, when t holds rows a copy of Postgres cannot give
// back: a history table's past changes, the rows of ignored deletes or
// truncations. Empty for other tables, whose previous copy is dropped.
func keptName(t *mapping.Table, epoch uint32) string {
	if keptWhy(t) == "" {
		return ""
	}
	return fmt.Sprintf("%s_before_epoch%d", t.Target, epoch)
}

func keptWhy(t *mapping.Table) string {
	var why []string
	if t.History {
		why = append(why, "history mode: its past changes")
	}
	if t.IgnoreDelete {
		why = append(why, "ignore = delete: rows deleted in Postgres")
	}
	if t.IgnoreTruncate {
		why = append(why, "ignore = truncate: rows truncated in Postgres")
	}
	return strings.Join(why, "; ")
}

package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/history"
)

// recoveryPending ends a session that found a recovery under way: its
// tables are partly the previous history's copies and partly new ones, so
// nothing may be streamed until it is finished.
type recoveryPending struct {
	slot string
	rec  checkpoint.Recovery
}

func (e *recoveryPending) Error() string {
	return fmt.Sprintf("a recovery of slot %s is under way (%s, begun %s: %d of %d tables in place): nothing is streamed until "+
		"it is finished; run `replicator resync --all` to finish it (the daemon does it by itself with postgres.recovery = \"auto\")",
		e.slot, e.rec.Reason, e.rec.Started.UTC().Format("2006-01-02 15:04:05 UTC"), e.rec.TablesDone, e.rec.Tables)
}

// checkRecovery returns a *recoveryPending when a recovery of a later
// history epoch than the checkpoint's is under way.
func checkRecovery(ctx context.Context, store *checkpoint.Store, resume checkpoint.Position) error {
	rec, found, err := store.LoadRecovery(ctx)
	if err != nil {
		return err
	}
	if found && rec.Pending(resume.History.Epoch) {
		return &recoveryPending{slot: store.Slot(), rec: rec}
	}
	return nil
}

// heal answers a session that ended because the server does not continue
// the checkpoint's history (a *history.Break) or on a recovery under way:
// with postgres.recovery = "auto" it runs the recovery (Recovery.Recover)
// and reports handled, so that the next session streams the new history;
// else, and for any other error, it returns err as it is.
func (r *Runner) heal(ctx context.Context, cfg config.Config, err error) (handled bool, _ error) {
	var brk *history.Break
	var pending *recoveryPending
	var reason string
	switch {
	case errors.As(err, &pending):
		reason = pending.rec.Reason
	case errors.As(err, &brk):
		reason = brk.Reason
	default:
		return false, err
	}
	if cfg.Postgres.Recovery != config.RecoveryAuto || r.recovery.Recover == nil {
		return false, err
	}
	r.log.Warn("the server does not continue the checkpoint's history: copying every table again while readers keep "+
		"the previous copy of each table", "reason", reason, "error", err)
	r.recovering.Store(true)
	r.metrics.Recovering.Set(1)
	defer func() {
		r.recovering.Store(false)
		r.metrics.Recovering.Set(0)
	}()
	if rerr := r.recovery.Recover(ctx, cfg, reason); rerr != nil {
		return false, rerr
	}
	r.metrics.Recoveries.WithLabelValues(reason).Inc()
	return true, nil
}

package pipeline

import (
	"context"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/sink"
)

// swapIn puts the copy a resync made of target (its shadow table) in its
// place once the copy is complete, drops the old target, and drops the
// live view, which loadRegistry creates again over the new target's
// columns. Each step can be repeated after a crash: a shadow without a
// target is renamed, a replaced target left behind is dropped.
func swapIn(ctx context.Context, client *sink.Client, target string, complete bool) error {
	db := client.DB()
	shadow, err := client.Schema(ctx, ddl.ShadowName(target))
	if err != nil {
		return err
	}
	if shadow.Exists() && complete {
		cur, err := client.Schema(ctx, target)
		if err != nil {
			return err
		}
		swap := db.SwapIn(target)
		if !cur.Exists() {
			swap = db.Rename(ddl.ShadowName(target), target)
		}
		if err := client.Exec(ctx, swap); err != nil {
			return err
		}
		if err := client.Exec(ctx, db.Drop(ddl.ViewOf(target))); err != nil {
			return err
		}
	}
	return client.Exec(ctx, db.Drop(ddl.ReplacedName(target)))
}

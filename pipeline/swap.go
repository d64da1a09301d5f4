package pipeline

import (
	"context"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/sink"
)

// swapIn puts the copy a resync made of target (its shadow table) in its
// place once complete, read again right before the swap, says the copy
// into the shadow is complete: it drops the live view (loadRegistry
// creates it again over the new target's columns), renames the old target
// away and the shadow in, and drops the old target. Each step can be
// repeated after a crash: the view is dropped before the rename, a shadow
// without a target is renamed, and a replaced target is dropped only once
// a target exists.
func swapIn(ctx context.Context, client *sink.Client, target string, complete func(context.Context) (bool, error)) error {
	db := client.DB()
	shadow, replaced := ddl.ShadowName(target), ddl.ReplacedName(target)
	exists, err := client.Existing(ctx, target, shadow, replaced)
	if err != nil {
		return err
	}
	if exists[shadow] {
		ok, err := complete(ctx)
		if err != nil {
			return err
		}
		if ok {
			for _, stmt := range db.DropViews(target) {
				if err := client.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			swap := db.SwapIn(target)
			if !exists[target] {
				swap = db.Rename(shadow, target)
			}
			if err := client.Exec(ctx, swap); err != nil {
				return err
			}
			return client.Exec(ctx, db.Drop(replaced))
		}
	}
	if !exists[target] || !exists[replaced] {
		return nil
	}
	return client.Exec(ctx, db.Drop(replaced))
}

package sink

import (
	"context"
	"fmt"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// SwapIn puts the shadow of t (ddl.ShadowName), a new copy of its rows,
// in place of its target once complete, read right before the swap, says
// the copy is done: it drops the target's views (the caller creates them
// again over the new columns) and renames the target away
// (ddl.ReplacedName) and the shadow in, on a cluster the local tables,
// whose Distributed table is then made again. The replaced table is left
// for the caller to drop or keep. Each step can be run again after a
// crash: a replaced table left, or on a cluster local tables in place
// without their Distributed table, finish the swap. It reports whether a
// swap was finished.
func (c *Client) SwapIn(ctx context.Context, t *mapping.Table, complete func(context.Context) (bool, error)) (bool, error) {
	db := c.DB()
	shadow, target, replaced := db.Storage(ddl.ShadowName(t.Target)), db.Storage(t.Target), db.Storage(ddl.ReplacedName(t.Target))
	exists, err := c.Existing(ctx, shadow, target, replaced, t.Target)
	if err != nil {
		return false, err
	}
	var stmts []string
	if exists[shadow] {
		ok, err := complete(ctx)
		if err != nil || !ok {
			return false, err
		}
		stmts = append(db.DropViews(t.Target), db.PutIn(t.Target))
		if exists[target] {
			stmts[len(stmts)-1] = db.SwapIn(t.Target)
		}
	} else if !exists[target] || !exists[replaced] && !(db.Cluster != "" && !exists[t.Target]) {
		return false, nil // (a replaced table without a target is never dropped)
	}
	stmts = append(stmts, db.AfterSwap(t)...)
	for _, stmt := range stmts {
		if err := c.Exec(ctx, stmt); err != nil {
			return false, fmt.Errorf("put the new copy of %s in place: %s: %w", t.Target, stmt, err)
		}
	}
	return true, nil
}

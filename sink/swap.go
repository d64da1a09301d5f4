package sink

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// SwapIn puts the shadow of t (ddl.ShadowName), a new copy of its rows,
// in place of its target once complete, read right before the swap, says
// the copy is done: it renames the target away (ddl.ReplacedName) and the
// shadow in, on a cluster the local tables. Where the columns or the keys
// differ it drops the target's views first (the caller creates them again
// over the new table) and on a cluster makes the Distributed table again;
// where they are the same, readers of the views go on through the swap. The replaced table is left
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
	same := false
	if exists[shadow] {
		ok, err := complete(ctx)
		if err != nil || !ok {
			return false, err
		}
		if exists[target] {
			if same, err = c.sameShape(ctx, ddl.ShadowName(t.Target), t.Target); err != nil {
				return false, err
			}
		}
		if exists[replaced] {
			// A previous copy left from an earlier swap would take the
			// replaced name the RENAME needs.
			if _, _, err := c.ClearReplaced(ctx, t); err != nil {
				return false, err
			}
		}
		switch {
		case same:
			// The views and the Distributed table read the target by
			// name: readers go on through the swap.
			stmts = []string{db.SwapIn(t.Target)}
		case exists[target]:
			stmts = append(db.DropViews(t.Target), db.SwapIn(t.Target))
		default:
			stmts = append(db.DropViews(t.Target), db.PutIn(t.Target))
		}
	} else if !exists[target] || !exists[replaced] && !(db.Cluster != "" && !exists[t.Target]) {
		return false, nil // (a replaced table without a target is never dropped)
	}
	if same && db.Cluster != "" {
		stmts = append(stmts, db.Drop(ddl.ShadowName(t.Target)))
	} else {
		stmts = append(stmts, db.AfterSwap(t)...)
	}
	for _, stmt := range stmts {
		if err := c.Exec(ctx, stmt); err != nil {
			return false, fmt.Errorf("put the new copy of %s in place: %s: %w", t.Target, stmt, err)
		}
	}
	return true, nil
}

// sameShape reports whether tables a and b have the same columns, of the
// same types, in the same order, and the same sorting and partition keys:
// what their views are made of (on a cluster the keys are the local
// tables').
func (c *Client) sameShape(ctx context.Context, a, b string) (bool, error) {
	sa, err := c.Schema(ctx, a)
	if err != nil {
		return false, err
	}
	sb, err := c.Schema(ctx, b)
	if err != nil {
		return false, err
	}
	return sa.Exists() && slices.Equal(sa.Names, sb.Names) && slices.Equal(sa.Types, sb.Types) &&
		sa.SortingKey == sb.SortingKey && sa.PartitionKey == sb.PartitionKey, nil
}

// ClearReplaced drops the previous copy of t left under ddl.ReplacedName
// after a swap, or where the server refuses the drop (a table larger than
// its max_table_size_to_drop) renames it away under a name of its own:
// kept, with why the drop failed. Either way the replaced name is free for
// the next swap; err is when it is not.
func (c *Client) ClearReplaced(ctx context.Context, t *mapping.Table) (kept string, why, err error) {
	db := c.DB()
	replaced := ddl.ReplacedName(t.Target)
	for _, stmt := range db.DropTarget(replaced) {
		if why = c.Exec(ctx, stmt); why != nil {
			break
		}
	}
	if why == nil {
		return "", nil, nil
	}
	kept = fmt.Sprintf("%s_%d", replaced, time.Now().Unix())
	if err := c.Exec(ctx, db.RenameStorage(replaced, kept)); err != nil {
		return "", why, fmt.Errorf("drop the previous copy %s: %w; rename it away: %v", replaced, why, err)
	}
	return kept, why, nil
}

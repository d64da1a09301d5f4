package sink

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// SwapIn puts the shadow of t (ddl.ShadowName), a new copy of its rows,
// in place of its target once complete, read right before the swap, says
// the copy is done (on a cluster the local tables), and leaves the old
// target under ddl.ReplacedName for the caller to drop or keep. Where the
// columns or the keys differ it drops the target's views first (the
// caller creates them again over the new table) and on a cluster makes
// the Distributed table again; where they are the same, readers of the
// views go on through the swap. It reports whether a swap was finished.
//
// The swap takes one of two forms (ddl.Database.Swap), and each step of
// either can be run again after a crash:
//
//   - RENAME (an Ordinary database, or a shadow without a token): one
//     RENAME moves the target to the replaced name and the shadow to the
//     target's. Its state shows in the names: a shadow and a replaced
//     table without a target are a RENAME cut short (PutIn finishes it);
//     a target and a replaced table without a shadow are a swap done,
//     which on a cluster may lack its Distributed table (AfterSwap).
//   - EXCHANGE (an Atomic, Replicated or Shared database): EXCHANGE
//     TABLES swaps the target's and the shadow's names at once, so that
//     no reader misses the target, and a RENAME then moves the old rows,
//     now under the shadow's name, to the replaced name. Between the two
//     the names are the same as before the EXCHANGE: the comments tell
//     them apart. The shadow was made with a token newer than any table
//     before it (ddl.ShadowComment), so a target with a newer token than
//     the table under the shadow's name is the copy swapped in, and only
//     the RENAME (and the views and Distributed table) is left to do;
//     another EXCHANGE would put the old rows back.
func (c *Client) SwapIn(ctx context.Context, t *mapping.Table, complete func(context.Context) (bool, error)) (bool, error) {
	db := c.DB()
	shadow, target, replaced := db.Storage(ddl.ShadowName(t.Target)), db.Storage(t.Target), db.Storage(ddl.ReplacedName(t.Target))
	exists, err := c.Existing(ctx, shadow, target, replaced, t.Target)
	if err != nil {
		return false, err
	}
	form := ddl.SwapRename
	if exists[shadow] && exists[target] && db.Exchanges() {
		comments, err := c.comments(ctx, shadow, target)
		if err != nil {
			return false, err
		}
		form = db.Swap(comments[shadow], comments[target])
	}
	same := false
	if exists[shadow] {
		if form != ddl.SwapExchanged {
			ok, err := complete(ctx)
			if err != nil || !ok {
				return false, err
			}
		}
		if exists[target] {
			// (Symmetric: after an EXCHANGE it compares the same two tables.)
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
	}
	stmts, ok := swapSteps(db, t, swapState{shadow: exists[shadow], target: exists[target], replaced: exists[replaced],
		distributed: exists[t.Target], form: form, same: same})
	if !ok {
		return false, nil
	}
	for _, stmt := range stmts {
		if err := c.Exec(ctx, stmt); err != nil {
			return false, fmt.Errorf("put the new copy of %s in place: %s: %w", t.Target, stmt, err)
		}
	}
	return true, nil
}

// swapState is what SwapIn found: which of the shadow's, the target's
// and the replaced name hold a table (on a cluster their local tables),
// whether the target's Distributed table exists, the form of the swap,
// and whether the shadow has the target's shape.
type swapState struct {
	shadow, target, replaced, distributed bool
	form                                  ddl.SwapForm
	same                                  bool
}

// swapSteps returns the statements that take the swap of t from st to its
// end (SwapIn's doc says which state each step leaves), and false where
// there is no swap to do or finish. A previous copy under the replaced
// name is dropped before them (ClearReplaced).
func swapSteps(db ddl.Database, t *mapping.Table, st swapState) ([]string, bool) {
	var stmts []string
	if st.shadow {
		if !st.same {
			// Readers of the views go on through the swap only where the
			// new table has the columns and keys they were made of.
			stmts = db.DropViews(t.Target)
		}
		switch {
		case st.form == ddl.SwapExchanged:
			stmts = append(stmts, db.AfterExchange(t.Target))
		case st.form == ddl.SwapExchange:
			stmts = append(stmts, db.Exchange(t.Target)...)
		case st.target:
			stmts = append(stmts, db.SwapIn(t.Target))
		default:
			stmts = append(stmts, db.PutIn(t.Target))
		}
	} else if !st.target || !st.replaced && !(db.Cluster != "" && !st.distributed) {
		return nil, false // (a replaced table without a target is never dropped)
	}
	if st.same && db.Cluster != "" {
		stmts = append(stmts, db.Drop(ddl.ShadowName(t.Target)))
	} else {
		stmts = append(stmts, db.AfterSwap(t)...)
	}
	return stmts, true
}

// ShadowToken returns the token of a new shadow of t
// (ddl.Database.CreateShadow): the time now, and where the swap is an
// EXCHANGE later than the token of the table under the target's name, so
// that a clock set back cannot make the new copy look like one already
// swapped in (ddl.Database.Swap).
func (c *Client) ShadowToken(ctx context.Context, t *mapping.Table) (string, error) {
	db := c.DB()
	now := time.Now()
	if !db.Exchanges() {
		return ddl.NewToken(now), nil
	}
	target := db.Storage(t.Target)
	comments, err := c.comments(ctx, target)
	if err != nil {
		return "", err
	}
	if last := ddl.CopyToken(comments[target]); now.UnixNano() <= last {
		now = time.Unix(0, last+1)
	}
	return ddl.NewToken(now), nil
}

// comments reads the comments of tables, none where the server keeps no
// comments.
func (c *Client) comments(ctx context.Context, tables ...string) (map[string]string, error) {
	out := map[string]string{}
	if !c.server.Comments {
		return out, nil
	}
	rows, err := c.Query(ctx, "SELECT name, comment FROM system.tables WHERE database = ? AND has(?, name)", c.database, tables)
	if err != nil {
		return nil, fmt.Errorf("read the comments of %s: %w", strings.Join(tables, ", "), err)
	}
	for _, r := range rows {
		out[r[0].(string)] = r[1].(string)
	}
	return out, nil
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

package pipeline

import (
	"context"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/sink"
)

// swapIn puts the copy a resync made of t (its shadow table) in its place
// once complete, read again right before the swap, says the copy into the
// shadow is complete (sink.Client.SwapIn; loadRegistry creates the views
// again over the new target's columns), and drops the old target. Each
// step can be repeated after a crash: a replaced target is dropped only
// once a target exists. An old target the server refuses to drop is kept
// under a name of its own (sink.Client.ClearReplaced), which swapIn
// returns with why: the swap is done.
func swapIn(ctx context.Context, client *sink.Client, t *mapping.Table, complete func(context.Context) (bool, error)) (kept string, why, err error) {
	swapped, err := client.SwapIn(ctx, t, complete)
	if err != nil || !swapped {
		return "", nil, err
	}
	return client.ClearReplaced(ctx, t)
}

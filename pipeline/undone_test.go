package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/replicator/replicator/checkpoint"
)

// TestWaitingTableWhoseAddingIsUndone: a daemon that names docs while
// setup adds it holds its checkpoint and makes docs wait; the adding is
// undone (setup without docs deletes its copy state), and the daemon
// starts again from its checkpoint by itself instead of holding forever.
func TestWaitingTableWhoseAddingIsUndone(t *testing.T) {
	ctx := context.Background()
	a, _ := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	done := []checkpoint.Chunk{{Source: "public.events", Relation: "public.events", LSN: 90, Whole: 90}}
	state := chunkState{"public.events": done, "public.docs": {{Source: "public.docs", Target: "docs"}}}
	a.reg.chunks = state
	a.reg.waiting[1] = true // as loadRegistry does for a copy not complete
	a.holdFor(1, 0)
	a.hold.nextWarn = time.Now().Add(time.Hour)
	if err := a.pollHold(ctx, time.Now()); err != nil {
		t.Fatalf("pollHold while docs is copied = %v, want nil", err)
	}
	// setup without docs: its copy state goes.
	delete(state, "public.docs")
	for i := range 3 {
		now := time.Now().Add(time.Duration(i+1) * holdPoll)
		if err := a.pollHold(ctx, now); errors.Is(err, errRestart) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
	}
	t.Errorf("the checkpoint stays held for docs, whose copy state is gone: hold %+v", a.hold)
}

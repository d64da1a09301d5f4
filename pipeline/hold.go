package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/replication"
)

// errRestart ends a session so that the next one starts from the stored
// checkpoint with the copy state as it is now.
var errRestart = errors.New("restart from the checkpoint")

// holdPoll is how often a held daemon reads the copy state.
const holdPoll = 2 * time.Second

// hold keeps the checkpoint where it is while a table copy that the stream
// depends on is in progress. A slot cannot be rewound, so a daemon that
// acknowledged a change of a table whose copy is not complete would lose
// it: the copy's snapshot (a temporary slot's consistent point, later than
// the hold's start) holds the rows of the changes below it, and the daemon,
// started again from the held checkpoint once the copy is complete, writes
// the changes from there with the table's new horizon. Rows keep being
// written while the checkpoint is held (replays are harmless), except
// those of the awaited tables, which the restart writes.
type hold struct {
	// since is when the checkpoint was first held; zero when it is not.
	since time.Time
	// after holds, per configured table index awaited, the position its
	// completed copy must be above: the resync message's, or 0.
	after map[int]pglogrepl.LSN
	// added holds the tables added by a setup with a configuration that
	// this daemon was not started with.
	added    []string
	nextPoll time.Time
	nextWarn time.Time
}

func (h *hold) held() bool { return !h.since.IsZero() }

// start holds the checkpoint, from now on if it is not held yet.
func (h *hold) start(now time.Time) {
	if h.since.IsZero() {
		h.since, h.nextPoll = now, now
	}
}

// wait holds the checkpoint until the copy of table idx completes above
// after.
func (h *hold) wait(idx int, after pglogrepl.LSN, now time.Time) {
	if h.after == nil {
		h.after = make(map[int]pglogrepl.LSN)
	}
	if prev, ok := h.after[idx]; !ok || after > prev {
		h.after[idx] = after
	}
	h.start(now)
}

// addedTable holds the checkpoint until a restart with another
// configuration, which names source; it reports whether source is new.
func (h *hold) addedTable(source string, now time.Time) bool {
	h.start(now)
	if slices.Contains(h.added, source) {
		return false
	}
	h.added = append(h.added, source)
	return true
}

// complete reports whether every awaited copy is complete in chunks (the
// copy state), so that a restart writes the awaited tables.
func (h *hold) complete(chunks map[string][]checkpoint.Chunk, sources []string) bool {
	if len(h.after) == 0 {
		return false
	}
	for idx, after := range h.after {
		if checkpoint.Horizon(chunks[sources[idx]]) <= after {
			return false
		}
	}
	return true
}

// mark handles the mark that a resync or a setup adding tables writes
// into the stream before the copy's snapshot (see load.Resync and
// load.Setup): from the mark on, no checkpoint may cover a change that the
// copy does not hold, whether or not the stream carried the table's
// changes before. A resync's copy goes into a shadow table while the
// target keeps being written; a setup's copy of a table this daemon is
// configured with goes into the target itself, and the table's changes
// wait, unwritten, for the restart after it; a setup's copy of a table
// this daemon is not configured with holds the checkpoint until the
// daemon runs with a configuration that names it. A mark replayed after
// the copy completed, or of a copy no longer pending, holds nothing.
func (a *applier) mark(ctx context.Context, m *replication.LogicalMessage) error {
	msg, ok := replication.ParseResync(m)
	if !ok || msg.Slot != a.slot {
		return nil
	}
	idx, configured := a.reg.index[msg.Table]
	if configured && a.reg.horizons[idx] > m.LSN {
		return nil
	}
	var cs []checkpoint.Chunk
	pending := configured // (without copy state to read)
	if a.reg.chunks != nil {
		chunks, err := a.reg.chunks.LoadChunks(ctx)
		if err != nil {
			return err
		}
		cs, pending = chunks[msg.Table]
	}
	switch {
	case !pending:
		a.log.Warn("a table copy was marked in the stream but has no copy state any more (a setup removed the table since): "+
			"nothing waits for it", "table", msg.Table, "lsn", m.LSN)
		return nil
	case !configured:
		if a.hold.addedTable(msg.Table, time.Now()) {
			a.log.Warn("a table this daemon's configuration does not name is being copied (`replicator setup` or "+
				"`resync` with another configuration): the checkpoint is held until this daemon runs with that "+
				"configuration; restart it with that file, or update its file and send it SIGHUP",
				"table", msg.Table, "lsn", m.LSN, "checkpoint", a.pos.durable.LSN)
		}
		a.setHeld()
		return nil
	case a.reg.chunks != nil && !checkpoint.Into(cs, ddl.ShadowName(a.reg.specs[idx].Target)):
		a.reg.waiting[idx] = true
		a.log.Warn("`replicator setup` copies the table into its ClickHouse table: its changes wait for the copy, and "+
			"the checkpoint is held until it is complete", "table", msg.Table, "lsn", m.LSN, "checkpoint", a.pos.durable.LSN)
	default:
		a.log.Warn("a resync of the table began: the checkpoint is held until its copy is complete",
			"table", msg.Table, "lsn", m.LSN, "checkpoint", a.pos.durable.LSN)
	}
	a.holdFor(idx, m.LSN)
	return nil
}

// holdFor holds the checkpoint until the copy of table idx completes above
// after.
func (a *applier) holdFor(idx int, after pglogrepl.LSN) {
	a.hold.wait(idx, after, time.Now())
	a.setHeld()
}

// awaited reports whether a change of relation relID waits for a table
// copy: then the checkpoint is held and the change is written after the
// restart that follows the copy.
func (a *applier) awaited(relID uint32) bool {
	idx, ok := a.reg.rels[relID]
	return ok && idx >= 0 && a.reg.waiting[idx]
}

func (a *applier) setHeld() {
	if a.rep.metrics != nil {
		a.rep.metrics.Held.Set(1)
	}
}

// pollHold reads the copy state every holdPoll while the checkpoint is
// held, and returns errRestart once every awaited copy is complete.
func (a *applier) pollHold(ctx context.Context, now time.Time) error {
	h := &a.hold
	if !h.held() || now.Before(h.nextPoll) {
		return nil
	}
	h.nextPoll = now.Add(holdPoll)
	if !now.Before(h.nextWarn) {
		h.nextWarn = now.Add(time.Minute)
		var waiting []string
		for idx := range h.after {
			waiting = append(waiting, a.reg.specs[idx].Source)
		}
		slices.Sort(waiting)
		a.log.Warn("the checkpoint is held for table copies", "held_for", now.Sub(h.since).Round(time.Second).String(),
			"checkpoint", a.pos.durable.LSN, "copying", strings.Join(waiting, ","), "added_elsewhere", strings.Join(h.added, ","),
			"fix", "a copy interrupted is finished by running `replicator resync` (or `replicator setup` for an added table) again")
	}
	if a.reg.chunks == nil {
		return nil
	}
	chunks, err := a.reg.chunks.LoadChunks(ctx)
	if err != nil {
		return err
	}
	for _, source := range h.added {
		if _, ok := chunks[source]; !ok {
			// A setup removed the table from the replication after all.
			return fmt.Errorf("%w: table %s is no longer being added", errRestart, source)
		}
	}
	sources := make([]string, len(a.reg.specs))
	for i, s := range a.reg.specs {
		sources[i] = s.Source
	}
	for idx := range h.after {
		if _, ok := chunks[sources[idx]]; !ok {
			// A setup removed it from the replication after all: no copy
			// will come.
			return fmt.Errorf("%w: table %s is no longer being copied", errRestart, sources[idx])
		}
	}
	if len(h.added) > 0 {
		return nil
	}
	if h.complete(chunks, sources) {
		return fmt.Errorf("%w: the awaited table copies are complete", errRestart)
	}
	return nil
}

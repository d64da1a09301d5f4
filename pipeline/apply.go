package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// rowWriter buffers mapped rows per table and stores them in ClickHouse
// (*sink.Writer). A flush takes the buffered rows (Take) and writes them
// while the next rows are buffered.
type rowWriter interface {
	// SetTable replaces the mapping of table (after a Relation message).
	SetTable(table int, t *mapping.Table)
	// Put buffers row under key, replacing a buffered row of the same key;
	// fill names columns to take from an earlier image before writing.
	Put(table int, key string, row []any, fill *sink.Fill)
	// Latest returns the buffered row of a key and the columns it still
	// waits for.
	Latest(table int, key string) (row []any, fill *sink.Fill, ok bool)
	// Size returns the number of buffered rows and the memory they hold.
	Size() (rows, bytes, waiting int)
	// Take detaches the buffered rows and empties the buffer; write stores
	// them and returns only after ClickHouse acknowledged them. write may
	// run while rows are Put.
	Take() (rows int, write func(ctx context.Context) error)
	// Truncate drops the table's buffered rows and empties its target.
	Truncate(ctx context.Context, table int) error
}

// positionStore saves checkpoints and progress reports (*checkpoint.Store).
// Save returns only after ClickHouse acknowledged the checkpoint; it is
// called from a flight while the applier may call the other methods.
type positionStore interface {
	Save(ctx context.Context, pos checkpoint.Position) error
	SaveProgress(ctx context.Context, oldestUnstored time.Time) error
	// SaveTruncation records a truncation of a source table before its
	// target is emptied.
	SaveTruncation(ctx context.Context, source string, tr checkpoint.Truncation) error
}

// applier is the replication.Handler that maps changes, buffers them in a
// rowWriter, and after each flush saves a checkpoint. Its durable position,
// which the stream acknowledges, is the newest saved checkpoint.
type applier struct {
	log    hclog.Logger
	writer rowWriter
	store  positionStore
	reg    *registry
	pos    position
	rep    *reporter
	faults faults

	maxRows  int
	maxBytes int
	maxDelay time.Duration
	// minInterval is the least time between the starts of two flushes of
	// complete transactions; lastFlush is when the previous one started
	// (the session's start before the first: a backlog is caught up in
	// batches from the start).
	minInterval time.Duration
	lastFlush   time.Time
	idleGap     time.Duration
	since       time.Time // when the buffer became non-empty
	// slot names the slot, whose resync messages hold the checkpoint.
	slot string
	hold hold
	// witness decides from the first transactions whether the server's
	// WAL continues the checkpoint's history (nil: nothing to decide).
	witness *history.Witness

	unchanged []int

	// fly is the flush under way (nil: none); failed is the error of a
	// flush that failed, which ends the session.
	fly    *flight
	failed error
}

// Durable is the position to acknowledge: the newest saved checkpoint, or,
// while the witness has not decided that the server continues its
// history, where streaming started.
func (a *applier) Durable() pglogrepl.LSN {
	return a.witness.Acknowledged(a.pos.durable.LSN)
}

func (a *applier) Deadline() time.Time {
	var d time.Time
	if a.fly != nil {
		d = a.fly.poll
	} else {
		d = a.flushDue()
	}
	if a.hold.held() && (d.IsZero() || a.hold.nextPoll.Before(d)) {
		d = a.hold.nextPoll
	}
	return d
}

func (a *applier) Handle(ctx context.Context, m replication.Message) error {
	if err := a.land(ctx, false); err != nil {
		return err
	}
	switch m := m.(type) {
	case *replication.Begin:
		if err := a.witness.Begin(m.FinalLSN, m.Xid, m.CommitTime); err != nil {
			return err
		}
		if err := a.pos.begin(m); err != nil {
			return err
		}
		if !a.pos.skip {
			a.rep.received(m.CommitTime)
		}
	case *replication.Commit:
		applied, err := a.pos.commit(m)
		if err != nil || !applied {
			return err
		}
		a.rep.transaction()
		a.markBuffered()
	case *replication.Relation:
		return a.reg.bind(ctx, m)
	case *replication.Change:
		if !a.pos.inTxn {
			return fmt.Errorf("change of %s outside a transaction", m.Relation.QualifiedName())
		}
		if mark, ok := replication.ParseMark(m); ok {
			// A resync's mark on a server without logical messages, at
			// its transaction's commit LSN.
			return a.mark(ctx, replication.MarkMessage(mark, a.pos.version))
		}
		if a.pos.skip || a.awaited(m.Relation.ID) {
			return nil
		}
		if idx, ok := a.belowExactCopy(m.Relation.ID); ok {
			// Nothing to write, and its Relation stays pending: no drain.
			a.rep.change(idx, m.Op)
			return nil
		}
		if a.reg.pendingFor(m.Relation.ID) {
			if err := a.settle(ctx); err != nil {
				return err
			}
		}
		idx, err := a.change(ctx, m)
		if _, ok := mapping.AsUnknownLabel(err); ok && a.reg.refresh(m.Relation.ID) {
			// A label added to an enum (ALTER TYPE ... ADD VALUE sends no
			// Relation message): the mapping reads the type's labels
			// again and ClickHouse's Enum gains it before the change is
			// mapped again.
			if err := a.settle(ctx); err != nil {
				return err
			}
			idx, err = a.change(ctx, m)
			if l, ok := mapping.AsUnknownLabel(err); ok {
				return a.unplacedLabel(m.Relation.ID, l, err)
			}
		}
		if err != nil {
			return err
		}
		a.rep.change(idx, m.Op)
		return a.flushFull(ctx)
	case *replication.Truncate:
		if !a.pos.applying() {
			return nil
		}
		// The rows before it are stored before the target is emptied.
		if err := a.land(ctx, true); err != nil {
			return err
		}
		return a.truncate(ctx, m)
	case *replication.LogicalMessage:
		if m.Prefix == replication.ResyncPrefix {
			if err := a.mark(ctx, m); err != nil {
				return err
			}
		}
		if !m.Transactional {
			if err := a.witness.Position(m.LSN); err != nil {
				return err
			}
			if a.pos.heartbeat(m.LSN, heartbeatTime(m)) {
				return a.idleCheckpoint(ctx, time.Now())
			}
		}
	}
	return nil
}

// unplacedLabel says why an enum label is still unknown after the
// labels were read again: a key column that needs Enum16 keeps its Enum8
// until its table's copy in the wider type is in place (the daemon goes
// on then by itself), or the label is not Postgres' either.
func (a *applier) unplacedLabel(relID uint32, l *mapping.UnknownLabelError, err error) error {
	var ce *mapping.ColumnError
	if t := a.reg.current(relID); t != nil && errors.As(err, &ce) {
		if i := t.ColumnIndex(ce.Column); i >= 0 && slices.Contains(t.Columns[i].Src.Labels, l.Label) {
			return fmt.Errorf("%w: the label is the Postgres enum's; the key column's Enum takes it once the table's copy "+
				"in the wider Enum is in place, which the daemon has started", err)
		}
	}
	return fmt.Errorf("%w: the Postgres enum has no label %q either: copy the table again with "+
		"`replicator resync --config FILE --table %s`", err, l.Label, a.reg.source(relID))
}

// settle stores the rows buffered before the mapping of a table changes
// (another set of columns, or another type): they are written under the
// mapping they were made with.
func (a *applier) settle(ctx context.Context) error {
	if rows, _, _ := a.writer.Size(); rows > 0 {
		return a.drain(ctx)
	}
	return a.land(ctx, true)
}

// Tick flushes when the oldest buffered change waited max_delay, and when
// idle checkpoints the server's WAL position so that lag reads zero and
// Postgres can recycle WAL.
func (a *applier) Tick(ctx context.Context, walEnd pglogrepl.LSN) error {
	now := time.Now()
	if err := a.witness.Position(walEnd); err != nil {
		return err
	}
	a.pos.keepalive(walEnd)
	if err := a.land(ctx, false); err != nil {
		return err
	}
	// A held checkpoint is released even when flights run back to back.
	if err := a.pollHold(ctx, now); err != nil {
		return err
	}
	if err := a.reg.checkPublication(ctx, now); err != nil {
		return err
	}
	if a.fly != nil {
		// Its landing observes; what is due is flushed after it.
		a.fly.poll = now.Add(flightPoll)
		return nil
	}
	if err := a.rep.observe(ctx, false, a.pos.walEnd, a.pos.durable.LSN); err != nil {
		return err
	}
	if due := a.flushDue(); !due.IsZero() && !now.Before(due) {
		return a.flush(ctx)
	}
	return a.idleCheckpoint(ctx, now)
}

// idleCheckpoint saves, when nothing is buffered or open, the newest
// position below which every transaction has been received: the LSN of the
// newest non-transactional logical message (a heartbeat), or the WAL end of
// the newest keepalive. Postgres sends a transaction while it processes the
// transaction's commit record and advances the keepalive position (sentPtr)
// only after that, so no transaction that committed below either position
// is still to come. Acknowledging it also lets a Postgres fast shutdown
// finish: the walsender waits for the client to confirm its last position.
func (a *applier) idleCheckpoint(ctx context.Context, now time.Time) error {
	rows, _, _ := a.writer.Size()
	pos, ok := a.pos.idleCheckpoint(now, rows, a.idleGap)
	if !ok || a.hold.held() || a.fly != nil {
		return nil
	}
	if err := a.store.Save(ctx, pos); err != nil {
		return err
	}
	a.pos.idleSaved(pos, now)
	a.rep.checkpointed(pos.LSN, a.pos.asOf())
	return nil
}

// flushDue returns when the buffer is to be flushed (zero: nothing to
// flush). Complete transactions are flushed as soon as the previous flush
// started minInterval ago: the lag is the time the work takes, not a
// timer's. Rows of a transaction still being received wait until
// max_delay, the bound for everything.
func (a *applier) flushDue() time.Time {
	if a.since.IsZero() {
		return time.Time{}
	}
	due := a.since.Add(a.maxDelay)
	if a.pos.pending {
		if soon := a.lastFlush.Add(a.minInterval); soon.Before(due) {
			due = soon
		}
	}
	return due
}

// flushFull flushes when the buffer is full: max_rows rows, FillBatch
// rows waiting for images, or max_bytes together with the flight's buffer,
// which then lands first (the memory of both stays within max_bytes).
func (a *applier) flushFull(ctx context.Context) error {
	rows, bytes, waiting := a.writer.Size()
	full := func(flying int) bool {
		return rows >= a.maxRows || bytes+flying >= a.maxBytes || waiting >= sink.FillBatch
	}
	if !full(a.flying()) {
		return nil
	}
	if err := a.land(ctx, true); err != nil || !full(0) {
		return err
	}
	return a.flush(ctx)
}

func (a *applier) markBuffered() {
	if a.since.IsZero() {
		a.since = time.Now()
	}
}

// belowExactCopy reports whether a change of relation relID in the
// current transaction falls below the horizon of its table's copy read
// whole in one snapshot (a resync, an added table), and the table's index.
// The copy holds exactly the rows alive at its horizon, deletes included:
// such a change has nothing to write, and its Relation (a schema older than
// the copy's, after a resync) is not reconciled with the target. It is
// decided before anything else: a change that leaves its Relation pending
// must not drain the buffer, or the replay window after a resync flushes
// once per change of the table.
func (a *applier) belowExactCopy(relID uint32) (int, bool) {
	idx, err := a.reg.lookup(relID)
	if err != nil || idx < 0 {
		return idx, false
	}
	return idx, a.reg.exact[idx] && a.pos.version < a.reg.horizons[idx]
}

// change maps one change into rows of its table's buffer and returns the
// table's index (-1: a table the replicator does not copy). A change below
// the horizon of an exact copy never reaches it (belowExactCopy).
func (a *applier) change(ctx context.Context, c *replication.Change) (int, error) {
	idx, t, fresh, err := a.reg.table(ctx, c.Relation.ID)
	if err != nil || idx < 0 {
		return idx, err
	}
	if fresh {
		a.writer.SetTable(idx, t)
	}
	version := a.pos.version
	// The change's tombstone sorts before its new image (mapping.SeqColumn).
	tombSeq := 2 * uint64(c.LSN)
	if cut, ok := a.reg.cuts[idx]; ok && cut.Covers(uint64(version), tombSeq) {
		// A replay: a TRUNCATE after this change emptied the target.
		return idx, nil
	}
	fail := func(vals []mapping.Value, err error) error { return mapping.NewRowError(t, vals, version, err) }
	if c.Op == replication.OpDelete && t.IgnoreDelete {
		return idx, nil
	}
	if t.History {
		return idx, a.historyChange(idx, t, c, tombSeq, fail)
	}
	if t.Placed() {
		return idx, a.placedChange(idx, t, c, tombSeq, fail)
	}
	var tomb []any
	var oldKey string
	if c.Old != nil {
		tomb = t.NewRow()
		if err := t.Tombstone(c.Old, tomb); err != nil {
			return idx, fail(c.Old, err)
		}
		t.SetMeta(tomb, uint64(version), true, tombSeq)
		oldKey = t.Placement(tomb)
		if c.Op == replication.OpDelete {
			a.writer.Put(idx, oldKey, tomb, nil)
			a.markBuffered()
			return idx, nil
		}
	}
	if version < a.reg.horizons[idx] {
		// The table's copy was read in a later snapshot than this change:
		// the copy holds every row alive then, so this change's row is
		// superseded; only a tombstone it writes at an old place counts.
		if tomb != nil {
			if err := a.superseded(idx, t, c, tomb, oldKey); err != nil {
				return idx, fail(c.New, err)
			}
		}
		return idx, nil
	}
	row := t.NewRow()
	unchanged, err := t.Row(c.New, row, a.unchanged[:0])
	a.unchanged = unchanged
	if err != nil {
		return idx, fail(c.New, err)
	}
	t.SetMeta(row, uint64(version), false, tombSeq+1)
	key := t.Placement(row)
	moved := tomb != nil && key != oldKey
	var fill *sink.Fill
	if len(unchanged) > 0 {
		// The values come from the row's image before this change: for a
		// key move, the old key's.
		imageKey, imageRow := key, row
		if moved {
			imageKey, imageRow = oldKey, tomb
		}
		if fill, err = a.fillUnchanged(idx, c, imageKey, imageRow, row, unchanged, tombSeq); err != nil {
			return idx, fail(c.New, err)
		}
	}
	if moved {
		// The update moved the row to another sorting key or partition:
		// delete it at its old place.
		a.writer.Put(idx, oldKey, tomb, nil)
	}
	a.writer.Put(idx, key, row, fill)
	a.markBuffered()
	return idx, nil
}

// placedChange maps a change of a Placed table, whose sorting or partition
// key uses columns that a delete, and an update that keeps the replica
// identity, do not carry (without REPLICA IDENTITY FULL). The row before
// the change is found by its identity: its latest image in the buffer,
// else a Place tombstone that Flush completes from the newest stored image
// before the change. Its tombstone is written at the old place unless the
// update's new row is at the same place; the update's unchanged TOAST
// values come from the same image.
func (a *applier) placedChange(idx int, t *mapping.Table, c *replication.Change, tombSeq uint64,
	fail func([]mapping.Value, error) error) error {
	version := uint64(a.pos.version)
	below := a.pos.version < a.reg.horizons[idx]
	var tomb, row []any
	var unchanged []int
	if c.Old != nil {
		// A delete, or an update that changed the identity.
		tomb = t.NewRow()
		if err := t.Tombstone(c.Old, tomb); err != nil {
			return fail(c.Old, err)
		}
	}
	newPlace := ""
	if c.Op != replication.OpDelete {
		row = t.NewRow()
		var err error
		unchanged, err = t.Row(c.New, row, a.unchanged[:0])
		a.unchanged = unchanged
		if err != nil {
			return fail(c.New, err)
		}
		for _, k := range append(slices.Clone(t.Key), t.PlacedColumns()...) {
			if slices.Contains(unchanged, k) {
				return fail(c.New, &mapping.ColumnError{Column: t.Columns[k].Name,
					Err: errors.New("unchanged TOAST value in a sorting or partition key column; set REPLICA IDENTITY FULL on the table")})
			}
		}
		t.SetMeta(row, version, false, tombSeq+1)
		newPlace = t.Placement(row)
		if c.Op == replication.OpUpdate && tomb == nil {
			// The update kept the identity: the row before it has the new
			// row's identity.
			tomb = t.TombstoneOf(row)
		}
	}
	var fill *sink.Fill
	if tomb != nil {
		t.SetMeta(tomb, version, true, tombSeq)
		ident := t.IdentString(tomb)
		prev, prevFill, ok := a.writer.Latest(idx, ident)
		switch {
		case ok && !t.IsTombstone(prev):
			t.TakePlacement(tomb, prev)
			if oldPlace := t.Placement(tomb); oldPlace != newPlace {
				a.writer.Put(idx, oldPlace, tomb, nil)
			}
			if len(unchanged) > 0 && !below {
				fill = fromBuffered(t, prev, prevFill, row, unchanged)
			}
		case ok && !below:
			return fail(c.New, &mapping.ColumnError{Column: t.Columns[t.PlacedColumns()[0]].Name, Err: sink.ErrNoPlace})
		default:
			a.writer.Put(idx, sink.PendingKey(ident, tombSeq), tomb, &sink.Fill{Cols: t.PlacedColumns(), Key: ident, KeyRow: tomb,
				Version: version, Seq: tombSeq, Place: true, Moved: newPlace, Lenient: below})
			if len(unchanged) > 0 && !below {
				fill = withOwn(t, &sink.Fill{Cols: slices.Clone(unchanged), Key: ident, KeyRow: tomb, Version: version, Seq: tombSeq}, row)
			}
		}
	}
	if row != nil && !below {
		// Below the table's copy horizon the copy holds the row's later
		// state: only the tombstone at its old place counts.
		a.writer.Put(idx, newPlace, row, fill)
	}
	a.markBuffered()
	return nil
}

// historyChange maps a change of a history table into rows of their own,
// each under its own buffer key: a delete's row (its old tuple, marked
// deleted), an update that changed the identity as the old identity's
// delete and the new row, an insert or update as the new row with its
// unchanged TOAST values from the row's image before the change (the full
// old row, else the previous change's row in the buffer, else a stored
// row that Flush looks up). Below the table's copy horizon only deletes
// are written, as in the latest state.
func (a *applier) historyChange(idx int, t *mapping.Table, c *replication.Change, tombSeq uint64,
	fail func([]mapping.Value, error) error) error {
	version := uint64(a.pos.version)
	var tomb, row []any
	var unchanged []int
	if c.Old != nil {
		tomb = t.NewRow()
		if err := t.Tombstone(c.Old, tomb); err != nil {
			return fail(c.Old, err)
		}
		t.SetMeta(tomb, version, true, tombSeq)
		t.SetOp(tomb, mapping.OpDelete)
	}
	if c.Op != replication.OpDelete {
		row = t.NewRow()
		var err error
		unchanged, err = t.Row(c.New, row, a.unchanged[:0])
		a.unchanged = unchanged
		if err != nil {
			return fail(c.New, err)
		}
		if tomb != nil && t.IdentString(tomb) == t.IdentString(row) {
			tomb = nil // the full old row of an update that kept the identity
		}
	}
	if c.Op == replication.OpDelete || a.pos.version < a.reg.horizons[idx] {
		if tomb != nil {
			a.writer.Put(idx, sink.PendingKey(t.IdentString(tomb), tombSeq), tomb, nil)
			a.markBuffered()
		}
		return nil
	}
	op := mapping.OpUpdate
	if c.Op == replication.OpInsert {
		op = mapping.OpInsert
	}
	t.SetMeta(row, version, false, tombSeq+1)
	t.SetOp(row, op)
	var fill *sink.Fill
	if len(unchanged) > 0 {
		image := row
		if tomb != nil {
			image = tomb
		}
		var err error
		if fill, err = a.historyImage(idx, t, c, image, row, unchanged, tombSeq); err != nil {
			return fail(c.New, err)
		}
	}
	if tomb != nil {
		a.writer.Put(idx, sink.PendingKey(t.IdentString(tomb), tombSeq), tomb, nil)
	}
	a.writer.Put(idx, sink.PendingKey(t.IdentString(row), tombSeq+1), row, fill)
	a.markBuffered()
	return nil
}

// historyImage sets the unchanged TOAST values cols of a history table's
// row from the image of the row identified by image before the change c
// (see fillUnchanged), or returns the Fill that Flush completes.
func (a *applier) historyImage(idx int, t *mapping.Table, c *replication.Change, image, row []any, cols []int, seq uint64) (*sink.Fill, error) {
	if c.OldFull {
		old := t.NewRow()
		if missing, err := t.Row(c.Old, old, nil); err == nil && len(missing) == 0 {
			for _, col := range cols {
				row[col] = old[col]
			}
			return nil, nil
		}
	}
	ident := t.IdentString(image)
	prev, prevFill, ok := a.writer.Latest(idx, ident)
	if !ok {
		return withOwn(t, &sink.Fill{Cols: slices.Clone(cols), Key: ident, KeyRow: image, Version: uint64(a.pos.version), Seq: seq}, row), nil
	}
	if t.IsTombstone(prev) {
		return nil, &mapping.ColumnError{Column: t.Columns[cols[0]].Name, Err: sink.ErrNoImage}
	}
	return fromBuffered(t, prev, prevFill, row, cols), nil
}

// withOwn completes f, the fill of row, with where row is stored: at its
// identity from its own (_version, _seq) on. A replay finds its first
// attempt's row there (see sink.Fill.Own).
func withOwn(t *mapping.Table, f *sink.Fill, row []any) *sink.Fill {
	f.Own = []sink.Span{ownSpan(t, row)}
	return f
}

// ownSpan is the span of row, a change's row: its identity from its own
// (_version, _seq) on.
func ownSpan(t *mapping.Table, row []any) sink.Span {
	v, _, s := t.Meta(row)
	return sink.Span{Key: t.IdentString(row), KeyRow: row, FromVersion: v, FromSeq: s}
}

// fromBuffered sets the columns cols of row from prev, the buffered image
// of its row, and returns the Fill of those that prev itself still waits
// for (prevFill), which the same lookup completes; nil when none. The
// Fill keeps prevFill's image and spans, and a new span when row's change
// moved the row to another identity: a replay finds the values in the rows
// stored at either (see sink.Fill.Own).
func fromBuffered(t *mapping.Table, prev []any, prevFill *sink.Fill, row []any, cols []int) *sink.Fill {
	var rest []int
	for _, col := range cols {
		if prevFill != nil && slices.Contains(prevFill.Cols, col) {
			rest = append(rest, col)
			continue
		}
		row[col] = prev[col]
	}
	if len(rest) == 0 {
		return nil
	}
	own := slices.Clone(prevFill.Own)
	if n := len(own); n > 0 && own[n-1].Key != t.IdentString(row) {
		// The row moved: its span at the old identity ends at this
		// change's tombstone there.
		v, _, s := t.Meta(row)
		own[n-1].ToVersion, own[n-1].ToSeq = v, s-1
		own = append(own, ownSpan(t, row))
	}
	return &sink.Fill{Cols: rest, Key: prevFill.Key, KeyRow: prevFill.KeyRow, Version: prevFill.Version, Seq: prevFill.Seq, Own: own}
}

// superseded writes the tombstone of an update below the table's horizon
// when the update moved the row to another sorting key or partition.
func (a *applier) superseded(idx int, t *mapping.Table, c *replication.Change, tomb []any, oldKey string) error {
	row := t.NewRow()
	if _, err := t.Row(c.New, row, nil); err != nil {
		return err
	}
	for _, k := range t.Key {
		if row[k] == nil {
			return &mapping.ColumnError{Column: t.Columns[k].Name, Err: errors.New("unchanged TOAST value in a sorting key column")}
		}
	}
	if t.Placement(row) != oldKey {
		a.writer.Put(idx, oldKey, tomb, nil)
		a.markBuffered()
	}
	return nil
}

// fillUnchanged sets the unchanged TOAST values cols of row from the
// image at imageKey (a placement) before the change c: the full old row (REPLICA IDENTITY
// FULL), else the buffered row, else the newest stored row strictly older
// than c's rows (below seq, the seq of c's tombstone), which the writer
// looks up in bulk when it flushes (the returned Fill). A deleted image is an error: nothing is ever stored as a default.
func (a *applier) fillUnchanged(idx int, c *replication.Change, imageKey string, imageRow, row []any, cols []int, seq uint64) (*sink.Fill, error) {
	t := a.reg.tables[idx]
	for _, k := range t.Key {
		if slices.Contains(cols, k) {
			return nil, &mapping.ColumnError{Column: t.Columns[k].Name, Err: errors.New("unchanged TOAST value in a sorting key column")}
		}
	}
	if c.OldFull {
		old := t.NewRow()
		if missing, err := t.Row(c.Old, old, nil); err == nil && len(missing) == 0 {
			for _, col := range cols {
				row[col] = old[col]
			}
			return nil, nil
		}
	}
	prev, prevFill, ok := a.writer.Latest(idx, imageKey)
	if !ok {
		return withOwn(t, &sink.Fill{Cols: slices.Clone(cols), Key: t.IdentString(imageRow), KeyRow: imageRow,
			Version: uint64(a.pos.version), Seq: seq}, row), nil
	}
	if t.IsTombstone(prev) {
		return nil, &mapping.ColumnError{Column: t.Columns[cols[0]].Name, Err: sink.ErrNoImage}
	}
	// Columns the buffered row still waits for come from the same lookup.
	return fromBuffered(t, prev, prevFill, row, cols), nil
}

// truncate empties the targets of the truncated tables. Each truncation is
// recorded first: a replay after a crash skips the table's changes before
// it, which the emptied target no longer holds images for. The table's
// buffered rows, which the truncation supersedes, are dropped.
func (a *applier) truncate(ctx context.Context, m *replication.Truncate) error {
	cut := checkpoint.Truncation{Version: uint64(a.pos.version), Seq: 2 * uint64(m.LSN)}
	for _, rel := range m.Relations {
		idx, err := a.reg.lookup(rel.ID)
		if err != nil {
			return err
		}
		if a.awaited(rel.ID) || idx < 0 || slices.Contains(a.reg.specs[idx].Ignore, mapping.IgnoreTruncate) {
			continue
		}
		if prev, ok := a.reg.cuts[idx]; ok && prev.Covers(cut.Version, cut.Seq) {
			continue // a replay of a truncation older than the newest one
		}
		if a.pos.version < a.reg.horizons[idx] {
			continue // the table's copy was read after this truncation
		}
		source := a.reg.specs[idx].Source
		a.log.Warn("truncating ClickHouse table after TRUNCATE in Postgres", "table", source, "lsn", a.pos.version)
		if err := a.store.SaveTruncation(ctx, source, cut); err != nil {
			return err
		}
		a.reg.cuts[idx] = cut
		if err := a.writer.Truncate(ctx, idx); err != nil {
			return err
		}
	}
	return nil
}

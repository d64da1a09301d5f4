package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

// rowWriter buffers mapped rows per table and stores them in ClickHouse
// (*sink.Writer). Flush returns only after ClickHouse acknowledged the rows.
type rowWriter interface {
	// SetTable replaces the mapping of table (after a Relation message).
	SetTable(table int, t *mapping.Table)
	// Put buffers row under key, replacing a buffered row of the same key.
	Put(table int, key string, row []any)
	// Image returns the latest image of a key: buffered, else stored.
	Image(ctx context.Context, table int, key string, keyRow []any) ([]any, bool, error)
	// Rows returns the number of buffered rows.
	Rows() int
	Flush(ctx context.Context) error
	// Truncate empties the table's target; it does not flush.
	Truncate(ctx context.Context, table int) error
}

// positionStore saves checkpoints and progress reports (*checkpoint.Store).
// Save returns only after ClickHouse acknowledged the checkpoint.
type positionStore interface {
	Save(ctx context.Context, pos checkpoint.Position) error
	SaveProgress(ctx context.Context, oldestUnstored time.Time) error
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
	maxDelay time.Duration
	idleGap  time.Duration
	since    time.Time // when the buffer became non-empty

	unchanged []int
}

func (a *applier) Durable() pglogrepl.LSN { return a.pos.durable.LSN }

func (a *applier) Deadline() time.Time {
	if a.since.IsZero() {
		return time.Time{}
	}
	return a.since.Add(a.maxDelay)
}

func (a *applier) Handle(ctx context.Context, m replication.Message) error {
	switch m := m.(type) {
	case *replication.Begin:
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
		idx, t, err := a.reg.bind(m)
		if err != nil || idx < 0 {
			return err
		}
		a.writer.SetTable(idx, t)
	case *replication.Change:
		if !a.pos.inTxn {
			return fmt.Errorf("change of %s outside a transaction", m.Relation.QualifiedName())
		}
		if a.pos.skip {
			return nil
		}
		idx, err := a.change(ctx, m)
		if err != nil {
			return err
		}
		a.rep.change(idx, m.Op)
		if a.writer.Rows() >= a.maxRows {
			return a.flush(ctx)
		}
	case *replication.Truncate:
		if !a.pos.applying() {
			return nil
		}
		return a.truncate(ctx, m)
	case *replication.LogicalMessage:
		if !m.Transactional && a.pos.heartbeat(m.LSN) {
			return a.idleCheckpoint(ctx, time.Now())
		}
	}
	return nil
}

// Tick flushes when the oldest buffered change waited max_delay, and when
// idle checkpoints the server's WAL position so that lag reads zero and
// Postgres can recycle WAL.
func (a *applier) Tick(ctx context.Context, walEnd pglogrepl.LSN) error {
	now := time.Now()
	a.pos.keepalive(walEnd)
	if err := a.rep.observe(ctx, false, a.pos.walEnd, a.pos.durable.LSN); err != nil {
		return err
	}
	if !a.since.IsZero() && !now.Before(a.since.Add(a.maxDelay)) {
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
	pos, ok := a.pos.idleCheckpoint(now, a.writer.Rows(), a.idleGap)
	if !ok {
		return nil
	}
	if err := a.store.Save(ctx, pos); err != nil {
		return err
	}
	a.pos.idleSaved(pos, now)
	a.rep.checkpointed(pos.LSN)
	return nil
}

func (a *applier) markBuffered() {
	if a.since.IsZero() {
		a.since = time.Now()
	}
}

// flush writes the buffered rows, then checkpoints the newest complete
// transaction. A checkpoint never points inside a transaction: rows of a
// transaction still being received are written, but not checkpointed.
func (a *applier) flush(ctx context.Context) error {
	start := time.Now()
	rows := a.writer.Rows()
	if rows > 0 {
		if err := a.writer.Flush(ctx); err != nil {
			return err
		}
		a.faults.afterInsert()
	}
	if a.pos.pending {
		if err := a.store.Save(ctx, a.pos.complete); err != nil {
			return err
		}
		a.pos.checkpointed()
	}
	a.since = time.Time{}
	var open time.Time
	if a.pos.inTxn {
		// The open transaction is not stored until its commit is checkpointed.
		open = a.pos.commitTime
		if rows > 0 {
			a.markBuffered()
		}
	}
	a.rep.stored(open)
	a.rep.flushed(rows, time.Since(start), a.pos.durable.LSN)
	a.log.Debug("flushed", "rows", rows, "checkpoint", a.pos.durable.LSN, "duration", time.Since(start))
	if rows > 0 || !a.pos.inTxn {
		return a.rep.observe(ctx, true, a.pos.walEnd, a.pos.durable.LSN)
	}
	return nil
}

// change maps one change into rows of its table's buffer and returns the
// table's index (-1: a table the replicator does not copy).
func (a *applier) change(ctx context.Context, c *replication.Change) (int, error) {
	idx, err := a.reg.lookup(c.Relation.ID)
	if err != nil || idx < 0 {
		return idx, err
	}
	t := a.reg.tables[idx]
	version := a.pos.version
	n := len(t.Columns)
	fail := func(vals []mapping.Value, err error) error { return mapping.NewRowError(t, vals, version, err) }
	var tomb []any
	var oldKey string
	if c.Old != nil {
		tomb = make([]any, n+2)
		if err := t.Tombstone(c.Old, tomb); err != nil {
			return idx, fail(c.Old, err)
		}
		tomb[n], tomb[n+1] = uint64(version), uint8(1)
		oldKey = t.KeyString(tomb)
		if c.Op == replication.OpDelete {
			a.writer.Put(idx, oldKey, tomb)
			a.markBuffered()
			return idx, nil
		}
	}
	row := make([]any, n+2)
	unchanged, err := t.Row(c.New, row, a.unchanged[:0])
	a.unchanged = unchanged
	if err != nil {
		return idx, fail(c.New, err)
	}
	row[n], row[n+1] = uint64(version), uint8(0)
	key := t.KeyString(row)
	if tomb != nil && key != oldKey {
		// The update moved the row to another sorting key: delete the old key.
		a.writer.Put(idx, oldKey, tomb)
	}
	if len(unchanged) > 0 {
		if err := a.fillUnchanged(ctx, idx, key, row, unchanged); err != nil {
			return idx, fail(c.New, err)
		}
	}
	a.writer.Put(idx, key, row)
	a.markBuffered()
	return idx, nil
}

// fillUnchanged copies unchanged TOAST values from the row's latest image:
// the buffered one, else the newest stored in ClickHouse. Without one it
// fails rather than store a default.
func (a *applier) fillUnchanged(ctx context.Context, idx int, key string, row []any, cols []int) error {
	t := a.reg.tables[idx]
	for _, k := range t.Key {
		for _, u := range cols {
			if u == k {
				return &mapping.ColumnError{Column: t.Columns[k].Name, Err: errors.New("unchanged TOAST value in a sorting key column")}
			}
		}
	}
	n := len(t.Columns)
	prev, ok, err := a.writer.Image(ctx, idx, key, row)
	if err != nil {
		return err
	}
	if !ok || prev[n+1].(uint8) == 1 {
		return &mapping.ColumnError{Column: t.Columns[cols[0]].Name,
			Err: errors.New("unchanged TOAST value and no earlier image of the row in the buffer or in ClickHouse; resync the table")}
	}
	for _, u := range cols {
		row[u] = prev[u]
	}
	return nil
}

// truncate stores the buffered rows, which are older than the truncation,
// then empties the targets of the truncated tables.
func (a *applier) truncate(ctx context.Context, m *replication.Truncate) error {
	if err := a.writer.Flush(ctx); err != nil {
		return err
	}
	for _, rel := range m.Relations {
		idx, ok := a.reg.rels[rel.ID]
		if !ok || idx < 0 {
			continue
		}
		a.log.Warn("truncating ClickHouse table after TRUNCATE in Postgres", "table", a.reg.tables[idx].Source, "lsn", a.pos.version)
		if err := a.writer.Truncate(ctx, idx); err != nil {
			return err
		}
	}
	return nil
}

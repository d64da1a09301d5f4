package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// recorder is an in-memory rowWriter and positionStore that records the
// order of the calls that reach ClickHouse. It keeps every row Put (since
// its table's last truncation) and every row written, as ClickHouse holds
// them before merges, and checks at every checkpoint that each row Put
// that the checkpoint covers was written, or a newer row of its key: a
// row only buffered, or dropped and never written, fails the test. Rows
// waiting for a fill take their values from the written rows when they
// are written, as sink.Writer's do. A flush's write and checkpoint run on
// the flight's goroutine: mu guards the state.
type recorder struct {
	t        *testing.T
	mu       sync.Mutex
	calls    []string
	tables   map[int]*mapping.Table
	buffer   map[recKey]recRow
	put      map[recKey][][]any  // every row Put, per key, oldest first
	stored   map[recKey][][]any  // every row written, per key, oldest first
	saved    checkpoint.Position // newest saved checkpoint
	failNext string              // "flush" or "save": fail that call once
	gate     chan struct{}       // when set, a write waits for it (or its context's end)
}

// recKey is a buffer key of a table.
type recKey struct {
	table int
	key   string
}

// recRow is a buffered row and the columns it waits for.
type recRow struct {
	row  []any
	fill *sink.Fill
}

func newRecorder(t *testing.T, resume checkpoint.Position) *recorder {
	return &recorder{t: t, tables: map[int]*mapping.Table{}, buffer: map[recKey]recRow{}, put: map[recKey][][]any{},
		stored: map[recKey][][]any{}, saved: resume}
}

func (r *recorder) SetTable(table int, t *mapping.Table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables[table] = t
}

// meta returns the version and seq of a row of table.
func (r *recorder) meta(table int, row []any) (version, seq uint64) {
	v, _, s := r.tables[table].Meta(row)
	return v, s
}

func (r *recorder) Put(table int, key string, row []any, fill *sink.Fill) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fill != nil && fill.Place {
		r.t.Errorf("recorder: Place fills are not modelled (key %s)", key)
	}
	k := recKey{table, key}
	r.buffer[k] = recRow{row, fill}
	r.put[k] = append(r.put[k], row)
}

func (r *recorder) Latest(table int, key string) ([]any, *sink.Fill, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buffer[recKey{table, key}]
	return b.row, b.fill, ok
}

func (r *recorder) Size() (int, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	waiting := 0
	for _, b := range r.buffer {
		if b.fill != nil {
			waiting++
		}
	}
	return len(r.buffer), 0, waiting
}

// latest returns the newest row written under key of table.
func (r *recorder) latest(table int, key string) ([]any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rows := r.stored[recKey{table, key}]
	if len(rows) == 0 {
		return nil, false
	}
	newest := rows[0]
	for _, row := range rows[1:] {
		v, s := r.meta(table, row)
		if nv, ns := r.meta(table, newest); !less(v, s, nv, ns) {
			newest = row
		}
	}
	return newest, true
}

func less(v1, s1, v2, s2 uint64) bool { return v1 < v2 || v1 == v2 && s1 < s2 }

// images returns the written rows of table by identity, as the writer's
// image lookups return them.
func (r *recorder) images(table int) map[string][][]any {
	t := r.tables[table]
	images := map[string][][]any{}
	for k, rows := range r.stored {
		if k.table != table {
			continue
		}
		for _, row := range rows {
			ident := t.IdentString(row)
			images[ident] = append(images[ident], row)
		}
	}
	return images
}

func (r *recorder) Take() (int, func(context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	taken := r.buffer
	r.buffer = map[recKey]recRow{}
	gate := r.gate
	return len(taken), func(ctx context.Context) error {
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(taken) == 0 {
			return nil
		}
		if r.failNext == "flush" {
			r.failNext = ""
			r.calls = append(r.calls, "flush failed")
			return errors.New("clickhouse down")
		}
		// The rows waiting for a fill take it from the rows written by
		// earlier flushes only: one INSERT writes all the taken rows.
		images := map[int]map[string][][]any{}
		for k, b := range taken {
			if b.fill == nil {
				continue
			}
			if images[k.table] == nil {
				images[k.table] = r.images(k.table)
			}
			row := slices.Clone(b.row)
			keep, err := b.fill.Complete(r.tables[k.table], row, images[k.table])
			if err != nil {
				r.calls = append(r.calls, "flush failed")
				return err
			}
			if !keep {
				delete(taken, k)
				continue
			}
			taken[k] = recRow{row: row}
		}
		r.calls = append(r.calls, fmt.Sprintf("flush %d", len(taken)))
		for k, b := range taken {
			r.stored[k] = append(r.stored[k], b.row)
		}
		return nil
	}
}

func (r *recorder) Truncate(_ context.Context, table int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("truncate %d", table))
	for _, m := range []map[recKey][][]any{r.put, r.stored} {
		for k := range m {
			if k.table == table {
				delete(m, k)
			}
		}
	}
	for k := range r.buffer {
		if k.table == table {
			delete(r.buffer, k)
		}
	}
	return nil
}

func (r *recorder) SaveTruncation(_ context.Context, source string, tr checkpoint.Truncation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("save truncation of %s at %d/%d", source, tr.Version, tr.Seq))
	return nil
}

// Save records a checkpoint after checking that every row Put that it
// covers (of a transaction committed at or below a commit checkpoint, or
// below a position) was written, or a newer row of the same key.
func (r *recorder) Save(_ context.Context, pos checkpoint.Position) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failNext == "save" {
		r.failNext = ""
		r.calls = append(r.calls, "save failed")
		return errors.New("clickhouse down")
	}
	for k, rows := range r.put {
		for _, row := range rows {
			v, s := r.meta(k.table, row)
			if covered := pglogrepl.LSN(v) < pos.LSN || pos.Commit && pglogrepl.LSN(v) == pos.LSN; !covered {
				continue
			}
			written := false
			for _, w := range r.stored[k] {
				if wv, ws := r.meta(k.table, w); !less(wv, ws, v, s) {
					written = true
					break
				}
			}
			if !written {
				r.t.Errorf("checkpoint %s saved while row %s of table %d, version %s, is not written", pos.LSN, k.key, k.table, pglogrepl.LSN(v))
			}
		}
	}
	kind := "idle"
	if pos.Commit {
		kind = "commit"
	}
	r.calls = append(r.calls, fmt.Sprintf("save %d %s", pos.LSN, kind))
	r.saved = pos
	return nil
}

func (r *recorder) SaveProgress(context.Context, time.Time) error { return nil }

// step is one call of the stream into the applier: a message, or a tick
// with the given keepalive WAL end.
type step struct {
	msg    replication.Message
	tick   pglogrepl.LSN
	expErr bool
}

func insert(id, action string) step {
	return step{msg: &replication.Change{Op: replication.OpInsert, Relation: eventsRel, New: []mapping.Value{text(id), text(action)}}}
}

func begin(lsn pglogrepl.LSN) step { return step{msg: &replication.Begin{FinalLSN: lsn}} }

func commit(lsn pglogrepl.LSN) step { return step{msg: &replication.Commit{CommitLSN: lsn}} }

func tick(walEnd pglogrepl.LSN) step { return step{tick: walEnd} }

// run feeds the steps as the stream does and checks after each one that
// the position the stream would acknowledge (Durable) is never above the
// newest checkpoint saved in the store. At the end it waits for the flush
// under way to land.
func (r *recorder) run(a *applier, steps []step) {
	r.t.Helper()
	ctx := context.Background()
	for i, s := range steps {
		var err error
		if s.msg != nil {
			err = a.Handle(ctx, s.msg)
		} else {
			err = a.Tick(ctx, s.tick)
		}
		if (err != nil) != s.expErr {
			r.t.Fatalf("step %d (%T): error %v, want error %v", i, s.msg, err, s.expErr)
		}
		r.mu.Lock()
		saved := r.saved.LSN
		r.mu.Unlock()
		if a.Durable() > saved {
			r.t.Fatalf("step %d: Durable() = %s is above the stored checkpoint %s", i, a.Durable(), saved)
		}
	}
	if err := a.land(ctx, true); err != nil {
		r.t.Fatalf("landing the last flush: %v", err)
	}
}

// newOrderApplier returns an applier over a recorder of public.events
// (table 0, see eventsRegistry) and public.docs (table 1, see docsRel:
// id UInt64, flag UInt8, body String) that flushes every maxRows rows.
func newOrderApplier(t *testing.T, maxRows int, resume checkpoint.Position) (*applier, *recorder) {
	cfg, reg := eventsRegistry(maxRows)
	docs := config.Table{Name: "public.docs", Target: "docs", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}, "flag": {Type: "UInt8"}}}
	cfg.Tables = append(cfg.Tables, docs)
	reg = newRegistry(cfg.Tables, append(reg.targets,
		sink.Schema{Names: []string{"id", "flag", "body", "_version", "_deleted", "_seq"}, Types: []string{"UInt64", "UInt8", "String"}}),
		mapping.Caps{})
	rec := newRecorder(t, resume)
	a := newApplier(cfg, rec, rec, reg, resume, hclog.NewNullLogger(), nil)
	a.idleGap = 0
	return a, rec
}

func wantCalls(t *testing.T, rec *recorder, want ...string) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.calls, want) {
		t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(rec.calls, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestDataIsFlushedBeforeItsCheckpoint fills the buffer in the middle of a
// transaction: its rows are written, but no checkpoint may name it until
// its commit, and the next checkpoint follows the flush of its last rows.
func TestDataIsFlushedBeforeItsCheckpoint(t *testing.T) {
	a, rec := newOrderApplier(t, 2, checkpoint.Position{LSN: 100})
	rec.run(a, []step{
		begin(1000), {msg: eventsRel}, insert("1", "1"), insert("2", "1"), // buffer full: flush, no checkpoint
		insert("3", "1"), commit(1000),
		begin(2000), insert("4", "1"), // buffer full: flush, then checkpoint 1000
		insert("5", "1"), commit(2000),
	})
	wantCalls(t, rec, "flush 2", "flush 2", "save 1000 commit")
	if a.Durable() != 1000 {
		t.Errorf("Durable() = %s, want 0/3E8", a.Durable())
	}
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 2", "flush 2", "save 1000 commit", "flush 1", "save 2000 commit")
	if a.Durable() != 2000 {
		t.Errorf("Durable() = %s, want 0/7D0", a.Durable())
	}
}

// TestFailedWritesAcknowledgeNothing fails a flush, then a checkpoint: the
// durable position stays at the last saved checkpoint each time, the
// failure ends the session (every later call fails), and the next session
// writes the transaction again before its checkpoint.
func TestFailedWritesAcknowledgeNothing(t *testing.T) {
	ctx := context.Background()
	resume := checkpoint.Position{LSN: 100}
	txn := []step{begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000)}
	session := func(fail string) error {
		a, rec := newOrderApplier(t, 1<<20, resume)
		rec.calls = nil
		rec.run(a, txn)
		rec.failNext = fail
		err := a.drain(ctx)
		if fail == "" {
			if err != nil {
				t.Fatal(err)
			}
			wantCalls(t, rec, "flush 1", "save 1000 commit")
			if a.Durable() != 1000 {
				t.Errorf("Durable() = %s, want 0/3E8", a.Durable())
			}
			return nil
		}
		if err == nil {
			t.Fatalf("flush succeeded with a failing %s", fail)
		}
		if a.Durable() != 100 {
			t.Errorf("Durable() = %s after a failed %s, want 0/64", a.Durable(), fail)
		}
		if err := a.Handle(ctx, &replication.Begin{FinalLSN: 2000}); err == nil {
			t.Errorf("a change was handled after a failed %s", fail)
		}
		if err := a.Tick(ctx, 3000); err == nil {
			t.Errorf("a tick succeeded after a failed %s", fail)
		}
		if a.Durable() != 100 {
			t.Errorf("Durable() = %s after a failed %s, want 0/64", a.Durable(), fail)
		}
		if fail == "flush" {
			wantCalls(t, rec, "flush failed")
		} else {
			wantCalls(t, rec, "flush 1", "save failed")
		}
		return err
	}
	session("flush")
	session("save")
	session("")
}

// TestIdleCheckpointOnlyWhenNothingIsOpen ticks with keepalive positions
// while a transaction is open or its rows are buffered (no checkpoint) and
// when everything is stored (an idle checkpoint of the WAL end).
func TestIdleCheckpointOnlyWhenNothingIsOpen(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	rec.run(a, []step{
		tick(500), // idle: checkpoint 500
		begin(1000), {msg: eventsRel}, insert("1", "1"),
		tick(900),                            // open transaction: nothing
		commit(1000), tick(1100), tick(1200), // buffered rows: nothing
	})
	wantCalls(t, rec, "save 500 idle")
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.run(a, []step{tick(1300)})
	wantCalls(t, rec, "save 500 idle", "flush 1", "save 1000 commit", "save 1300 idle")
	// A heartbeat outside a transaction moves the idle position too.
	rec.run(a, []step{{msg: &replication.LogicalMessage{LSN: 1400}}})
	wantCalls(t, rec, "save 500 idle", "flush 1", "save 1000 commit", "save 1300 idle", "save 1400 idle")
}

// TestTruncateIsRecordedBeforeTheTargetIsEmptied truncates a table with
// rows buffered: the truncation is saved before the target is emptied, the
// rows it supersedes are dropped, and the transaction is checkpointed with
// the rows written after it.
func TestTruncateIsRecordedBeforeTheTargetIsEmptied(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	rec.run(a, []step{
		begin(1000), {msg: eventsRel}, insert("1", "1"), insert("2", "1"),
		{msg: &replication.Truncate{Relations: []*replication.Relation{eventsRel}}},
		insert("3", "1"), commit(1000),
	})
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "save truncation of public.events at 1000/0", "truncate 0", "flush 1", "save 1000 commit")
}

// TestSkippedTransactionsWriteNothing replays transactions the checkpoint
// covers: no row, no checkpoint, and Durable stays at the checkpoint.
func TestSkippedTransactionsWriteNothing(t *testing.T) {
	a, rec := newOrderApplier(t, 1, checkpoint.Position{LSN: 1000, Commit: true})
	rec.run(a, []step{
		begin(900), {msg: eventsRel}, insert("1", "1"), insert("2", "1"), commit(900),
		begin(1000), insert("3", "1"), commit(1000),
	})
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec)
	if a.Durable() != 1000 {
		t.Errorf("Durable() = %s, want 0/3E8", a.Durable())
	}
}

// TestReplayAfterTruncationSkipsWhatItEmptied replays, after a crash that
// followed a TRUNCATE, the changes before it: they are not written (the
// emptied target holds no image for them), an older TRUNCATE is not run
// again, and the truncation itself and everything after it is.
func TestReplayAfterTruncationSkipsWhatItEmptied(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	a.reg.cuts[0] = checkpoint.Truncation{Version: 1000, Seq: 2 * 50}
	insertAt := func(id string, lsn pglogrepl.LSN) step {
		return step{msg: &replication.Change{Op: replication.OpInsert, Relation: eventsRel, LSN: lsn,
			New: []mapping.Value{text(id), text("1")}}}
	}
	truncateAt := func(lsn pglogrepl.LSN) step {
		return step{msg: &replication.Truncate{Relations: []*replication.Relation{eventsRel}, LSN: lsn}}
	}
	rec.run(a, []step{
		begin(900), {msg: eventsRel}, insertAt("1", 10), truncateAt(20), insertAt("2", 30), commit(900),
		begin(1000), insertAt("3", 40), truncateAt(50), insertAt("4", 60), commit(1000),
	})
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "save truncation of public.events at 1000/100", "truncate 0", "flush 1", "save 1000 commit")
	if _, ok := rec.latest(0, idKey(4)); !ok {
		t.Errorf("id=4, written after the truncation, is not stored")
	}
}

// TestChangesBelowTheCopyHorizonWriteOnlyTombstones replays changes older
// than the snapshot a resumed copy read the table in: the copy holds every
// row alive at its snapshot, so their rows are superseded and not written,
// a TRUNCATE the copy already reflects is not run again, and only the
// tombstones of deletes and key moves are written. From the horizon on,
// changes are written as usual.
func TestChangesBelowTheCopyHorizonWriteOnlyTombstones(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	a.reg.horizons[0] = 1000
	null := mapping.Value{Kind: mapping.ValueNull}
	rec.run(a, []step{
		begin(900), {msg: eventsRel},
		insert("1", "1"),
		{msg: &replication.Change{Op: replication.OpUpdate, Relation: eventsRel,
			Old: []mapping.Value{text("2"), null}, New: []mapping.Value{text("3"), text("1")}}},
		{msg: &replication.Change{Op: replication.OpUpdate, Relation: eventsRel, New: []mapping.Value{text("5"), text("2")}}},
		{msg: &replication.Change{Op: replication.OpDelete, Relation: eventsRel, Old: []mapping.Value{text("4"), null}}},
		{msg: &replication.Truncate{Relations: []*replication.Relation{eventsRel}}},
		commit(900),
		begin(1000), insert("6", "1"), commit(1000),
	})
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 3", "save 1000 commit")
	for key, deleted := range map[string]bool{idKey(2): true, idKey(4): true, idKey(6): false} {
		row, ok := rec.latest(0, key)
		if !ok {
			t.Errorf("%s is not stored", key)
			continue
		}
		if got := row[len(row)-2].(uint8) == 1; got != deleted {
			t.Errorf("%s stored with _deleted = %v, want %v", key, got, deleted)
		}
	}
	for _, key := range []string{idKey(1), idKey(3), idKey(5)} {
		if _, ok := rec.latest(0, key); ok {
			t.Errorf("%s, a row below the horizon, is stored", key)
		}
	}
}

// TestChangesBelowAnExactCopyWriteNothing replays the same changes below
// the horizon of a copy read whole in one snapshot (a resync): it holds
// the rows alive at its snapshot and nothing else, so nothing is written,
// not even a tombstone, and a Relation older than the copy's schema is not
// reconciled with the target.
func TestChangesBelowAnExactCopyWriteNothing(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	a.reg.horizons[0], a.reg.exact[0] = 1000, true
	null := mapping.Value{Kind: mapping.ValueNull}
	// A Relation that the target cannot take: a column it lacks.
	older := &replication.Relation{ID: eventsRel.ID, Namespace: eventsRel.Namespace, Name: eventsRel.Name,
		Columns: append(slices.Clone(eventsRel.Columns), mapping.SourceColumn{Name: "gone", TypeOID: 25})}
	rec.run(a, []step{
		begin(900), {msg: older},
		{msg: &replication.Change{Op: replication.OpInsert, Relation: older, New: []mapping.Value{text("1"), text("1"), text("x")}}},
		{msg: &replication.Change{Op: replication.OpUpdate, Relation: older,
			Old: []mapping.Value{text("2"), null, null}, New: []mapping.Value{text("3"), text("1"), text("x")}}},
		{msg: &replication.Change{Op: replication.OpDelete, Relation: older, Old: []mapping.Value{text("4"), null, null}}},
		commit(900),
		begin(1000), {msg: eventsRel}, insert("6", "1"), commit(1000),
	})
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 1", "save 1000 commit")
	if _, ok := rec.latest(0, idKey(6)); !ok || len(rec.stored) != 1 {
		t.Errorf("stored %v, want only id=6", rec.stored)
	}
}

// TestSameRelationAgainFlushesNothing: a Relation message equal to the one
// the mapping came from (Postgres sends one per streamed transaction)
// leaves the buffer alone; a changed one flushes it before the next change.
func TestSameRelationAgainFlushesNothing(t *testing.T) {
	a, rec := newOrderApplier(t, 100, checkpoint.Position{LSN: 100})
	again := *eventsRel
	again.Columns = slices.Clone(eventsRel.Columns)
	rec.run(a, []step{
		begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000),
		begin(2000), {msg: &again}, insert("2", "1"), commit(2000),
	})
	wantCalls(t, rec)
	changed := *eventsRel
	changed.Columns = slices.Clone(eventsRel.Columns)
	changed.Columns[1].TypeMod = 7
	rec.run(a, []step{begin(3000), {msg: &changed}, insert("3", "1"), commit(3000)})
	wantCalls(t, rec, "flush 2", "save 2000 commit")
}

// TestChangesAreBufferedWhileAFlushIsUnderWay holds a flush's write: the
// next transaction is mapped and buffered meanwhile, nothing is
// acknowledged, no second flush starts, and when the flush lands the
// durable position is the checkpoint it saved, not the newer transaction.
func TestChangesAreBufferedWhileAFlushIsUnderWay(t *testing.T) {
	ctx := context.Background()
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	a.minInterval = 0
	gate := make(chan struct{})
	rec.gate = gate
	feed := func(s step) {
		t.Helper()
		var err error
		if s.msg != nil {
			err = a.Handle(ctx, s.msg)
		} else {
			err = a.Tick(ctx, s.tick)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []step{begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000), tick(1000)} {
		feed(s)
	}
	if a.fly == nil {
		t.Fatal("no flush under way after a tick with a complete transaction buffered")
	}
	for _, s := range []step{begin(2000), insert("2", "1"), commit(2000), tick(2000), tick(2000)} {
		feed(s)
		if a.Durable() != 100 {
			t.Fatalf("Durable() = %s while the flush is under way, want 0/64", a.Durable())
		}
	}
	if rows, _, _ := rec.Size(); rows != 1 {
		t.Errorf("%d rows buffered while the flush is under way, want 1", rows)
	}
	wantCalls(t, rec)
	close(gate)
	if err := a.land(ctx, true); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 1", "save 1000 commit")
	if a.Durable() != 1000 {
		t.Errorf("Durable() = %s after the flush landed, want 0/3E8", a.Durable())
	}
	if err := a.drain(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 1", "save 1000 commit", "flush 1", "save 2000 commit")
	if a.Durable() != 2000 {
		t.Errorf("Durable() = %s, want 0/7D0", a.Durable())
	}
}

// noChunks is a copy state with no table copies.
type noChunks struct{}

func (noChunks) LoadChunks(context.Context) (map[string][]checkpoint.Chunk, error) {
	return map[string][]checkpoint.Chunk{}, nil
}

// TestHeldCheckpointIsReleasedUnderBackToBackFlights holds the checkpoint
// for a table that a setup elsewhere no longer adds, while every change
// fills the buffer and starts a flight as soon as the previous one landed:
// the stream loop's ticks still poll the copy state and end the hold.
func TestHeldCheckpointIsReleasedUnderBackToBackFlights(t *testing.T) {
	ctx := context.Background()
	a, rec := newOrderApplier(t, 1, checkpoint.Position{LSN: 100})
	a.reg.chunks = noChunks{}
	a.hold.addedTable("public.other", time.Now()) // its first poll restarts
	a.hold.nextPoll = time.Now().Add(50 * time.Millisecond)
	a.hold.nextWarn = a.hold.nextPoll.Add(time.Hour)
	gate := make(chan struct{})
	rec.gate = gate
	stop := make(chan struct{})
	defer close(stop)
	go func() { // ClickHouse takes 3 ms per write
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			select {
			case gate <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	for _, s := range []step{begin(1000), {msg: eventsRel}} {
		if err := a.Handle(ctx, s.msg); err != nil {
			t.Fatal(err)
		}
	}
	for n, end := 0, time.Now().Add(2*time.Second); time.Now().Before(end); n++ {
		// The stream loop: a tick when the deadline passed, then a message.
		if d := a.Deadline(); !d.IsZero() && !time.Now().Before(d) {
			if err := a.Tick(ctx, 0); errors.Is(err, errRestart) {
				return
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Handle(ctx, insert(fmt.Sprint(n), "1").msg); err != nil {
			t.Fatal(err)
		}
	}
	t.Error("the held checkpoint was not released in 2 s of back-to-back flights")
}

// TestStopWhileWaitingLandsTheFlight ends the session's context while the
// applier waits for a flight: the wait fails, but the flight goes on, and
// the soft stop's drain lands it and its checkpoint. A flight that had
// already ended lands even when the context has ended.
func TestStopWhileWaitingLandsTheFlight(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	gate := make(chan struct{})
	rec.gate = gate
	rec.run(a, []step{begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000)})
	if err := a.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.land(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("land with an ended context = %v, want context.Canceled", err)
	}
	if a.fly == nil || a.failed != nil {
		t.Fatalf("the flight was dropped (failed: %v)", a.failed)
	}
	close(gate)
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 1", "save 1000 commit")
	if a.Durable() != 1000 {
		t.Errorf("Durable() = %s after the drain, want 0/3E8", a.Durable())
	}

	for range 50 {
		a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
		rec.run(a, []step{begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000)})
		if err := a.flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-a.fly.done
		if err := a.land(ctx, true); err != nil || a.Durable() != 1000 {
			t.Fatalf("an ended flight with an ended context: land = %v, Durable() = %s, want nil, 0/3E8", err, a.Durable())
		}
	}
}

// TestResyncMarkRowHoldsAtItsCommit: on a server without logical messages
// (PostgreSQL 13) a resync is marked by a row of postgres.MarkTable. Its
// insert holds the checkpoint below the mark's commit, as the message does
// at its position: the transaction before it is checkpointed, the mark's
// and later ones are not; the copy must complete above the commit LSN.
// Replayed after the copy completed above it, the mark holds nothing, and
// a mark for another slot or table is ignored.
func TestResyncMarkRowHoldsAtItsCommit(t *testing.T) {
	marks := &replication.Relation{ID: 99, Namespace: "public", Name: "replicator_marks", Columns: []mapping.SourceColumn{
		{Name: "slot", TypeOID: 25}, {Name: "source", TypeOID: 25}, {Name: "marked_at", TypeOID: 1184}}}
	mark := func(slot, table string) step {
		return step{msg: &replication.Change{Op: replication.OpInsert, Relation: marks,
			New: []mapping.Value{text(slot), text(table), text("2026-01-01 00:00:00+00")}}}
	}
	t.Run("holds", func(t *testing.T) {
		a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
		a.slot = "s1"
		rec.run(a, []step{
			begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000),
			begin(1500), {msg: marks}, mark("s2", "public.events"), mark("s1", "public.other"), commit(1500),
		})
		if a.hold.held() {
			t.Fatal("a mark for another slot or an unconfigured table holds the checkpoint")
		}
		if err := a.drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		rec.run(a, []step{
			begin(2000), mark("s1", "public.events"), commit(2000),
			begin(3000), insert("2", "1"), commit(3000),
		})
		if err := a.drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !a.hold.held() || a.hold.after[0] != 2000 {
			t.Fatalf("hold = %+v, want held until a copy above the mark's commit 0/7D0", a.hold)
		}
		wantCalls(t, rec, "flush 1", "save 1500 commit", "flush 1")
		if a.Durable() != 1500 {
			t.Errorf("Durable() = %s, want the last commit before the mark", a.Durable())
		}
	})
	t.Run("replayed after the copy", func(t *testing.T) {
		a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
		a.slot = "s1"
		a.reg.horizons[0] = 2500 // the copy's consistent point, minus one
		rec.run(a, []step{begin(2000), {msg: marks}, mark("s1", "public.events"), commit(2000)})
		if a.hold.held() {
			t.Errorf("a mark below the completed copy's horizon holds the checkpoint: %+v", a.hold)
		}
	})
}

// chunkState is a copy state that a test changes as a setup would.
type chunkState map[string][]checkpoint.Chunk

func (c chunkState) LoadChunks(context.Context) (map[string][]checkpoint.Chunk, error) {
	return maps.Clone(c), nil
}

// TestMarkOfAnAddedTableHoldsWithoutItsRelation: a table the daemon is
// not configured with is already published (FOR ALL TABLES), so its
// Relation message came long before a setup elsewhere adds it. The mark
// that setup writes into the stream before its copy holds the checkpoint
// at the last commit before it, although no new Relation message comes;
// a mark replayed once the table's copy state is gone holds nothing.
func TestMarkOfAnAddedTableHoldsWithoutItsRelation(t *testing.T) {
	ctx := context.Background()
	items := &replication.Relation{ID: 21, Namespace: "public", Name: "items", Columns: []mapping.SourceColumn{
		{Name: "id", TypeOID: 20, Identity: true}}}
	change := func(id string) step {
		return step{msg: &replication.Change{Op: replication.OpInsert, Relation: items, New: []mapping.Value{text(id)}}}
	}
	mark := func(lsn pglogrepl.LSN, slot string) step {
		return step{msg: &replication.LogicalMessage{LSN: lsn, Prefix: replication.ResyncPrefix,
			Content: []byte(replication.ResyncMessage{Slot: slot, Table: "public.items"}.Encode())}}
	}
	t.Run("holds", func(t *testing.T) {
		a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
		a.slot = "s1"
		state := chunkState{}
		a.reg.chunks = state
		rec.run(a, []step{begin(1000), {msg: eventsRel}, {msg: items}, insert("1", "1"), change("1"), commit(1000)})
		if err := a.drain(ctx); err != nil {
			t.Fatal(err)
		}
		// The setup: copy state first, then the mark, then the copy at C.
		state["public.items"] = []checkpoint.Chunk{{Source: "public.items", Target: "items"}}
		rec.run(a, []step{mark(1500, "s2"), begin(1600), change("2"), insert("2", "1"), commit(1600)})
		if err := a.drain(ctx); err != nil {
			t.Fatal(err)
		}
		if a.hold.held() {
			t.Fatal("a mark for another slot holds the checkpoint")
		}
		rec.run(a, []step{mark(1700, "s1"), begin(2000), change("3"), insert("3", "1"), commit(2000)})
		if err := a.drain(ctx); err != nil {
			t.Fatal(err)
		}
		if !a.hold.held() || !slices.Equal(a.hold.added, []string{"public.items"}) {
			t.Fatalf("hold = %+v after the mark of an added table, want held for public.items", a.hold)
		}
		wantCalls(t, rec, "flush 1", "save 1000 commit", "save 1500 idle", "flush 1", "save 1600 commit", "flush 1")
		if a.Durable() != 1600 {
			t.Errorf("Durable() = %s, want the last commit before the mark", a.Durable())
		}
		// The setup is undone: the daemon starts again from the checkpoint.
		delete(state, "public.items")
		a.hold.nextPoll = time.Time{}
		if err := a.pollHold(ctx, time.Now()); !errors.Is(err, errRestart) {
			t.Errorf("pollHold after the copy state went = %v, want errRestart", err)
		}
	})
	t.Run("replayed after the table was removed again", func(t *testing.T) {
		a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
		a.slot = "s1"
		a.reg.chunks = chunkState{}
		rec.run(a, []step{mark(500, "s1"), begin(1000), {msg: eventsRel}, insert("1", "1"), commit(1000)})
		if err := a.drain(ctx); err != nil {
			t.Fatal(err)
		}
		if a.hold.held() || a.Durable() != 1000 {
			t.Errorf("a mark without copy state: held %v, Durable() = %s; want not held, 0/3E8", a.hold.held(), a.Durable())
		}
	})
}

func docInsert(id, body string) step {
	return step{msg: &replication.Change{Op: replication.OpInsert, Relation: docsRel, New: []mapping.Value{text(id), text("0"), text(body)}}}
}

// docFlag updates the flag of a doc and leaves its TOASTed body unchanged.
func docFlag(id, flag string) step {
	return step{msg: &replication.Change{Op: replication.OpUpdate, Relation: docsRel, New: []mapping.Value{text(id), text(flag), unchanged}}}
}

// TestUnchangedValuesComeFromWrittenRows updates a doc, leaving its body
// unchanged, while the flight that writes the doc's image is up: the
// update's row waits for the image, which its own flush reads once the
// earlier one landed, and a later update of the same doc in the buffer
// waits for the same image.
func TestUnchangedValuesComeFromWrittenRows(t *testing.T) {
	ctx := context.Background()
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	gate := make(chan struct{})
	rec.gate = gate
	rec.run(a, []step{begin(1000), {msg: docsRel}, docInsert("1", "long body"), commit(1000)})
	if err := a.flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []step{begin(2000), docFlag("1", "1"), commit(2000), begin(3000), docFlag("1", "2"), commit(3000)} {
		if err := a.Handle(ctx, s.msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, waiting := rec.Size(); waiting != 1 {
		t.Errorf("%d rows wait for an image while the image's flight is up, want 1", waiting)
	}
	close(gate)
	if err := a.drain(ctx); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 1", "save 1000 commit", "flush 1", "save 3000 commit")
	row, ok := rec.latest(1, idKey(1))
	if !ok || row[1] != uint8(2) || row[2] != "long body" {
		t.Errorf("doc 1 stored as %v, want flag 2 and the body of its image", row)
	}
}

// TestTruncateEmptiesOnlyItsTable truncates events, with an event stored
// and docs buffered: the event is gone, the docs are written and
// checkpointed with the transaction.
func TestTruncateEmptiesOnlyItsTable(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	rec.run(a, []step{
		// docs' first Relation stores the event buffered before it.
		begin(1000), {msg: eventsRel}, {msg: docsRel}, insert("1", "1"), docInsert("1", "body"), docInsert("2", "body"),
		{msg: &replication.Truncate{Relations: []*replication.Relation{eventsRel}}},
		insert("2", "1"), commit(1000),
	})
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 1", "save truncation of public.events at 1000/0", "truncate 0", "flush 3", "save 1000 commit")
	for _, id := range []string{idKey(1), idKey(2)} {
		if _, ok := rec.latest(1, id); !ok {
			t.Errorf("doc %s, buffered when events was truncated, is not written", id)
		}
	}
	if _, ok := rec.latest(0, idKey(1)); ok {
		t.Error("the event stored before the truncation of events is still stored")
	}
}

// TestChangesBelowAnExactCopyDoNotDrain replays, below the horizon of an
// exact copy of events (after a resync), one transaction that changes
// events and docs in turn: the events changes write nothing and leave their
// Relation pending, and must not flush the buffer each time. The docs rows
// are flushed once, before the first events change above the horizon
// resolves the Relation.
func TestChangesBelowAnExactCopyDoNotDrain(t *testing.T) {
	a, rec := newOrderApplier(t, 1<<20, checkpoint.Position{LSN: 100})
	a.reg.horizons[0], a.reg.exact[0] = 5000, true
	steps := []step{begin(900), {msg: eventsRel}, {msg: docsRel}}
	for i := range 20 {
		steps = append(steps, docInsert(fmt.Sprint(i), "body"), insert(fmt.Sprint(i), "1"))
	}
	steps = append(steps, commit(900), begin(5000), insert("100", "1"), commit(5000))
	rec.run(a, steps)
	if err := a.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, rec, "flush 20", "save 900 commit", "flush 1", "save 5000 commit")
	if _, ok := rec.latest(0, idKey(0)); ok {
		t.Error("an events change below the exact copy's horizon was written")
	}
}

// TestEveryCheckpointCoversItsRows feeds random transactions of events
// and docs (inserts, deletes, updates that leave a doc's body unchanged),
// keepalives and heartbeats, while ClickHouse takes a while for each
// write, and relies on the recorder alone: every checkpoint must follow
// the writes of every row it covers, nothing is acknowledged before its
// checkpoint, and in the end ClickHouse holds the newest row of each key.
func TestEveryCheckpointCoversItsRows(t *testing.T) {
	for seed := range int64(20) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(uint64(seed), 1))
			a, rec := newOrderApplier(t, 1+rnd.IntN(8), checkpoint.Position{LSN: 100})
			a.minInterval = 0
			gate := make(chan struct{})
			rec.gate = gate
			stop := make(chan struct{})
			defer close(stop)
			wait := rand.New(rand.NewPCG(uint64(seed), 2))
			go func() { // each write waits up to 0.3 ms
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Duration(wait.IntN(300)) * time.Microsecond):
					}
					select {
					case gate <- struct{}{}:
					case <-stop:
						return
					}
				}
			}()
			want := map[recKey]string{} // newest action of each event, body+flag of each doc; "" deleted
			steps := []step{tick(150), {msg: eventsRel}, {msg: docsRel}}
			var docs []string
			for txn := range 60 {
				lsn := pglogrepl.LSN(1000 * (txn + 1))
				steps = append(steps, begin(lsn))
				for c := range 1 + rnd.IntN(6) {
					id := fmt.Sprint(rnd.IntN(10))
					switch n := rnd.IntN(10); {
					case n < 4:
						steps = append(steps, insert(id, fmt.Sprint(n)))
						want[recKey{0, idKeyOf(id)}] = fmt.Sprint(n)
					case n < 6:
						steps = append(steps, step{msg: &replication.Change{Op: replication.OpDelete, Relation: eventsRel,
							Old: []mapping.Value{text(id), null}}})
						want[recKey{0, idKeyOf(id)}] = ""
					case n < 8 || len(docs) == 0:
						body := fmt.Sprint("body ", uint64(lsn))
						steps = append(steps, docInsert(id, body))
						want[recKey{1, idKeyOf(id)}] = body + "/0"
						if !slices.Contains(docs, id) {
							docs = append(docs, id)
						}
					default:
						id := docs[rnd.IntN(len(docs))]
						steps = append(steps, docFlag(id, fmt.Sprint(n)))
						k := recKey{1, idKeyOf(id)}
						want[k] = strings.Split(want[k], "/")[0] + "/" + fmt.Sprint(n)
					}
					// Changes in WAL order: a later change's rows sort after.
					steps[len(steps)-1].msg.(*replication.Change).LSN = lsn - 1000 + pglogrepl.LSN(8*(c+1))
					if rnd.IntN(4) == 0 {
						steps = append(steps, tick(lsn-500)) // inside the transaction
					}
				}
				steps = append(steps, commit(lsn))
				switch rnd.IntN(3) {
				case 0:
					steps = append(steps, tick(lsn+100))
				case 1: // a heartbeat, often while the flush the tick started is up
					steps = append(steps, tick(lsn+100), step{msg: &replication.LogicalMessage{LSN: lsn + 200}})
				}
			}
			rec.run(a, steps)
			if err := a.drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			for k, w := range want {
				row, ok := rec.latest(k.table, k.key)
				var got string
				switch {
				case !ok:
					got = "missing"
				case row[len(row)-2] == uint8(1):
				case k.table == 0:
					got = fmt.Sprint(row[1])
				default:
					got = fmt.Sprintf("%v/%v", row[2], row[1])
				}
				if got != w {
					t.Errorf("table %d %s stored as %q, want %q", k.table, k.key, got, w)
				}
			}
		})
	}
}

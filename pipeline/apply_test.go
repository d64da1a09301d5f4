package pipeline

import (
	"context"
	"strings"
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

func text(s string) mapping.Value { return mapping.Value{Kind: mapping.ValueText, Data: []byte(s)} }

var null = mapping.Value{Kind: mapping.ValueNull}

func newTestApplier(t *testing.T, resume checkpoint.Position) *applier {
	t.Helper()
	cfg, reg := eventsRegistry(1 << 20)
	return newApplier(cfg, sink.NewWriter(nil, reg.tables), nil, reg, resume, hclog.NewNullLogger(), nil)
}

// eventsRegistry returns a configuration and registry of public.events (id
// UInt64, action UInt8) that flushes every maxRows rows.
func eventsRegistry(maxRows int) (config.Config, *registry) {
	tables := []config.Table{{Name: "public.events", Target: "events", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}, "action": {Type: "UInt8"}}}}
	targets := []sink.Schema{{Names: []string{"id", "action", "_version", "_deleted", "_seq"}, Types: []string{"UInt64", "UInt8"}}}
	cfg := config.Config{Tables: tables, Batch: config.Batch{MaxRows: maxRows, MaxBytes: 1 << 30, MaxDelay: time.Hour, MinInterval: time.Hour}}
	return cfg, newRegistry(tables, targets, mapping.Caps{})
}

// bufferedRows returns how many rows the applier's writer holds.
func bufferedRows(a *applier) int {
	rows, _, _ := a.writer.Size()
	return rows
}

// buffered returns the applier's sink.Writer.
func buffered(a *applier) *sink.Writer { return a.writer.(*sink.Writer) }

var eventsRel = &replication.Relation{ID: 7, Namespace: "public", Name: "events", Columns: []mapping.SourceColumn{
	{Name: "id", TypeOID: 20, Identity: true}, {Name: "action", TypeOID: 21}}}

// TestTransactionWithSeveralChangesToOneKey feeds one transaction that
// inserts, updates twice, moves and deletes keys, and checks that only the
// last image per key is buffered, all with the commit LSN as version.
func TestTransactionWithSeveralChangesToOneKey(t *testing.T) {
	a := newTestApplier(t, checkpoint.Position{LSN: 10})
	ctx := context.Background()
	const version = pglogrepl.LSN(1000)
	msgs := []replication.Message{
		&replication.Begin{FinalLSN: version},
		eventsRel,
		&replication.Change{Op: replication.OpInsert, Relation: eventsRel, New: []mapping.Value{text("1"), text("1")}},
		&replication.Change{Op: replication.OpUpdate, Relation: eventsRel, New: []mapping.Value{text("1"), text("2")}},
		&replication.Change{Op: replication.OpUpdate, Relation: eventsRel, New: []mapping.Value{text("1"), text("3")}},
		&replication.Change{Op: replication.OpInsert, Relation: eventsRel, New: []mapping.Value{text("2"), text("4")}},
		// id 2 -> 3: tombstone for 2, row for 3.
		&replication.Change{Op: replication.OpUpdate, Relation: eventsRel,
			Old: []mapping.Value{text("2"), null}, New: []mapping.Value{text("3"), text("5")}},
		&replication.Change{Op: replication.OpInsert, Relation: eventsRel, New: []mapping.Value{text("4"), null}},
		&replication.Change{Op: replication.OpDelete, Relation: eventsRel, Old: []mapping.Value{text("4"), null}},
		&replication.Commit{CommitLSN: version, EndLSN: version + 40},
	}
	for _, m := range msgs {
		if err := a.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]any{
		idKey(1): {uint64(1), uint8(3), uint64(version), uint8(0)},
		idKey(2): {uint64(2), uint8(0), uint64(version), uint8(1)},
		idKey(3): {uint64(3), uint8(5), uint64(version), uint8(0)},
		idKey(4): {uint64(4), uint8(0), uint64(version), uint8(1)},
	}
	if bufferedRows(a) != len(want) {
		t.Errorf("buffered %d rows, want %d", bufferedRows(a), len(want))
	}
	for key, w := range want {
		got, _, ok := buffered(a).Latest(0, key)
		if !ok {
			t.Errorf("%s not buffered", key)
			continue
		}
		for i := range w {
			if got[i] != w[i] {
				t.Errorf("%s = %v, want %v", key, got, w)
				break
			}
		}
	}
	if !a.pos.pending || a.pos.complete.LSN != version || !a.pos.complete.Commit {
		t.Errorf("complete position = %+v pending %v, want commit %s", a.pos.complete, a.pos.pending, version)
	}
	if a.Durable() != 10 {
		t.Errorf("durable moved to %s before any flush", a.Durable())
	}
}

// TestSkipsTransactionsAtOrBelowCheckpoint replays a transaction that the
// checkpoint covers: nothing is buffered and nothing becomes pending.
func TestSkipsTransactionsAtOrBelowCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resume checkpoint.Position
		commit pglogrepl.LSN
		skip   bool
	}{
		{"commit checkpoint, same LSN", checkpoint.Position{LSN: 500, Commit: true}, 500, true},
		{"commit checkpoint, later LSN", checkpoint.Position{LSN: 500, Commit: true}, 501, false},
		{"idle checkpoint, same LSN", checkpoint.Position{LSN: 500}, 500, false},
		{"idle checkpoint, earlier LSN", checkpoint.Position{LSN: 500}, 499, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestApplier(t, tc.resume)
			ctx := context.Background()
			for _, m := range []replication.Message{
				&replication.Begin{FinalLSN: tc.commit}, eventsRel,
				&replication.Change{Op: replication.OpInsert, Relation: eventsRel, New: []mapping.Value{text("1"), text("1")}},
				&replication.Commit{CommitLSN: tc.commit},
			} {
				if err := a.Handle(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			if skipped := bufferedRows(a) == 0 && !a.pos.pending; skipped != tc.skip {
				t.Errorf("skipped = %v, want %v", skipped, tc.skip)
			}
		})
	}
}

func TestMappingErrorNamesTableColumnKeyAndLSN(t *testing.T) {
	a := newTestApplier(t, checkpoint.Position{})
	ctx := context.Background()
	for _, m := range []replication.Message{&replication.Begin{FinalLSN: 0x16B374D848}, eventsRel} {
		if err := a.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	err := a.Handle(ctx, &replication.Change{Op: replication.OpInsert, Relation: eventsRel, New: []mapping.Value{text("42"), text("-1")}})
	if err == nil {
		t.Fatal("negative action accepted into UInt8")
	}
	for _, want := range []string{"public.events", "column action", "id=42", "16/B374D848"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestFlushDue: complete transactions are flushed once the previous flush
// started min_interval ago; rows of an open transaction wait for
// max_delay, which bounds both.
func TestFlushDue(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return now.Add(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		name      string
		since     time.Time
		pending   bool
		lastFlush time.Time
		want      time.Time
	}{
		{"nothing buffered", time.Time{}, false, ms(-50), time.Time{}},
		{"open transaction only", ms(0), false, ms(-5000), ms(1000)},
		{"complete, previous flush long ago", ms(0), true, ms(-5000), ms(-4800)},
		{"complete, previous flush just started", ms(0), true, ms(-50), ms(150)},
		{"max_delay sooner than the interval", ms(-900), true, ms(-50), ms(100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &applier{maxDelay: time.Second, minInterval: 200 * time.Millisecond, since: tc.since, lastFlush: tc.lastFlush}
			a.pos.pending = tc.pending
			if got := a.flushDue(); !got.Equal(tc.want) {
				t.Errorf("flushDue = %s, want %s", got.Sub(now), tc.want.Sub(now))
			}
		})
	}
}

package pipeline

import (
	"context"
	"errors"
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

// aeventsRel is public.events (id, author_id, note) with the default
// replica identity (id), replicated sorted by (author_id, id).
var aeventsRel = &replication.Relation{ID: 11, Namespace: "public", Name: "events", Columns: []mapping.SourceColumn{
	{Name: "id", TypeOID: 20, Identity: true}, {Name: "author_id", TypeOID: 23}, {Name: "note", TypeOID: 25}}}

func newPlacedApplier(t *testing.T) *applier {
	t.Helper()
	tables := []config.Table{{Name: "public.events", Target: "events", OrderBy: []string{"author_id", "id"}}}
	targets := []sink.Schema{{Names: []string{"id", "author_id", "note", "_version", "_deleted", "_seq"}}}
	cfg := config.Config{Tables: tables, Batch: config.Batch{MaxRows: 1 << 20, MaxBytes: 1 << 30, MaxDelay: time.Hour}}
	reg := newRegistry(tables, targets, mapping.Caps{})
	a := newApplier(cfg, sink.NewWriter(nil, reg.tables), nil, reg, checkpoint.Position{}, hclog.NewNullLogger(), nil)
	for _, m := range []replication.Message{&replication.Begin{FinalLSN: 1000}, aeventsRel} {
		if err := a.Handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func aevent(op replication.Op, lsn pglogrepl.LSN, old, new []mapping.Value) *replication.Change {
	return &replication.Change{Op: op, Relation: aeventsRel, Old: old, New: new, LSN: lsn}
}

// TestPlacedChanges covers a table sorted by a column outside the replica
// identity: a delete, and an update that keeps the identity, take the old
// place from the buffered image, or leave a Place tombstone that Flush
// completes; an update that keeps the place writes no tombstone.
func TestPlacedChanges(t *testing.T) {
	ctx := context.Background()
	insert := aevent(replication.OpInsert, 1, nil, []mapping.Value{text("7"), text("1"), text("a")})
	for _, tc := range []struct {
		name    string
		changes []*replication.Change
		rows    int                          // buffered rows
		waiting int                          // of which wait for a lookup
		latest  func([]any, *sink.Fill) bool // of id=7
	}{
		{"update that moves the row", []*replication.Change{insert,
			aevent(replication.OpUpdate, 2, nil, []mapping.Value{text("7"), text("2"), text("b")})}, 2, 0,
			func(r []any, f *sink.Fill) bool { return r[1] == int32(2) && r[4] == uint8(0) && f == nil }},
		{"update in place", []*replication.Change{insert,
			aevent(replication.OpUpdate, 2, nil, []mapping.Value{text("7"), text("1"), text("b")})}, 1, 0,
			func(r []any, f *sink.Fill) bool { return r[2] == "b" && f == nil }},
		{"delete of a buffered row", []*replication.Change{insert,
			aevent(replication.OpDelete, 2, []mapping.Value{text("7"), null, null}, nil)}, 1, 0,
			func(r []any, f *sink.Fill) bool { return r[1] == int32(1) && r[4] == uint8(1) && f == nil }},
		{"update not buffered", []*replication.Change{
			aevent(replication.OpUpdate, 0x40, nil, []mapping.Value{text("7"), text("2"), text("b")})}, 2, 1,
			func(r []any, f *sink.Fill) bool { return r[1] == int32(2) && f == nil }},
		{"delete not buffered", []*replication.Change{
			aevent(replication.OpDelete, 0x40, []mapping.Value{text("7"), null, null}, nil)}, 1, 1,
			func(r []any, f *sink.Fill) bool {
				return r[4] == uint8(1) && f != nil && f.Place && f.Moved == "" && f.Key == idKey(7) && f.Seq == 0x80 && f.Version == 1000
			}},
		{"second update takes the first one's row", []*replication.Change{
			aevent(replication.OpUpdate, 0x40, nil, []mapping.Value{text("7"), text("2"), text("b")}),
			aevent(replication.OpUpdate, 0x80, nil, []mapping.Value{text("7"), text("3"), text("c")})}, 3, 1,
			func(r []any, f *sink.Fill) bool { return r[1] == int32(3) && f == nil }},
		{"identity change", []*replication.Change{insert,
			aevent(replication.OpUpdate, 2, []mapping.Value{text("7"), null, null}, []mapping.Value{text("8"), text("1"), text("b")})}, 2, 0,
			func(r []any, f *sink.Fill) bool { return r[4] == uint8(1) && r[1] == int32(1) }},
		{"unchanged note from the buffered image", []*replication.Change{insert,
			aevent(replication.OpUpdate, 2, nil, []mapping.Value{text("7"), text("2"), unchanged})}, 2, 0,
			func(r []any, f *sink.Fill) bool { return r[2] == "a" && f == nil }},
		{"unchanged note looked up with the place", []*replication.Change{
			aevent(replication.OpUpdate, 0x40, nil, []mapping.Value{text("7"), text("2"), unchanged})}, 2, 2,
			func(r []any, f *sink.Fill) bool { return f != nil && !f.Place && f.Key == idKey(7) && f.Seq == 0x80 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newPlacedApplier(t)
			for _, c := range tc.changes {
				if err := a.Handle(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			rows, _, waiting := a.writer.Size()
			if rows != tc.rows || waiting != tc.waiting {
				t.Errorf("%d rows buffered, %d waiting; want %d, %d", rows, waiting, tc.rows, tc.waiting)
			}
			if r, f, ok := buffered(a).Latest(0, idKey(7)); !ok || !tc.latest(r, f) {
				t.Errorf("latest image of id=7: %v %+v", r, f)
			}
		})
	}
	t.Run("unchanged value in a sorting key column", func(t *testing.T) {
		a := newPlacedApplier(t)
		err := a.Handle(ctx, aevent(replication.OpUpdate, 2, nil, []mapping.Value{text("7"), unchanged, text("b")}))
		var re *mapping.RowError
		if !errors.As(err, &re) || re.Column != "author_id" {
			t.Errorf("error %v, want one for column author_id", err)
		}
	})
	t.Run("update of a row deleted in the buffer", func(t *testing.T) {
		a := newPlacedApplier(t)
		for _, c := range []*replication.Change{insert, aevent(replication.OpDelete, 2, []mapping.Value{text("7"), null, null}, nil)} {
			if err := a.Handle(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		err := a.Handle(ctx, aevent(replication.OpUpdate, 3, nil, []mapping.Value{text("7"), text("2"), text("b")}))
		if !errors.Is(err, sink.ErrNoPlace) {
			t.Errorf("error %v, want ErrNoPlace", err)
		}
	})
}

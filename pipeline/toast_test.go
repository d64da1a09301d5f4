package pipeline

import (
	"context"
	"errors"
	"reflect"
	"slices"
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

var unchanged = mapping.Value{Kind: mapping.ValueUnchanged}

// docsRel is public.docs (id, flag, body); body is TOASTed.
var docsRel = &replication.Relation{ID: 9, Namespace: "public", Name: "docs", Columns: []mapping.SourceColumn{
	{Name: "id", TypeOID: 20, Identity: true}, {Name: "flag", TypeOID: 21}, {Name: "body", TypeOID: 25}}}

func newDocsApplier(t *testing.T) *applier {
	t.Helper()
	tables := []config.Table{{Name: "public.docs", Target: "docs", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}, "flag": {Type: "UInt8"}}}}
	targets := []sink.Schema{{Names: []string{"id", "flag", "body", "_version", "_deleted", "_seq"}}}
	cfg := config.Config{Tables: tables, Batch: config.Batch{MaxRows: 1 << 20, MaxBytes: 1 << 30, MaxDelay: time.Hour}}
	reg := newRegistry(tables, targets, mapping.Caps{})
	a := newApplier(cfg, sink.NewWriter(nil, reg.tables), nil, reg, checkpoint.Position{}, hclog.NewNullLogger(), nil)
	for _, m := range []replication.Message{&replication.Begin{FinalLSN: 1000}, docsRel} {
		if err := a.Handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func docChange(op replication.Op, lsn pglogrepl.LSN, old, new []mapping.Value) *replication.Change {
	return &replication.Change{Op: op, Relation: docsRel, Old: old, New: new, LSN: lsn}
}

// TestUnchangedToastValues covers where an unchanged TOAST value comes
// from: the buffered image, the full old row, or a stored image strictly
// older than the change, looked up when the buffer is flushed.
func TestUnchangedToastValues(t *testing.T) {
	ctx := context.Background()
	t.Run("buffered image", func(t *testing.T) {
		a := newDocsApplier(t)
		for _, c := range []*replication.Change{
			docChange(replication.OpInsert, 1, nil, []mapping.Value{text("7"), text("0"), text("long body")}),
			docChange(replication.OpUpdate, 2, nil, []mapping.Value{text("7"), text("1"), unchanged}),
		} {
			if err := a.Handle(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		row, fill, _ := buffered(a).Latest(0, idKey(7))
		if row[2] != "long body" || fill != nil {
			t.Errorf("row %v fill %+v, want the buffered body and no lookup", row, fill)
		}
	})
	t.Run("stored image, strictly older than the change", func(t *testing.T) {
		a := newDocsApplier(t)
		if err := a.Handle(ctx, docChange(replication.OpUpdate, 0x40, nil, []mapping.Value{text("7"), text("1"), unchanged})); err != nil {
			t.Fatal(err)
		}
		_, fill, _ := buffered(a).Latest(0, idKey(7))
		want := sink.Fill{Cols: []int{2}, Key: idKey(7), Version: 1000, Seq: 0x80}
		if fill == nil || !slices.Equal(fill.Cols, want.Cols) || fill.Key != want.Key || fill.Version != want.Version || fill.Seq != want.Seq {
			t.Errorf("fill = %+v, want %+v", fill, want)
		}
	})
	t.Run("second change waits for the first one's lookup", func(t *testing.T) {
		a := newDocsApplier(t)
		for _, c := range []*replication.Change{
			docChange(replication.OpUpdate, 0x40, nil, []mapping.Value{text("7"), text("1"), unchanged}),
			docChange(replication.OpUpdate, 0x80, nil, []mapping.Value{text("7"), text("2"), unchanged}),
		} {
			if err := a.Handle(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		row, fill, _ := buffered(a).Latest(0, idKey(7))
		if row[1] != uint8(2) || fill == nil || fill.Seq != 0x80 || !slices.Equal(fill.Cols, []int{2}) {
			t.Errorf("row %v fill %+v, want flag 2 waiting for the image below the first change (seq 2 × 0x40)", row, fill)
		}
	})
	t.Run("key move takes the old key's image", func(t *testing.T) {
		a := newDocsApplier(t)
		for _, c := range []*replication.Change{
			docChange(replication.OpInsert, 1, nil, []mapping.Value{text("7"), text("0"), text("long body")}),
			docChange(replication.OpUpdate, 2, []mapping.Value{text("7"), null, null},
				[]mapping.Value{text("1000007"), text("0"), unchanged}),
		} {
			if err := a.Handle(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		moved, fill, _ := buffered(a).Latest(0, idKey(1000007))
		old, _, _ := buffered(a).Latest(0, idKey(7))
		if moved[2] != "long body" || fill != nil {
			t.Errorf("moved row %v fill %+v, want the old key's body", moved, fill)
		}
		if old[4] != uint8(1) {
			t.Errorf("old key %v, want a tombstone", old)
		}
	})
	t.Run("key move not buffered looks up the old key", func(t *testing.T) {
		a := newDocsApplier(t)
		err := a.Handle(ctx, docChange(replication.OpUpdate, 0x40, []mapping.Value{text("7"), null, null},
			[]mapping.Value{text("1000007"), text("0"), unchanged}))
		if err != nil {
			t.Fatal(err)
		}
		_, fill, _ := buffered(a).Latest(0, idKey(1000007))
		if fill == nil || fill.Key != idKey(7) || fill.KeyRow[0] != uint64(7) {
			t.Errorf("fill = %+v, want a lookup of id=7", fill)
		}
	})
	t.Run("changes after a key move wait for its lookup and keep where its rows are", func(t *testing.T) {
		a := newDocsApplier(t)
		for _, c := range []*replication.Change{
			docChange(replication.OpUpdate, 0x40, []mapping.Value{text("7"), null, null},
				[]mapping.Value{text("8"), text("0"), unchanged}),
			docChange(replication.OpUpdate, 0x50, nil, []mapping.Value{text("8"), text("1"), unchanged}),
			docChange(replication.OpUpdate, 0x60, []mapping.Value{text("8"), null, null},
				[]mapping.Value{text("9"), text("1"), unchanged}),
		} {
			if err := a.Handle(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		_, fill, _ := buffered(a).Latest(0, idKey(9))
		want := []sink.Span{
			{Key: idKey(8), FromVersion: 1000, FromSeq: 0x81, ToVersion: 1000, ToSeq: 0xc0},
			{Key: idKey(9), FromVersion: 1000, FromSeq: 0xc1},
		}
		if fill == nil || fill.Key != idKey(7) || fill.Seq != 0x80 || len(fill.Own) != len(want) {
			t.Fatalf("fill = %+v, want the image of id=7 below the first move, with rows at %+v", fill, want)
		}
		for i, o := range fill.Own {
			o.KeyRow = nil
			if !reflect.DeepEqual(o, want[i]) {
				t.Errorf("span %d = %+v, want %+v", i, o, want[i])
			}
		}
	})
	t.Run("full old row", func(t *testing.T) {
		a := newDocsApplier(t)
		err := a.Handle(ctx, &replication.Change{Op: replication.OpUpdate, Relation: docsRel, LSN: 0x40, OldFull: true,
			Old: []mapping.Value{text("7"), text("0"), text("old body")}, New: []mapping.Value{text("7"), text("1"), unchanged}})
		if err != nil {
			t.Fatal(err)
		}
		row, fill, _ := buffered(a).Latest(0, idKey(7))
		if row[2] != "old body" || fill != nil {
			t.Errorf("row %v fill %+v, want the old row's body", row, fill)
		}
	})
	t.Run("deleted image", func(t *testing.T) {
		a := newDocsApplier(t)
		a.Handle(ctx, docChange(replication.OpDelete, 1, []mapping.Value{text("7"), null, null}, nil))
		err := a.Handle(ctx, docChange(replication.OpUpdate, 2, nil, []mapping.Value{text("7"), text("1"), unchanged}))
		var re *mapping.RowError
		if !errors.As(err, &re) || re.Column != "body" || re.Key != "id=7" || !errors.Is(err, sink.ErrNoImage) {
			t.Errorf("error = %v, want a row error for column body of id=7", err)
		}
	})
}

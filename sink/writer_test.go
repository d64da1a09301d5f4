package sink

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/replicator/replicator/mapping"
)

// TestImageFor checks the image rule: the newest stored row strictly
// older than the change by (_version, _seq), never the change's own row
// nor one a replay of later changes wrote; and, when a merge left only
// rows at or after the change (a replay), the oldest of those.
func TestImageFor(t *testing.T) {
	tbl := eventsTable(t)
	row := func(body string, version uint64, deleted uint8, seq uint64) []any {
		return []any{uint64(7), body, version, deleted, seq}
	}
	stored := [][]any{
		row("copied", 99, 0, 0),
		row("first", 100, 0, 5),
		row("second chunk", 200, 0, 10),
		row("same transaction, later", 200, 0, 30),
		row("later delete", 300, 1, 4),
	}
	merged := [][]any{row("own row of the first attempt", 200, 0, 11), row("later delete", 300, 1, 4)}
	for _, tc := range []struct {
		name         string
		rows         [][]any
		version, seq uint64
		want         string // "" for none
		later        bool
	}{
		{"after the copy", stored, 100, 1, "copied", false},
		{"own row is not older", stored, 100, 5, "copied", false},
		{"equal version, lower seq wins the tie", stored, 200, 30, "second chunk", false},
		{"equal version, between", stored, 200, 20, "second chunk", false},
		{"equal version, first chunk", stored, 200, 10, "first", false},
		{"replay skips the later delete", stored, 250, 1, "same transaction, later", false},
		{"after the delete", stored, 301, 0, "later delete", false},
		{"nothing stored", nil, 100, 0, "", false},
		{"merged: the own row", merged, 200, 10, "own row of the first attempt", true},
		{"merged: only a later delete", merged[1:], 200, 10, "later delete", true},
		{"merged into the own tombstone, an older tombstone at another place", [][]any{row("old place", 150, 1, 3), row("own tombstone", 200, 1, 10)},
			200, 10, "own tombstone", true},
		{"an older tombstone and nothing after", [][]any{row("old place", 150, 1, 3)}, 200, 10, "old place", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, later := imageFor(tbl, tc.rows, tc.version, tc.seq)
			switch {
			case got == nil && tc.want != "":
				t.Errorf("imageFor(%d, %d) = none, want %q", tc.version, tc.seq, tc.want)
			case got != nil && (got[1] != tc.want || later != tc.later):
				t.Errorf("imageFor(%d, %d) = %v later %v, want %q later %v", tc.version, tc.seq, got, later, tc.want, tc.later)
			}
		})
	}
}

func TestRowBytesCountsStrings(t *testing.T) {
	small := rowBytes([]any{uint64(1), "x", uint64(2), uint8(0), uint64(0)})
	large := rowBytes([]any{uint64(1), string(make([]byte, 100_000)), uint64(2), uint8(0), uint64(0)})
	if large-small != 100_000-1 {
		t.Errorf("rowBytes grows by %d for a 100 kB string, want %d", large-small, 100_000-1)
	}
}

// TestPlace checks how Flush completes the tombstone of a delete, or of an
// update that keeps the identity, of a table sorted by (author_id, id):
// from the image before the change, dropped when the row did not move,
// when a later buffered row is at the old place, or on a replay; an error
// when no image exists, unless the change is below the copy horizon.
func TestPlace(t *testing.T) {
	tbl, row := placedEvents(t)
	for _, tc := range []struct {
		name     string
		image    []any
		later    bool
		moved    string
		buffered string // a buffered row's place
		lenient  bool
		want     uint64 // the tombstone's author_id; 0: dropped
		err      bool
	}{
		{"delete", row(3, 90, 0, 1), false, "", "", false, 3, false},
		{"update that moved the row", row(3, 90, 0, 1), false, idKey(4) + idKey(7), "", false, 3, false},
		{"update in place", row(3, 90, 0, 1), false, idKey(3) + idKey(7), "", false, 0, false},
		{"a later change's row is buffered there", row(3, 90, 0, 1), false, "", idKey(3) + idKey(7), false, 0, false},
		{"replay", row(3, 100, 1, 200), true, "", "", false, 0, false},
		{"no image", nil, false, "", "", false, 0, true},
		{"deleted image", row(3, 90, 1, 1), false, "", "", false, 0, true},
		{"no image below the horizon", nil, false, "", "", true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tomb := []any{uint64(7), uint64(0), "", uint64(100), uint8(1), uint64(200)}
			b := &tableBuffer{table: tbl, index: map[string]int{PendingKey(idKey(7), 200): 0}, rows: [][]any{tomb},
				fills: []*Fill{{Cols: tbl.PlacedColumns(), Key: idKey(7), KeyRow: tomb, Version: 100, Seq: 200, Place: true, Moved: tc.moved, Lenient: tc.lenient}}}
			if tc.buffered != "" {
				b.index[tc.buffered] = 1
				b.rows, b.fills = append(b.rows, row(3, 100, 0, 301)), append(b.fills, nil)
			}
			err := b.place(0, tc.image, tc.later)
			if tc.err {
				if !errors.Is(err, ErrNoPlace) {
					t.Errorf("error %v, want ErrNoPlace", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch got := b.rows[0]; {
			case tc.want == 0 && got != nil:
				t.Errorf("tombstone %v kept, want it dropped", got)
			case tc.want != 0 && (got == nil || got[1] != tc.want):
				t.Errorf("tombstone %v, want author_id %d", got, tc.want)
			}
		})
	}
}

// TestValuesFor checks where a row with unchanged TOAST values takes them
// from: the newest older row of the image's key; on a replay, a row its
// first attempt stored at or after the change, even when an older row
// survived a partial merge or a merge folded the image into the change's
// tombstone; never its own tombstone, nor a row another source row later
// stored at a key the row moved away from.
func TestValuesFor(t *testing.T) {
	tbl := eventsTable(t)
	row := func(id uint64, body string, version uint64, deleted uint8, seq uint64) []any {
		return []any{id, body, version, deleted, seq}
	}
	span := func(id, version, seq uint64) Span {
		return Span{Key: idKey(id), KeyRow: []any{id}, FromVersion: version, FromSeq: seq}
	}
	closed := func(s Span, version, seq uint64) Span {
		s.ToVersion, s.ToSeq = version, seq
		return s
	}
	// The change at (200, 10) updates id 7 (inPlace) or moves id 7 to id 8
	// (moved); a later change at (250, 20) moves id 8 on to id 9, and its
	// row waits for the first change's image (movedTwice).
	inPlace := []Span{span(7, 200, 11)}
	moved := []Span{span(8, 200, 11)}
	movedTwice := []Span{closed(span(8, 200, 11), 250, 20), span(9, 250, 21)}
	for _, tc := range []struct {
		name  string
		own   []Span
		rows  [][]any
		want  string // "" for none
		later bool
	}{
		{"the newest older row", inPlace, [][]any{row(7, "copied", 99, 0, 0), row(7, "first", 150, 0, 5)}, "first", false},
		{"a partial merge left a stale older row", inPlace, [][]any{row(7, "stale", 99, 0, 0), row(7, "own row", 200, 0, 11)}, "own row", true},
		{"a later change's tombstone", inPlace, [][]any{row(7, "stale", 99, 0, 0), row(7, "", 300, 1, 4)}, "", true},
		{"nothing", inPlace, nil, "", false},
		{"moved: the old key's row", moved, [][]any{row(7, "copied", 99, 0, 0), row(7, "", 200, 1, 10)}, "copied", false},
		{"moved: own tombstone and own row", moved, [][]any{row(7, "", 200, 1, 10), row(8, "own row", 200, 0, 11)}, "own row", true},
		{"moved: own tombstone alone", moved, [][]any{row(7, "", 150, 1, 3), row(7, "", 200, 1, 10)}, "", false},
		{"moved: own row merged into a later change's row", moved,
			[][]any{row(7, "", 200, 1, 10), row(8, "later update", 220, 0, 7)}, "later update", true},
		{"moved: a later delete of the new key", moved,
			[][]any{row(7, "stale", 99, 0, 0), row(7, "", 200, 1, 10), row(8, "", 220, 1, 6)}, "", true},
		{"moved: an older row of another source row at the new key", moved,
			[][]any{row(7, "copied", 99, 0, 0), row(8, "other", 120, 0, 3), row(8, "", 130, 1, 3)}, "copied", false},
		{"moved: another source row at the old key later", moved,
			[][]any{row(7, "", 200, 1, 10), row(7, "inserted later", 300, 0, 9)}, "", false},
		{"moved twice: the last key's row", movedTwice,
			[][]any{row(7, "", 200, 1, 10), row(8, "", 250, 1, 20), row(9, "own row", 250, 0, 21)}, "own row", true},
		{"moved twice: only the first move stored", movedTwice,
			[][]any{row(7, "", 200, 1, 10), row(8, "first move", 200, 0, 11)}, "first move", true},
		{"moved twice: another source row at the middle key later", movedTwice,
			[][]any{row(7, "", 200, 1, 10), row(8, "", 250, 1, 20), row(8, "inserted later", 300, 0, 5)}, "", false},
		{"moved twice: another source row at the last key before", movedTwice,
			[][]any{row(7, "copied", 99, 0, 0), row(7, "", 200, 1, 10), row(8, "first move", 200, 0, 11), row(9, "", 230, 1, 4)}, "first move", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			images := map[string][][]any{}
			for _, r := range tc.rows {
				k := tbl.IdentString(r)
				images[k] = append(images[k], r)
			}
			f := &Fill{Cols: []int{1}, Key: idKey(7), KeyRow: []any{uint64(7)}, Version: 200, Seq: 10, Own: tc.own}
			got, later := valuesFor(tbl, f, images)
			switch {
			case tc.want == "" && !tc.later && got != nil && !tbl.IsTombstone(got):
				t.Errorf("valuesFor = %v, want no image", got)
			case tc.want == "" && tc.later && (got == nil || !tbl.IsTombstone(got) || !later):
				t.Errorf("valuesFor = %v later %v, want a later tombstone", got, later)
			case tc.want != "" && (got == nil || got[1] != tc.want || later != tc.later):
				t.Errorf("valuesFor = %v later %v, want %q later %v", got, later, tc.want, tc.later)
			}
		})
	}
}

// placedEvents returns events sorted by (author_id, id), and a maker of
// its row id=7 with an author, version, deleted flag and _seq.
func placedEvents(t *testing.T) (*mapping.Table, func(author, version uint64, deleted uint8, seq uint64) []any) {
	t.Helper()
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"author_id", "id"},
		Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}, "author_id": {Type: "UInt64"}}},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "author_id", TypeOID: 20}, {Name: "note", TypeOID: 25}}, mapping.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	return tbl, func(author, version uint64, deleted uint8, seq uint64) []any {
		return []any{uint64(7), author, "", version, deleted, seq}
	}
}

// TestSuperseded checks which rows a replay drops: those at the place of
// a stored row of the same version and a higher _seq (a later change of
// their transaction, which a first attempt stored), and no others.
func TestSuperseded(t *testing.T) {
	tbl, row := placedEvents(t)
	for _, tc := range []struct {
		name   string
		row    []any
		stored [][]any
		want   bool
	}{
		{"nothing stored", row(1, 200, 1, 10), nil, false},
		{"a later change of the transaction at the place", row(1, 200, 1, 10), [][]any{row(1, 100, 0, 3), row(1, 200, 0, 21)}, true},
		{"the row itself", row(1, 200, 0, 21), [][]any{row(1, 200, 0, 21)}, false},
		{"an earlier change of the transaction", row(1, 200, 0, 21), [][]any{row(1, 200, 1, 10)}, false},
		{"a later change at another place", row(1, 200, 1, 10), [][]any{row(2, 200, 0, 21)}, false},
		{"a later transaction", row(1, 200, 1, 10), [][]any{row(1, 300, 0, 1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Superseded(tbl, tc.row, tc.stored); got != tc.want {
				t.Errorf("Superseded = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestImageColumnsJSONAsText: an earlier image's JSON column is read as
// its text, the Go value a streamed row holds (a block of a JSON column is
// text or objects, not both); a Map as itself.
func TestImageColumnsJSONAsText(t *testing.T) {
	caps := mapping.Caps{DateTime64: true, Bool: true, Date32: true, Map: true, JSON: true}
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.d", Target: "d", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"h": {Type: "Map(String, String)"}, "j": {Type: "JSON"}}},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "h", TypeOID: 16400, Hstore: true},
			{Name: "j", TypeOID: 3802}, {Name: "s", TypeOID: 3802}}, caps)
	if err != nil {
		t.Fatal(err)
	}
	cols, at := imageColumns(tbl, []bool{true, true, true, true})
	want := []string{"`id`", "`h`", "toString(`j`)", "`s`", "`_version`", "`_deleted`", "`_seq`"}
	if !slices.Equal(cols, want) || !slices.Equal(at, []int{0, 1, 2, 3, 4, 5, 6}) {
		t.Errorf("imageColumns = %v %v, want %v", cols, at, want)
	}
	cols, _ = imageColumns(tbl, []bool{true, false, true, false})
	if !slices.Equal(cols, []string{"`id`", "toString(`j`)", "`_version`", "`_deleted`", "`_seq`"}) {
		t.Errorf("imageColumns of some = %v", cols)
	}
	small := rowBytes([]any{map[string]string{"a": "b"}})
	large := rowBytes([]any{map[string]string{"a": string(make([]byte, 10_000))}})
	if large-small < 9_000 {
		t.Errorf("rowBytes of a Map does not count its values: %d, %d", small, large)
	}
}

// TestDriverTakesMapJSON: clickhouse-go's columns of the opt-in types take
// the values the mapping makes, a copy's block column by column and a
// streamed row value by value (a JSON column as text throughout).
func TestDriverTakesMapJSON(t *testing.T) {
	caps := mapping.Caps{DateTime64: true, Bool: true, Date32: true, Map: true, JSON: true}
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.d", Target: "d", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"h": {Type: "Map(String, String)"}, "hn": {Type: "Map(String, Nullable(String))"},
			"j": {Type: "JSON"}}},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "h", TypeOID: 16400, Hstore: true},
			{Name: "hn", TypeOID: 16400, Hstore: true}, {Name: "j", TypeOID: 3802}}, caps)
	if err != nil {
		t.Fatal(err)
	}
	text := func(s string) mapping.Value { return mapping.Value{Kind: mapping.ValueText, Data: []byte(s)} }
	null := mapping.Value{Kind: mapping.ValueNull}
	rows := [][]mapping.Value{
		{text("1"), text(`"a"=>"1"`), text(`"a"=>"1", "b"=>NULL`), text(`{"x": [1, 2]}`)},
		{text("2"), null, null, null},
	}
	b := tbl.NewBlock()
	for _, r := range rows {
		fields := [][]byte{binary.BigEndian.AppendUint64(nil, 1)}
		for _, v := range r[1:] {
			fields = append(fields, v.Data)
		}
		if err := b.AppendBinary(fields); err != nil {
			t.Fatal(err)
		}
	}
	block := b.Columns(1, 0)
	for i, c := range tbl.Columns[1:] {
		col, err := column.Type(c.Type.String()).Column(c.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := col.Append(block[i+1]); err != nil || col.Rows() != 2 {
			t.Errorf("%s: block column %T: %v, %d rows", c.Type, block[i+1], err, col.Rows())
		}
		streamed, _ := column.Type(c.Type.String()).Column(c.Name, nil)
		for _, r := range rows {
			row := make([]any, len(tbl.Columns)+len(mapping.MetaColumns))
			if _, err := tbl.Row(r, row, nil); err != nil {
				t.Fatal(err)
			}
			if err := streamed.AppendRow(row[i+1]); err != nil {
				t.Errorf("%s: streamed value %T: %v", c.Type, row[i+1], err)
			}
		}
	}
}

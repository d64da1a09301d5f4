package postgres

import (
	"reflect"
	"testing"
)

func TestDiffStorage(t *testing.T) {
	col := func(name string, num int16, typ uint32) StoredColumn {
		return StoredColumn{Name: name, Num: num, Type: typ, TypeMod: -1}
	}
	// items (id bigint, qty smallint, note varchar(20)), one file.
	before := Storage{Columns: []StoredColumn{col("id", 1, 20), col("qty", 2, 21), {Name: "note", Num: 3, Type: 1043, TypeMod: 24}},
		Files: map[uint32]uint32{7: 100}}
	generated := before
	generated.Columns = append(before.Columns[:3:3], StoredColumn{Name: "g", Num: 4, Type: 20, TypeMod: -1, Generated: true})
	tests := []struct {
		name string
		now  Storage
		want StorageDiff
	}{
		{name: "unchanged", now: before},

		{name: "dropped and added again",
			now: Storage{Columns: []StoredColumn{col("id", 1, 20), col("qty", 2, 21), {Name: "note", Num: 4, Type: 1043, TypeMod: 24}},
				Dropped: []int16{3}, Files: map[uint32]uint32{7: 100}},
			want: StorageDiff{Moved: []string{"note"}, Other: true}},
		{name: "widened with a rewrite",
			now: Storage{Columns: []StoredColumn{col("id", 1, 20), col("qty", 2, 23), before.Columns[2]},
				Files: map[uint32]uint32{7: 101}},
			want: StorageDiff{Retyped: []string{"qty"}, Rewritten: []uint32{7}, Other: true}},
		{name: "binary coercible",
			now: Storage{Columns: []StoredColumn{col("id", 1, 20), col("qty", 2, 21), col("note", 3, 25)},
				Files: map[uint32]uint32{7: 100}},
			want: StorageDiff{Retyped: []string{"note"}}},
		{name: "VACUUM FULL", now: Storage{Columns: before.Columns, Files: map[uint32]uint32{7: 102}},
			want: StorageDiff{Rewritten: []uint32{7}, Other: true}},
		// ADD COLUMN tmp; DROP COLUMN tmp: nothing in doubt.
		{name: "added and dropped since", now: Storage{Columns: before.Columns, Dropped: []int16{4}, Files: before.Files},
			want: StorageDiff{Other: true}},
		// ADD COLUMN c; DROP COLUMN c; ADD COLUMN c, unseen in between:
		// rows written with the first c would show under the second.
		{name: "added after a column added and dropped since",
			now:  Storage{Columns: append(before.Columns[:3:3], col("c", 5, 23)), Dropped: []int16{4}, Files: before.Files},
			want: StorageDiff{Reused: []string{"c"}, Other: true}},
		{name: "added", now: Storage{Columns: append(before.Columns[:3:3], col("c", 4, 23)), Files: before.Files},
			want: StorageDiff{Other: true}},
		// A partition created or attached since is no rewrite, but an
		// attached one may bring rows the stream never carried.
		{name: "partition added", now: Storage{Columns: before.Columns, Files: map[uint32]uint32{7: 100, 8: 200}},
			want: StorageDiff{Other: true, Joined: []uint32{8}}},
		// ALTER COLUMN g DROP EXPRESSION: g holds its values as any
		// column, and a stream that left it out sends it now.
		{name: "generated column made plain",
			now:  Storage{Columns: append(before.Columns[:3:3], col("g", 4, 20)), Files: before.Files},
			want: StorageDiff{Stored: []string{"g"}}},
		{name: "partition gone", now: Storage{Columns: before.Columns, Files: map[uint32]uint32{}},
			want: StorageDiff{Other: true, Left: []uint32{7}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			was := before
			if tc.name == "generated column made plain" {
				was = generated
			}
			got := DiffStorage(was, tc.now)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DiffStorage = %+v, want %+v", got, tc.want)
			}
			if got.Changed() != (tc.name != "unchanged") {
				t.Errorf("Changed() = %v", got.Changed())
			}
		})
	}
}

func TestDiffStorageLabels(t *testing.T) {
	// m mood ('sad' 16390, 'ok' 16392).
	before := Storage{Columns: []StoredColumn{{Name: "id", Num: 1, Type: 20}, {Name: "m", Num: 2, Type: 16388}},
		Files: map[uint32]uint32{7: 100}}
	before = withLabels(before, "m", map[uint32]string{16390: "sad", 16392: "ok"})
	for _, tc := range []struct {
		name   string
		labels map[uint32]string
		want   StorageDiff
	}{
		{name: "unchanged", labels: map[uint32]string{16390: "sad", 16392: "ok"}},
		// RENAME VALUE 'ok' TO 'fine', then ADD VALUE 'ok' (a new OID):
		// only the OIDs tell.
		{name: "renamed and its name added back", labels: map[uint32]string{16390: "sad", 16392: "fine", 16400: "ok"},
			want: StorageDiff{Relabeled: []string{"m"}}},
		{name: "added", labels: map[uint32]string{16390: "sad", 16392: "ok", 16400: "meh"}, want: StorageDiff{Other: true}},
		// A record of an earlier version has no labels: it is renewed.
		{name: "recorded without labels", labels: nil, want: StorageDiff{Other: true}},
	} {
		now := withLabels(before, "m", tc.labels)
		rec := before
		if tc.labels == nil {
			rec, now = withLabels(before, "m", nil), before
		}
		if got := DiffStorage(rec, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: DiffStorage = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// withLabels returns s with the enum labels of column name.
func withLabels(s Storage, name string, labels map[uint32]string) Storage {
	s.Columns = append([]StoredColumn(nil), s.Columns...)
	for i := range s.Columns {
		if s.Columns[i].Name == name {
			s.Columns[i].Labels = labels
		}
	}
	return s
}

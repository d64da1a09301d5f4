package sink

import "testing"

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

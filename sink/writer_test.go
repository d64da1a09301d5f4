package sink

import "testing"

// TestNewestBelow checks the image rule: the newest stored row strictly
// older than the change by (_version, _seq), never the change's own row
// nor one a replay of later changes wrote.
func TestNewestBelow(t *testing.T) {
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
	for _, tc := range []struct {
		name         string
		version, seq uint64
		want         string // "" for none
	}{
		{"before everything", 99, 0, ""},
		{"after the copy", 100, 1, "copied"},
		{"own row is not older", 100, 5, "copied"},
		{"equal version, lower seq wins the tie", 200, 30, "second chunk"},
		{"equal version, between", 200, 20, "second chunk"},
		{"equal version, first chunk", 200, 10, "first"},
		{"replay skips the later delete", 250, 1, "same transaction, later"},
		{"after the delete", 301, 0, "later delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := newestBelow(tbl, stored, tc.version, tc.seq)
			switch {
			case got == nil && tc.want != "":
				t.Errorf("newestBelow(%d, %d) = none, want %q", tc.version, tc.seq, tc.want)
			case got != nil && got[1] != tc.want:
				t.Errorf("newestBelow(%d, %d) = %v, want %q", tc.version, tc.seq, got, tc.want)
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

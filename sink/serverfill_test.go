package sink

import (
	"testing"

	"github.com/replicator/replicator/ddl"
)

// TestServerFillStatements shows the statements of a fill on the server:
// the newest stored row per identity with its tombstone flag, and the
// INSERT that takes the filled column from exactly that row.
func TestServerFillStatements(t *testing.T) {
	tbl := eventsTable(t) // id (identity), note
	s := newServerFill(ddl.Database{Name: "db"}, tbl, []int{1})
	if want := []int{0, 2, 3, 4}; len(s.ext) != len(want) || s.ext[0] != 0 || s.ext[1] != 2 {
		t.Errorf("external columns %v, want %v (the identity and the meta columns)", s.ext, want)
	}
	wantNewest := "SELECT `id`, argMax(`_deleted`, tuple(`_version`, `_seq`)), argMax(`_version`, tuple(`_version`, `_seq`)), " +
		"argMax(`_seq`, tuple(`_version`, `_seq`)) FROM `db`.`events` WHERE (`id`) IN (SELECT `id` FROM _replicator_rows) GROUP BY `id`"
	if s.newest != wantNewest {
		t.Errorf("newest =\n%s\nwant\n%s", s.newest, wantNewest)
	}
	wantInsert := "INSERT INTO `db`.`events` (`id`, `note`, `_version`, `_deleted`, `_seq`) SELECT `id`, `note`, `_version`, `_deleted`, `_seq` " +
		"FROM _replicator_rows ANY INNER JOIN (SELECT `id`, `note` FROM `db`.`events` WHERE (`id`, `_version`, `_seq`) IN " +
		"(SELECT k0, v, s FROM _replicator_newest)) USING `id`"
	if s.insert != wantInsert {
		t.Errorf("insert =\n%s\nwant\n%s", s.insert, wantInsert)
	}
}

// TestOwnImage: only a row that waits for the image of its own identity,
// held since its change, is filled on the server.
func TestOwnImage(t *testing.T) {
	own := Span{Key: "k", FromVersion: 10, FromSeq: 3}
	for _, tc := range []struct {
		name string
		f    Fill
		want bool
	}{
		{"own identity", Fill{Key: "k", Own: []Span{own}}, true},
		{"a key move takes the old key's image", Fill{Key: "old", Own: []Span{own}}, false},
		{"moved within the buffer", Fill{Key: "k", Own: []Span{{Key: "k", ToVersion: 11, ToSeq: 4}, {Key: "k2"}}}, false},
		{"a Place tombstone", Fill{Key: "k", Place: true}, false},
		{"no span", Fill{Key: "k"}, false},
	} {
		if got := ownImage(&tc.f); got != tc.want {
			t.Errorf("%s: ownImage = %v, want %v", tc.name, got, tc.want)
		}
	}
}

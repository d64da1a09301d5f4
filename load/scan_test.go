package load

import (
	"fmt"
	"strings"
	"testing"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/mapping"
)

func TestScans(t *testing.T) {
	events, docs := &mapping.Table{Source: "public.events"}, &mapping.Table{Source: "public.docs"}
	whole := func(tb *mapping.Table, rel string, first, end uint32) job {
		return job{table: tb, chunk: checkpoint.Chunk{Source: tb.Source, Relation: rel, FirstPage: first, EndPage: end}}
	}
	since := func(j job) job {
		j.since = &xidWindow{Since: 10, Until: 20}
		return j
	}
	name := func(j job) string {
		s := fmt.Sprintf("%s[%d,%d)", j.chunk.Relation, j.chunk.FirstPage, j.chunk.EndPage)
		if j.since != nil {
			s += "~"
		}
		return s
	}
	render := func(rest []job, runs [][]job) string {
		var parts []string
		for _, run := range runs {
			var rs []string
			for _, j := range run {
				rs = append(rs, name(j))
			}
			parts = append(parts, "scan "+strings.Join(rs, " "))
		}
		for _, j := range rest {
			parts = append(parts, "chunk "+name(j))
		}
		return strings.Join(parts, "; ")
	}
	tests := []struct {
		name string
		jobs []job
		want string
	}{
		{"a relation whole", []job{whole(events, "e", 0, 10), whole(events, "e", 10, 20), whole(events, "e", 20, 0)},
			"scan e[0,10) e[10,20) e[20,0)"},
		{"planned out of order", []job{whole(events, "e", 20, 0), whole(events, "e", 0, 10), whole(events, "e", 10, 20)},
			"scan e[0,10) e[10,20) e[20,0)"},
		{"one chunk stays a chunk", []job{whole(events, "e", 0, 0), whole(docs, "d", 0, 0)}, "chunk e[0,0); chunk d[0,0)"},
		{"the tail a stopped copy left", []job{whole(events, "e", 10, 20), whole(events, "e", 20, 0)}, "scan e[10,20) e[20,0)"},
		{"a gap splits the run", []job{whole(events, "e", 0, 10), whole(events, "e", 10, 20), whole(events, "e", 30, 40),
			whole(events, "e", 40, 0)}, "scan e[0,10) e[10,20); scan e[30,40) e[40,0)"},
		{"rows changed since a copy are read by chunk", []job{whole(events, "e", 0, 10), since(whole(events, "e", 10, 20)),
			whole(events, "e", 20, 30), whole(events, "e", 30, 0)}, "scan e[20,30) e[30,0); chunk e[0,10); chunk e[10,20)~"},
		{"relations apart", []job{whole(events, "p1", 0, 10), whole(events, "p2", 0, 10), whole(events, "p1", 10, 0),
			whole(events, "p2", 10, 0)}, "scan p1[0,10) p1[10,0); scan p2[0,10) p2[10,0)"},
		{"same relation name, another source", []job{whole(events, "x", 0, 10), whole(docs, "x", 10, 0)},
			"chunk x[0,10); chunk x[10,0)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := render(scans(tc.jobs)); got != tc.want {
				t.Errorf("scans =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestScanQuery(t *testing.T) {
	tb := &mapping.Table{Source: "public.e", Columns: []mapping.Column{{Name: "id", Source: "id", Type: mapping.Type{Kind: mapping.KindInt64}, SourceOID: 20}}}
	run := func(first, end uint32) []job {
		return []job{{table: tb, chunk: checkpoint.Chunk{Relation: "public.e", FirstPage: first, EndPage: 10}},
			{table: tb, chunk: checkpoint.Chunk{Relation: "public.e", FirstPage: 10, EndPage: end}}}
	}
	for _, tc := range []struct {
		jobs []job
		want string
	}{
		{run(0, 0), `SELECT "id", ctid FROM ONLY "public"."e"`},
		{run(5, 0), `SELECT "id", ctid FROM ONLY "public"."e" WHERE ctid >= '(5,0)'::tid`},
		{run(5, 20), `SELECT "id", ctid FROM ONLY "public"."e" WHERE ctid >= '(5,0)'::tid AND ctid < '(20,0)'::tid`},
	} {
		if got := scanQuery(tc.jobs); got != tc.want {
			t.Errorf("scanQuery = %s, want %s", got, tc.want)
		}
	}
}

func TestCtidPage(t *testing.T) {
	if p, err := ctidPage([]byte{0, 1, 0, 2, 0, 7}); err != nil || p != 65538 {
		t.Errorf("ctidPage = %d, %v; want 65538", p, err)
	}
	if _, err := ctidPage([]byte{0, 1}); err == nil {
		t.Error("a short ctid gave no error")
	}
}

// TestScanStateSettle: a chunk is complete once it is read and every block
// of it written, in either order, and only once.
func TestScanStateSettle(t *testing.T) {
	s := &scanState{pending: []int{2, 0}, read: make([]bool, 2), rows: make([]uint64, 2), saved: make([]bool, 2)}
	if ok, _ := s.settle(0, true, false, 5); ok {
		t.Fatal("complete with a block pending")
	}
	if ok, _ := s.settle(0, false, true, 0); ok {
		t.Fatal("complete with a block pending after the read")
	}
	if ok, rows := s.settle(0, true, false, 7); !ok || rows != 12 {
		t.Fatalf("settle = %v, %d rows; want complete with 12", ok, rows)
	}
	if ok, _ := s.settle(0, false, true, 0); ok {
		t.Fatal("completed twice")
	}
	if ok, rows := s.settle(1, false, true, 0); !ok || rows != 0 {
		t.Fatalf("an empty chunk: settle = %v, %d; want complete with 0 rows", ok, rows)
	}
}

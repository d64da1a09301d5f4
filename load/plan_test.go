package load

import (
	"math"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/postgres"
)

func TestPlan(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name      string
		pages     uint32
		chunkSize uint64
		tidRange  bool
		want      [][2]uint32 // first, end page per chunk
	}{
		{"empty table", 0, 64 * mib, true, [][2]uint32{{0, 0}}},
		{"smaller than a chunk", 100, 64 * mib, true, [][2]uint32{{0, 0}}},
		{"exactly one chunk", 8192, 64 * mib, true, [][2]uint32{{0, 0}}},
		{"split, last open", 20000, 64 * mib, true, [][2]uint32{{0, 8192}, {8192, 16384}, {16384, 0}}},
		{"one page more", 8193, 64 * mib, true, [][2]uint32{{0, 8192}, {8192, 0}}},
		{"no tid range scans", 20000, 64 * mib, false, [][2]uint32{{0, 0}}},
		{"tiny chunks", 3, 1, true, [][2]uint32{{0, 1}, {1, 2}, {2, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rel := postgres.Relation{Pages: tc.pages, Filenode: 42, RowsPerPage: 10}
			got := plan("public.t", "public.t_1", 5, rel, tc.chunkSize, tc.tidRange, 0x100)
			if len(got) != len(tc.want) {
				t.Fatalf("%d chunks, want %d: %+v", len(got), len(tc.want), got)
			}
			var estimate uint64
			for i, c := range got {
				if c.FirstPage != tc.want[i][0] || c.EndPage != tc.want[i][1] {
					t.Errorf("chunk %d pages [%d,%d), want [%d,%d)", i, c.FirstPage, c.EndPage, tc.want[i][0], tc.want[i][1])
				}
				if c.Chunk != uint32(5+i) || c.Source != "public.t" || c.Relation != "public.t_1" || c.Filenode != 42 || c.Load != 0x100 || c.Done() {
					t.Errorf("chunk %d = %+v", i, c)
				}
				estimate += c.Estimate
			}
			if want := uint64(tc.pages) * 10; estimate != want {
				t.Errorf("estimates sum to %d rows, want %d", estimate, want)
			}
		})
	}
}

// inWindow evaluates xidWindow.condition for a 32-bit xmin as Postgres'
// age() does, with latest the newest transaction id.
func inWindow(w xidWindow, xmin, latest uint32) bool {
	age := func(x uint32) int32 {
		if x < 3 { // invalid, bootstrap and frozen ids are infinitely old
			return math.MaxInt32
		}
		return int32(latest - x)
	}
	return age(xmin) <= age(uint32(w.Since))
}

func TestXidWindow(t *testing.T) {
	tests := []struct {
		name   string
		w      xidWindow
		xmin   uint32
		latest uint32
		want   bool
	}{
		{"before", xidWindow{1000, 2000}, 999, 2100, false},
		{"at since", xidWindow{1000, 2000}, 1000, 2100, true},
		{"inside", xidWindow{1000, 2000}, 1500, 2100, true},
		{"after the snapshot", xidWindow{1000, 2000}, 2050, 2100, true},
		{"frozen", xidWindow{1000, 2000}, 2, 2100, false},
		{"across the epoch, old", xidWindow{1<<32 - 10, 1<<32 + 10}, 1<<32 - 11, 20, false},
		{"across the epoch, before wrap", xidWindow{1<<32 - 10, 1<<32 + 10}, 1<<32 - 1, 20, true},
		{"across the epoch, after wrap", xidWindow{1<<32 - 10, 1<<32 + 10}, 5, 20, true},
		{"later epoch", xidWindow{5<<32 + 100, 5<<32 + 200}, 150, 300, true},
		{"later epoch, old", xidWindow{5<<32 + 100, 5<<32 + 200}, 99, 300, false},
	}
	for _, tc := range tests {
		if got := inWindow(tc.w, tc.xmin, tc.latest); got != tc.want {
			t.Errorf("%s: xmin %d in %+v = %v, want %v", tc.name, tc.xmin, tc.w, got, tc.want)
		}
	}
	want := "age(xmin) <= age('4294967286'::xid)"
	if got := (xidWindow{1<<32 - 10, 1<<32 + 10}).condition(); got != want {
		t.Errorf("condition = %s, want %s", got, want)
	}
}

func TestTableJobs(t *testing.T) {
	const s1, s2 = pglogrepl.LSN(0x1000), pglogrepl.LSN(0x2000)
	snap := snapshot{lsn: s2, xmin: 500, xmax: 600}
	chunk := func(n uint32, lsn pglogrepl.LSN, xmin uint64) checkpoint.Chunk {
		return checkpoint.Chunk{Source: "public.t", Relation: "public.t", Chunk: n, Load: s1, LSN: lsn, Xmin: xmin, Estimate: 10}
	}
	t.Run("complete in one snapshot", func(t *testing.T) {
		jobs, done, _ := tableJobs(nil, []checkpoint.Chunk{chunk(0, s1, 100), chunk(1, s1, 100)}, snap, map[string]uint32{"public.t": 100}, nil)
		if len(jobs) != 0 || done != 2 {
			t.Errorf("jobs %v, done %d; want none, 2", jobs, done)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		cs := []checkpoint.Chunk{chunk(0, s1, 100), chunk(1, 0, 0), chunk(2, s2, 500), chunk(3, 0x1800, 300)}
		cs[1].FirstPage, cs[1].EndPage = 10, 30
		// Chunk 1 was planned by an earlier run, which may have written
		// part of it: its copy is whole but not fresh.
		jobs, done, pages := tableJobs(nil, cs, snap, map[string]uint32{"public.t": 100}, map[uint32]bool{4: true})
		if done != 1 || pages != 20 || len(jobs) != 3 {
			t.Fatalf("done %d, pages %d, %d jobs; want 1, 20, 3", done, pages, len(jobs))
		}
		if j := jobs[0]; j.chunk.Chunk != 0 || j.since == nil || *j.since != (xidWindow{100, 600}) {
			t.Errorf("chunk 0 job = %+v, want rows since xid 100", j)
		}
		if j := jobs[1]; j.chunk.Chunk != 1 || j.since != nil || j.fresh {
			t.Errorf("chunk 1 job = %+v, want whole, not fresh", j)
		}
		if j := jobs[2]; j.chunk.Chunk != 3 || j.since == nil || *j.since != (xidWindow{300, 600}) {
			t.Errorf("chunk 3 job = %+v, want rows since xid 300", j)
		}
	})
	t.Run("window too wide", func(t *testing.T) {
		cs := []checkpoint.Chunk{chunk(0, s1, 100), chunk(1, 0, 0)}
		jobs, _, _ := tableJobs(nil, cs, snapshot{lsn: s2, xmin: 1 << 40, xmax: maxWindow + 100}, nil, nil)
		if len(jobs) != 2 || jobs[0].since != nil {
			t.Errorf("jobs %+v: want chunk 0 copied whole", jobs)
		}
	})
	t.Run("planned by this run", func(t *testing.T) {
		cs := []checkpoint.Chunk{chunk(0, 0, 0), chunk(1, 0, 0)}
		jobs, _, _ := tableJobs(nil, cs, snap, nil, map[uint32]bool{0: true, 1: true})
		if len(jobs) != 2 || !jobs[0].fresh || !jobs[1].fresh {
			t.Errorf("jobs %+v: want both fresh", jobs)
		}
	})
}

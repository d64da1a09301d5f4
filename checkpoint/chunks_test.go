package checkpoint

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestCopyStateOfChunks(t *testing.T) {
	const c1, c2 = 0x1000, 0x2000
	whole := func(lsn, w uint64, target string) Chunk {
		return Chunk{Source: "public.t", LSN: lsnOf(lsn), Whole: lsnOf(w), Target: target}
	}
	tests := []struct {
		name    string
		chunks  []Chunk
		horizon uint64
		exact   bool
		shadow  bool // copied into t_resync
	}{
		{name: "none", chunks: nil},
		{name: "one not copied", chunks: []Chunk{whole(c1, c1, "t"), whole(0, 0, "t")}},
		{name: "whole in one snapshot", chunks: []Chunk{whole(c1, c1, "t"), whole(c1, c1, "t")}, horizon: c1, exact: true},
		{name: "resumed", chunks: []Chunk{whole(c2, c1, "t"), whole(c2, c2, "t")}, horizon: c2},
		{name: "recopied whole by a later run", chunks: []Chunk{whole(c2, 0, "t"), whole(c2, c2, "t")}, horizon: c2},
		{name: "different snapshots", chunks: []Chunk{whole(c1, c1, "t"), whole(c2, c2, "t")}, horizon: c2},
		{name: "into the shadow", chunks: []Chunk{whole(c2, c2, "t_resync")}, horizon: c2, exact: true, shadow: true},
		{name: "partly into the shadow", chunks: []Chunk{whole(c2, c2, "t_resync"), whole(c2, c2, "t")}, horizon: c2, exact: true},
		{name: "shadow not complete", chunks: []Chunk{whole(c2, c2, "t_resync"), whole(0, 0, "t_resync")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if h := Horizon(tc.chunks); uint64(h) != tc.horizon {
				t.Errorf("Horizon = %x, want %x", uint64(h), tc.horizon)
			}
			if e := Exact(tc.chunks); e != tc.exact {
				t.Errorf("Exact = %v, want %v", e, tc.exact)
			}
			if s := CopiedInto(tc.chunks, "t_resync"); s != tc.shadow {
				t.Errorf("CopiedInto(t_resync) = %v, want %v", s, tc.shadow)
			}
		})
	}
}

func lsnOf(n uint64) pglogrepl.LSN { return pglogrepl.LSN(n) }

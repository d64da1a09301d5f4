package checkpoint

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/ddl"
)

// Chunk is one part of a table copy: a range of heap pages of the source
// table and the snapshot it was copied in.
type Chunk struct {
	// Source is the qualified Postgres table and Chunk the chunk's number
	// in it, from 0.
	Source string
	Chunk  uint32
	// Relation is the table whose pages the chunk holds: Source, or for a
	// partitioned table one of its leaf partitions.
	Relation string
	// FirstPage and EndPage bound the chunk's heap pages: FirstPage <=
	// page < EndPage; EndPage 0 means up to the end of the table.
	FirstPage, EndPage uint32
	// Filenode is the table's file when the copy was planned: a rewrite
	// (VACUUM FULL, CLUSTER, TRUNCATE, a type change) moves rows between
	// pages, and the copy of the table starts over.
	Filenode uint32
	// Load is the consistent point of the slot the copy belongs to: the
	// position the stream starts from when the copy is done.
	Load pglogrepl.LSN
	// LSN is the consistent point of the snapshot the chunk was copied in
	// (its rows have version LSN − 1); 0 while the chunk is not copied.
	LSN pglogrepl.LSN
	// Xmin is the xmin of that snapshot: every row version created by a
	// transaction below it was visible to the copy.
	Xmin uint64
	// Whole is the consistent point of the snapshot the chunk was copied
	// whole in, by the run that planned it (so no earlier run wrote part of
	// it); 0 otherwise.
	Whole pglogrepl.LSN
	// Target is the ClickHouse table the copy writes: the source's target,
	// or for a resync its shadow table.
	Target string
	// Rows is the number of rows the chunk's copy wrote.
	Rows uint64
	// Estimate is the planner's estimate of the chunk's rows, for progress.
	Estimate uint64
	// updated orders the states of one chunk.
	updated uint64
}

// Done reports whether the chunk was copied.
func (c Chunk) Done() bool { return c.LSN != 0 }

// SaveChunks records the state of chunks. It returns only after ClickHouse
// acknowledged the INSERT.
func (s *Store) SaveChunks(ctx context.Context, chunks ...Chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	now := uint64(time.Now().UnixNano())
	rows := make([][]any, len(chunks))
	for i, c := range chunks {
		rows[i] = []any{s.slot, c.Source, c.Chunk, c.Relation, c.FirstPage, c.EndPage, c.Filenode, uint64(c.Load),
			uint64(c.LSN), c.Xmin, c.Rows, c.Estimate, max(now, c.updated+1), uint64(c.Whole), c.Target}
	}
	err := s.client.Insert(ctx, s.client.DB().Insert(ddl.ChunkTable, []string{"slot", "source", "chunk", "relation", "first_page",
		"end_page", "filenode", "load_lsn", "lsn", "xmin", "rows", "estimate", "updated", "whole_lsn", "target"}), rows...)
	if err != nil {
		return fmt.Errorf("save state of %d chunks of %s: %w", len(chunks), chunks[0].Source, err)
	}
	return nil
}

// LoadChunks returns the newest state of every chunk of the slot's latest
// load (the highest Load), by source table in chunk order.
func (s *Store) LoadChunks(ctx context.Context) (map[string][]Chunk, error) {
	rows, err := s.client.Query(ctx, fmt.Sprintf(
		"SELECT source, chunk, relation, first_page, end_page, filenode, load_lsn, lsn, xmin, rows, estimate, updated, whole_lsn, target FROM %s FINAL "+
			"WHERE slot = ? ORDER BY source, chunk", s.client.DB().Table(ddl.ChunkTable)), s.slot)
	if err != nil {
		return nil, fmt.Errorf("load copy state of slot %s: %w", s.slot, err)
	}
	var latest uint64
	for _, r := range rows {
		latest = max(latest, r[6].(uint64))
	}
	out := make(map[string][]Chunk)
	for _, r := range rows {
		c := Chunk{Source: r[0].(string), Chunk: r[1].(uint32), Relation: r[2].(string), FirstPage: r[3].(uint32),
			EndPage: r[4].(uint32), Filenode: r[5].(uint32), Load: pglogrepl.LSN(r[6].(uint64)), LSN: pglogrepl.LSN(r[7].(uint64)),
			Xmin: r[8].(uint64), Rows: r[9].(uint64), Estimate: r[10].(uint64), updated: r[11].(uint64),
			Whole: pglogrepl.LSN(r[12].(uint64)), Target: r[13].(string)}
		if uint64(c.Load) == latest {
			out[c.Source] = append(out[c.Source], c)
		}
	}
	return out, nil
}

// DeleteChunks removes the copy state of a source table (when its copy
// starts over), or of every table of the slot when source is empty. It
// waits until the deletion, a ClickHouse mutation, is visible.
func (s *Store) DeleteChunks(ctx context.Context, source string) error {
	what := "delete copy state of " + source
	if source == "" {
		what = "delete copy state of every table"
	}
	return s.mutate(ctx, what, ddl.ChunkTable, "updated", s.client.DB().DeleteChunks(),
		[]any{s.slot, source, source}, s.deleted(ctx, source, "(source = ? OR ? = '')", source, source))
}

// ReplaceChunks makes mark, chunk 0 of its source, the source's whole copy
// state: it supersedes chunk 0 first, then removes the others, so that a
// setup stopped in between leaves a copy state that is not complete (and
// is copied again), never none.
func (s *Store) ReplaceChunks(ctx context.Context, mark Chunk) error {
	mark.Chunk = 0
	if err := s.SaveChunks(ctx, mark); err != nil {
		return err
	}
	return s.mutate(ctx, "delete copy state of "+mark.Source, ddl.ChunkTable, "updated", s.client.DB().DeleteLaterChunks(),
		[]any{s.slot, mark.Source, uint32(1)}, s.deleted(ctx, mark.Source, "source = ? AND chunk >= 1", mark.Source))
}

// deleted reports whether no chunk of the slot matches where (with args).
func (s *Store) deleted(ctx context.Context, source, where string, args ...any) func() (bool, error) {
	return func() (bool, error) {
		rows, err := s.client.Query(ctx, fmt.Sprintf("SELECT count() FROM %s WHERE slot = ? AND %s",
			s.client.DB().Table(ddl.ChunkTable), where), append([]any{s.slot}, args...)...)
		if err != nil {
			return false, fmt.Errorf("delete copy state of %s: %w", source, err)
		}
		return rows[0][0].(uint64) == 0, nil
	}
}

// Into reports whether a table's copy state, complete or not, writes
// into the ClickHouse table target (a resync's shadow).
func Into(chunks []Chunk, target string) bool {
	for _, c := range chunks {
		if c.Target == target {
			return true
		}
	}
	return false
}

// CopiedInto reports whether a table's copy is complete and was written
// into the ClickHouse table target.
func CopiedInto(chunks []Chunk, target string) bool {
	if Horizon(chunks) == 0 {
		return false
	}
	for _, c := range chunks {
		if c.Target != target {
			return false
		}
	}
	return true
}

// Exact reports whether a table's complete copy was read whole in one
// snapshot (that of Horizon): then it holds exactly the rows alive there,
// and a change below the horizon has nothing to write, not even a
// tombstone (a copy brought up to date from an earlier snapshot lacks the
// deletes in between, which the stream's tombstones write).
func Exact(chunks []Chunk) bool {
	h := Horizon(chunks)
	if h == 0 {
		return false
	}
	for _, c := range chunks {
		if c.LSN != h || c.Whole != h {
			return false
		}
	}
	return true
}

// Horizon returns the position below which the stream must not write the
// rows of a table's changes: the consistent point of the snapshot that the
// table's complete copy was read in. Every row a change below it writes is
// superseded by the copy (see load), so only its tombstones count. It is 0
// when the table has no complete copy state.
func Horizon(chunks []Chunk) pglogrepl.LSN {
	var h pglogrepl.LSN
	for _, c := range chunks {
		if !c.Done() {
			return 0
		}
		h = max(h, c.LSN)
	}
	return h
}

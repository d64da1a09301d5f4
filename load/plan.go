package load

import (
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
)

// pageSize is the heap page size chunks are sized with (Postgres' default
// block size; a server built with another only gets other chunk sizes).
const pageSize = 8192

// plan splits a table (relation, the configured source or one of its leaf
// partitions) into chunks of about chunkSize bytes of heap pages,
// numbered from first.
// The last chunk is open-ended, so that pages added after the plan are
// copied too. Without TID range scans (Postgres < 14) a page range would
// make every chunk read the whole table: the table is then one chunk.
func plan(source, relation string, first uint32, rel postgres.Relation, chunkSize uint64, tidRange bool, load pglogrepl.LSN) []checkpoint.Chunk {
	per := uint32(max(chunkSize/pageSize, 1))
	n := uint32(1)
	if tidRange && rel.Pages > per {
		n = (rel.Pages + per - 1) / per
	}
	chunks := make([]checkpoint.Chunk, n)
	for i := range chunks {
		c := checkpoint.Chunk{Source: source, Chunk: first + uint32(i), Relation: relation, Filenode: rel.Filenode, Load: load}
		if n > 1 {
			c.FirstPage = uint32(i) * per
			if uint32(i) < n-1 {
				c.EndPage = c.FirstPage + per
			}
		}
		pages := rel.Pages - min(c.FirstPage, rel.Pages)
		if c.EndPage > 0 {
			pages = c.EndPage - c.FirstPage
		}
		c.Estimate = uint64(float64(pages) * rel.RowsPerPage)
		chunks[i] = c
	}
	return chunks
}

// xidWindow selects the row versions that transactions from Since on
// created, up to a snapshot whose xmax is Until (64-bit ids).
type xidWindow struct {
	Since, Until uint64
}

// maxWindow bounds a window: the condition compares 32-bit transaction
// ids by their age, which is exact within 2^31 transactions; half of that
// leaves room for the transactions that run during the copy. A wider
// window copies the chunk whole.
const maxWindow = 1 << 30

// condition renders the window as an SQL condition on the xmin of each
// row version: created by Since or a later transaction, i.e. not older
// than Since (age counts back from the newest transaction id, the same for
// both within one statement; a frozen id is infinitely old). Versions
// created before Since are visible to every snapshot with that xmin; the
// condition may also take a few of them (created between Since and that
// snapshot), which a copy writes again unchanged.
func (w xidWindow) condition() string {
	return fmt.Sprintf("age(xmin) <= age('%d'::xid)", w.Since%(1<<32))
}

// chunkQuery is the SELECT a binary COPY of a chunk runs: the mapped
// columns of the chunk's pages of its relation alone, and with since only the row versions
// created by transactions in that window.
func chunkQuery(t *mapping.Table, c checkpoint.Chunk, since *xidWindow) string {
	return selectQuery(t, c, since, "")
}

// selectQuery is chunkQuery with extra appended to the select list.
func selectQuery(t *mapping.Table, c checkpoint.Chunk, since *xidWindow, extra string) string {
	// ONLY: a leaf is never partitioned, and a table with legacy
	// inheritance children holds their rows only for a plain SELECT.
	q := "SELECT " + strings.Join(t.CopyColumns(), ", ") + extra + " FROM ONLY " + postgres.QuoteTable(c.Relation)
	var where []string
	if c.FirstPage > 0 {
		where = append(where, fmt.Sprintf("ctid >= '(%d,0)'::tid", c.FirstPage))
	}
	if c.EndPage > 0 {
		where = append(where, fmt.Sprintf("ctid < '(%d,0)'::tid", c.EndPage))
	}
	if since != nil {
		where = append(where, since.condition())
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q
}

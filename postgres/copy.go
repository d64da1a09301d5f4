package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// CopyBinary runs `COPY (query) TO STDOUT (FORMAT binary)` in the snapshot
// and passes each row's fields to fn: the raw binary value of each column,
// nil for NULL. fields and their bytes are valid only during the call. An
// error from fn ends the copy and is returned as is; the server's errors
// are described (Describe: a lost connection or a shutdown is transient).
func (s *Snapshot) CopyBinary(ctx context.Context, query string, fn func(fields [][]byte) error) error {
	p := &copyParser{row: fn}
	_, err := s.tx.Conn().PgConn().CopyTo(ctx, p, "COPY ("+query+") TO STDOUT (FORMAT binary)")
	if p.err != nil {
		return p.err
	}
	if err != nil {
		return Describe(err, "", "")
	}
	return p.finish()
}

// copySignature starts a binary COPY stream.
var copySignature = []byte("PGCOPY\n\xff\r\n\x00")

// copyParser parses a binary COPY stream written to it in pieces of any
// size (Postgres sends one row per message) and calls row for every row.
type copyParser struct {
	row     func(fields [][]byte) error
	pending []byte // an incomplete piece kept until the next Write
	header  bool
	trailer bool
	fields  [][]byte
	err     error // from row: stops the copy
}

func (p *copyParser) Write(data []byte) (int, error) {
	n := len(data)
	if len(p.pending) > 0 {
		p.pending = append(p.pending, data...)
		data = p.pending
	}
	used, err := p.parse(data)
	if err != nil {
		return 0, err
	}
	rest := data[used:]
	if len(p.pending) > 0 {
		p.pending = append(p.pending[:0], rest...)
	} else if len(rest) > 0 {
		p.pending = append(p.pending, rest...)
	}
	return n, nil
}

// parse consumes every complete element of data and returns how many bytes
// it used.
func (p *copyParser) parse(data []byte) (int, error) {
	used := 0
	if !p.header {
		if len(data) < len(copySignature)+8 {
			return 0, nil
		}
		if !bytes.Equal(data[:len(copySignature)], copySignature) {
			return 0, errors.New("binary copy: bad signature")
		}
		ext := int(binary.BigEndian.Uint32(data[len(copySignature)+4:]))
		size := len(copySignature) + 8 + ext
		if len(data) < size {
			return 0, nil
		}
		p.header = true
		used = size
	}
	for used < len(data) {
		if p.trailer {
			return 0, errors.New("binary copy: data after the trailer")
		}
		rest := data[used:]
		if len(rest) < 2 {
			return used, nil
		}
		count := int(int16(binary.BigEndian.Uint16(rest)))
		if count == -1 {
			p.trailer = true
			used += 2
			continue
		}
		if count < 0 {
			return 0, fmt.Errorf("binary copy: bad field count %d", count)
		}
		p.fields = p.fields[:0]
		off := 2
		complete := true
		for i := 0; i < count; i++ {
			if len(rest) < off+4 {
				complete = false
				break
			}
			size := int(int32(binary.BigEndian.Uint32(rest[off:])))
			off += 4
			if size < 0 {
				p.fields = append(p.fields, nil)
				continue
			}
			if len(rest) < off+size {
				complete = false
				break
			}
			p.fields = append(p.fields, rest[off:off+size:off+size])
			off += size
		}
		if !complete {
			return used, nil
		}
		if err := p.row(p.fields); err != nil {
			p.err = err
			return 0, err
		}
		used += off
	}
	return used, nil
}

// finish checks that the stream ended with its trailer.
func (p *copyParser) finish() error {
	if !p.header || !p.trailer || len(p.pending) > 0 {
		return errors.New("binary copy: stream ended early")
	}
	return nil
}

// Relation is what a copy plan needs to know about a table.
type Relation struct {
	// Pages is the number of heap pages.
	Pages uint32
	// Filenode identifies the table's file: it changes when the table is
	// rewritten.
	Filenode uint32
	// RowsPerPage is the planner's estimate (0: unknown, never analyzed).
	RowsPerPage float64
}

// Relation reads the size and file of a table ("schema.name").
func (s *Snapshot) Relation(ctx context.Context, table string) (Relation, error) {
	var r Relation
	var pages int64
	err := s.tx.QueryRow(ctx, `SELECT pg_relation_size(c.oid) / current_setting('block_size')::int,
		pg_relation_filenode(c.oid), CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages ELSE 0 END
		FROM pg_class c WHERE c.oid = $1::regclass`, QuoteTable(table)).Scan(&pages, &r.Filenode, &r.RowsPerPage)
	if err != nil {
		return Relation{}, fmt.Errorf("read size of %s: %w", table, Describe(err, "", ""))
	}
	r.Pages = uint32(min(pages, 1<<32-1))
	return r, nil
}

// Xids returns the snapshot's xmin (every transaction below it had ended)
// and xmax (every transaction at or above it had not started), as 64-bit
// transaction ids.
func (s *Snapshot) Xids(ctx context.Context) (xmin, xmax uint64, err error) {
	err = s.tx.QueryRow(ctx, "SELECT txid_snapshot_xmin(txid_current_snapshot()), txid_snapshot_xmax(txid_current_snapshot())").Scan(&xmin, &xmax)
	if err != nil {
		return 0, 0, fmt.Errorf("read snapshot: %w", Describe(err, "", ""))
	}
	return xmin, xmax, nil
}

// Lock takes an ACCESS SHARE lock on tables, as pg_dump does: a rewrite
// (VACUUM FULL, CLUSTER, ALTER TABLE ... TYPE) waits until the copy ends
// instead of changing the files under it.
func (s *Snapshot) Lock(ctx context.Context, tables []string) error {
	quoted := make([]string, len(tables))
	for i, t := range tables {
		quoted[i] = QuoteTable(t)
	}
	if _, err := s.tx.Exec(ctx, "LOCK TABLE "+strings.Join(quoted, ", ")+" IN ACCESS SHARE MODE"); err != nil {
		return fmt.Errorf("lock tables for the copy: %w", Describe(err, "", ""))
	}
	return nil
}

// InPageOrder makes the snapshot's plain scans read a table's pages in
// order from its first (no synchronized start part-way through, no
// parallel workers), so that a scan's rows arrive by ascending page.
func (s *Snapshot) InPageOrder(ctx context.Context) error {
	if _, err := s.tx.Exec(ctx, "SET LOCAL synchronize_seqscans = off; SET LOCAL max_parallel_workers_per_gather = 0"); err != nil {
		return fmt.Errorf("read pages in order: %w", Describe(err, "", ""))
	}
	return nil
}

// Heap reports whether a table is stored by the heap access method, whose
// sequential and TID range scans read its pages in order.
func (s *Snapshot) Heap(ctx context.Context, table string) (bool, error) {
	var heap bool
	err := s.tx.QueryRow(ctx, `SELECT coalesce(a.amname = 'heap', false) FROM pg_class c LEFT JOIN pg_am a ON a.oid = c.relam
		WHERE c.oid = $1::regclass`, QuoteTable(table)).Scan(&heap)
	if err != nil {
		return false, fmt.Errorf("read the access method of %s: %w", table, Describe(err, "", ""))
	}
	return heap, nil
}

// ServerVersion returns the server's major version (e.g. 15).
func (c *Conn) ServerVersion() int {
	return MajorVersion(c.pg.PgConn().ParameterStatus("server_version"))
}

// MajorVersion returns the major version in a server_version parameter
// (e.g. 15 of "15.4 (Debian 15.4-1)"), 0 when it has none.
func MajorVersion(v string) int {
	if i := strings.IndexAny(v, ". "); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

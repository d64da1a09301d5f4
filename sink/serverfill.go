package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// Rows waiting for unchanged TOAST values are written by ClickHouse itself
// where that is exact: an INSERT ... SELECT takes the values from the
// newest stored row of each identity and every other value from the row
// the replicator sends as external data. The values never travel: reading
// 4 KB bodies back and sending them again cost the daemon most of its CPU
// on an update that leaves them unchanged, and ClickHouse twice the work.
//
// Exact means the stored row the values come from is the one invariant 3
// names, the newest stored row strictly older than the change, and that
// one exists and is not a tombstone:
//   - the change is above the table's replay window (every stored row is
//     of an earlier change: flushes are in commit order, and an earlier
//     flush of the same transaction stored lower _seq);
//   - the image is the row's own identity, which it held since the change
//     (no key move: Own is the change's own span at Key);
//   - the table is neither Placed nor a history table, and not on a
//     cluster (keys would have to reach every shard);
//   - a first read of the identities' newest (_version, _seq) finds a live
//     row for each; otherwise the rows take the lookup path, which reports
//     the missing image.
//
// These INSERTs run before the flush's INSERT of its other rows, which
// never share a place with them (a buffer holds one row per place).

// serverFillKinds are the column kinds that travel as external data.
func serverFillKind(k mapping.Kind) bool {
	switch k {
	case mapping.KindEnum8, mapping.KindEnum16, mapping.KindMap, mapping.KindJSON, mapping.KindInvalid:
		return false
	}
	return true
}

// serverFillBytes bounds the images one fill on the server reads, which
// ClickHouse holds in its join, by the row size its reads measured
// (Writer.serverRowBytes).
const serverFillBytes = 32 << 20

// unsupported are the codes of ClickHouse's errors that refuse the
// statements of a fill on the server themselves (syntax, names, types,
// functions): another version reads them otherwise. Any other error
// fails the flush as any write's does.
var unsupported = map[int32]bool{1: true, 10: true, 16: true, 36: true, 43: true, 44: true, 46: true, 47: true, 48: true,
	53: true, 62: true, 70: true, 184: true, 352: true, 386: true, 403: true}

// rowsTable names the external table of the rows a fill on the server
// writes.
const rowsTable = "_replicator_rows"

// serverFillable reports whether the rows of t may be filled on the server.
func (w *Writer) serverFillable(t *mapping.Table) bool {
	if w.client == nil || w.serverFillOff.Load() || t.History || t.Placed() || w.client.DB().Cluster != "" {
		return false
	}
	for _, c := range t.Columns {
		if !serverFillKind(c.Type.Kind) {
			return false
		}
	}
	return true
}

// ownImage reports whether f waits for the image of its row's own
// identity, which the row held since the change.
func ownImage(f *Fill) bool {
	return !f.Place && len(f.Own) == 1 && f.Own[0].Key == f.Key && !f.Own[0].Closed()
}

// onServer reports whether the row of a fill of the table will be filled
// on the server, as far as known when it is buffered: not before the
// table's replay window is read.
func (w *Writer) onServer(table int, f *Fill) bool {
	if !ownImage(f) || !w.serverFillable(w.tables[table].table) {
		return false
	}
	w.mu.Lock()
	win := w.windows[table]
	w.mu.Unlock()
	return win.read && f.Version > win.upTo
}

// fillOnServer writes the rows of b that may be filled on the server (see
// above), one INSERT ... SELECT per set of columns to fill, and drops them
// from b. The rest are left for fill.
func (w *Writer) fillOnServer(ctx context.Context, table int, b *tableBuffer) error {
	t := b.table
	if !w.serverFillable(t) {
		return nil
	}
	var groups [][]int // row indexes, by the columns they wait for
	var cols [][]int
	for i, f := range b.fills {
		if f == nil || !ownImage(f) || b.rows[i] == nil {
			continue
		}
		g := slices.IndexFunc(cols, func(c []int) bool { return slices.Equal(c, f.Cols) })
		if g < 0 {
			g = len(cols)
			cols, groups = append(cols, f.Cols), append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	if len(groups) == 0 {
		return nil
	}
	upTo, err := w.window(ctx, table, t)
	if err != nil {
		return err
	}
	for g, idx := range groups {
		idx = slices.DeleteFunc(idx, func(i int) bool { return b.fills[i].Version <= upTo })
		for len(idx) > 0 {
			// ClickHouse holds the images of one INSERT in its join.
			n := min(len(idx), FillBatch, max(1, serverFillBytes/int(w.serverRowBytes.Load())))
			done, rowBytes, err := w.client.insertFilled(ctx, t, cols[g], b.rows, idx[:n])
			if rowBytes > 0 {
				w.serverRowBytes.Store(int64(max(rowBytes, 256)))
			}
			var refused *clickhouse.Exception
			if errors.As(err, &refused) && unsupported[refused.Code] {
				// The server refused the statements (another version may
				// read them otherwise): the lookup path writes the rows, as
				// it does from now on.
				w.serverFillOff.Store(true)
				if w.OnServerFillOff != nil {
					w.OnServerFillOff(err)
				}
				return nil
			}
			if err != nil {
				return err
			}
			for _, i := range done {
				b.rows[i], b.fills[i] = nil, nil
			}
			idx = idx[n:]
		}
	}
	return nil
}

// serverFill is the SQL of a fill on the server.
type serverFill struct {
	// ext are the indexes of the row's values sent (the mapped columns not
	// filled, then the meta columns) and their names and types.
	ext   []int
	names []string
	types []string
	// keyTypes are the types of the identity's columns.
	keyTypes []string
	// newest reads, per identity of the rows, whether its newest stored row
	// is a tombstone and that row's _version and _seq; insert writes the
	// rows, taking the filled columns from the stored rows that newest
	// named.
	newest, insert string
	// written counts the identities of the rows stored with their own
	// _version and _seq: after insert, one per row sent.
	written string
}

// newestTable names the external table of the stored rows a fill on the
// server takes values from: identity, _version and _seq.
const newestTable = "_replicator_newest"

// newServerFill renders the statements that write rows of t waiting for
// the columns fill.
func newServerFill(db ddl.Database, t *mapping.Table, fill []int) serverFill {
	var s serverFill
	for i, c := range t.Columns {
		if slices.Contains(fill, i) {
			continue
		}
		typ := c.Type
		typ.LowCardinality = false
		s.ext, s.names, s.types = append(s.ext, i), append(s.names, c.Name), append(s.types, typ.String())
	}
	metaTypes := []string{"UInt64", "UInt8", "UInt64"}
	for i, m := range mapping.MetaColumns {
		s.ext, s.names, s.types = append(s.ext, len(t.Columns)+i), append(s.names, m), append(s.types, metaTypes[i])
	}
	var keys, knames []string
	for j, k := range t.Ident() {
		typ := t.Columns[k].Type
		typ.LowCardinality = false
		keys, knames = append(keys, ddl.Quote(t.Columns[k].Name)), append(knames, "k"+strconv.Itoa(j))
		s.keyTypes = append(s.keyTypes, typ.String())
	}
	key := strings.Join(keys, ", ")
	version, deleted, seq := ddl.Quote(mapping.VersionColumn), ddl.Quote(mapping.DeletedColumn), ddl.Quote(mapping.SeqColumn)
	order := "tuple(" + version + ", " + seq + ")"
	s.newest = fmt.Sprintf("SELECT %[1]s, argMax(%[4]s, %[5]s), argMax(%[6]s, %[5]s), argMax(%[7]s, %[5]s) FROM %[2]s "+
		"WHERE (%[1]s) IN (SELECT %[1]s FROM %[3]s) GROUP BY %[1]s", key, db.Table(t.Target), rowsTable, deleted, order, version, seq)
	images := []string{key}
	for _, i := range fill {
		images = append(images, ddl.Quote(t.Columns[i].Name))
	}
	var out []string
	for _, n := range t.WriteNames() {
		out = append(out, ddl.Quote(n))
	}
	s.written = fmt.Sprintf("SELECT uniqExact(%[1]s) FROM %[2]s WHERE (%[1]s, %[3]s, %[4]s) IN (SELECT %[1]s, %[3]s, %[4]s FROM %[5]s)",
		key, db.Table(t.Target), version, seq, rowsTable)
	s.insert = fmt.Sprintf("%s SELECT %s FROM %s ANY INNER JOIN (SELECT %s FROM %s WHERE (%s, %s, %s) IN (SELECT %s, v, s FROM %s)) USING %s",
		db.Insert(t.Target, t.WriteNames()), strings.Join(out, ", "), rowsTable, strings.Join(images, ", "), db.Table(t.Target),
		key, version, seq, strings.Join(knames, ", "), newestTable, key)
	return s
}

// insertFilled writes the rows at idx of t, which wait for the columns
// fill, by a fill on the server, and returns the indexes written: all but
// the rows whose identity has no live stored row, which the lookup path
// reports; and the size of a row its INSERT read (0: none read).
func (c *Client) insertFilled(ctx context.Context, t *mapping.Table, fill []int, rows [][]any, idx []int) (done []int, rowBytes int, err error) {
	s := newServerFill(c.DB(), t, fill)
	tbl, err := s.data(t, rows, idx)
	if err != nil {
		return nil, 0, err
	}
	stored, err := c.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(tbl)), s.newest)
	if err != nil {
		return nil, 0, fmt.Errorf("read the newest stored rows of %d keys of %s: %w", len(idx), t.Target, err)
	}
	// The identities whose newest stored row is live, and that row.
	ident := t.Ident()
	kcols := make([]func(*ext.Table) error, 0, len(ident)+2)
	for j := range ident {
		kcols = append(kcols, ext.Column("k"+strconv.Itoa(j), column.Type(s.keyTypes[j])))
	}
	kcols = append(kcols, ext.Column("v", "UInt64"), ext.Column("s", "UInt64"))
	newest, err := ext.NewTable(newestTable, kcols...)
	if err != nil {
		return nil, 0, fmt.Errorf("fill rows of %s: %w", t.Target, err)
	}
	live := make(map[string]bool, len(stored))
	full := make([]any, len(t.Columns)+len(mapping.MetaColumns))
	for _, r := range stored {
		if d, ok := r[len(ident)].(uint8); !ok || d != 0 {
			continue
		}
		for j, k := range ident {
			full[k] = r[j]
		}
		live[t.IdentString(full)] = true
		vals := append(slices.Clone(r[:len(ident)]), r[len(ident)+1], r[len(ident)+2])
		if err := newest.Append(vals...); err != nil {
			return nil, 0, fmt.Errorf("fill rows of %s: %w", t.Target, err)
		}
	}
	idx = slices.DeleteFunc(slices.Clone(idx), func(i int) bool { return !live[t.IdentString(rows[i])] })
	if len(idx) == 0 {
		return nil, 0, nil
	}
	// The driver consumes an external table: build it again.
	if tbl, err = s.data(t, rows, idx); err != nil {
		return nil, 0, err
	}
	var read, readBytes uint64
	qctx := clickhouse.Context(targetInsert(ctx), clickhouse.WithExternalTable(tbl), clickhouse.WithExternalTable(newest),
		clickhouse.WithProgress(func(p *clickhouse.Progress) { read, readBytes = read+p.Rows, readBytes+p.Bytes }))
	if err := c.conn.Exec(qctx, s.insert); err != nil {
		return nil, 0, fmt.Errorf("insert %d rows into %s taking their unchanged values from its stored rows: %w", len(idx), t.Target, classify(err))
	}
	if read > 0 {
		rowBytes = int(readBytes / read)
	}
	// A stored row the read named and the INSERT did not find (removed in
	// between) would drop its change: the flush fails instead, and its
	// replay takes the lookup path, which stops naming the row.
	if tbl, err = s.data(t, rows, idx); err != nil {
		return nil, 0, err
	}
	got, err := c.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(tbl)), s.written)
	if err != nil {
		return nil, 0, fmt.Errorf("count the rows written into %s: %w", t.Target, err)
	}
	var n uint64
	if len(got) == 1 && len(got[0]) == 1 {
		n, _ = got[0][0].(uint64)
	}
	if n != uint64(len(idx)) {
		return nil, 0, fmt.Errorf("%d rows written into %s taking their unchanged values from its stored rows, %d stored: "+
			"an image was removed during the write", len(idx), t.Target, n)
	}
	return idx, rowBytes, nil
}

// data returns the external table of the rows at idx.
func (s serverFill) data(t *mapping.Table, rows [][]any, idx []int) (*ext.Table, error) {
	cols := make([]func(*ext.Table) error, len(s.ext))
	for j := range s.ext {
		cols[j] = ext.Column(s.names[j], column.Type(s.types[j]))
	}
	tbl, err := ext.NewTable(rowsTable, cols...)
	if err != nil {
		return nil, fmt.Errorf("fill rows of %s: %w", t.Target, err)
	}
	vals := make([]any, len(s.ext))
	for _, i := range idx {
		for j, k := range s.ext {
			vals[j] = rows[i][k]
		}
		if err := tbl.Append(vals...); err != nil {
			return nil, fmt.Errorf("fill row %s of %s: %w", t.KeyString(rows[i]), t.Target, err)
		}
	}
	return tbl, nil
}

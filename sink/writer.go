package sink

import (
	"context"
	"fmt"
	"strings"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// Writer buffers mapped rows per target table and writes them with one
// INSERT per table per Flush. It keeps only the latest row per sorting key:
// a later Put of the same key replaces the earlier row. Writer never writes
// checkpoints; the caller writes one after Flush returns.
type Writer struct {
	client *Client
	tables []*tableBuffer
	rows   int
}

type tableBuffer struct {
	table  *mapping.Table
	insert string
	rows   [][]any
	index  map[string]int
}

// NewWriter returns a writer for the given tables; Put addresses them by
// their index in tables.
func NewWriter(client *Client, tables []*mapping.Table) *Writer {
	w := &Writer{client: client}
	for i, t := range tables {
		w.tables = append(w.tables, &tableBuffer{index: make(map[string]int)})
		w.SetTable(i, t)
	}
	return w
}

// SetTable replaces the mapping of a table, e.g. after a Relation message.
// The new mapping must write the same columns as the rows already buffered.
func (w *Writer) SetTable(i int, t *mapping.Table) {
	b := w.tables[i]
	b.table = t
	b.insert = w.client.DB().Insert(t.Target, t.ColumnNames())
}

// Put buffers row (the mapped columns followed by _version and _deleted)
// under key, replacing any buffered row with the same key. The writer keeps
// row; the caller must not reuse it.
func (w *Writer) Put(table int, key string, row []any) {
	b := w.tables[table]
	if i, ok := b.index[key]; ok {
		b.rows[i] = row
		return
	}
	b.index[key] = len(b.rows)
	b.rows = append(b.rows, row)
	w.rows++
}

// Latest returns the buffered row for key, if any.
func (w *Writer) Latest(table int, key string) ([]any, bool) {
	b := w.tables[table]
	i, ok := b.index[key]
	if !ok {
		return nil, false
	}
	return b.rows[i], true
}

// Rows returns the number of buffered rows.
func (w *Writer) Rows() int { return w.rows }

// Flush writes the buffered rows, one INSERT per table, and empties the
// buffer. It returns only after ClickHouse acknowledged every INSERT; on
// error the buffer is kept and nothing may be considered stored.
func (w *Writer) Flush(ctx context.Context) error {
	if w.client == nil && w.rows > 0 {
		return fmt.Errorf("flush: writer has no ClickHouse client")
	}
	for _, b := range w.tables {
		if len(b.rows) == 0 {
			continue
		}
		batch, err := w.client.conn.PrepareBatch(ctx, b.insert)
		if err != nil {
			return fmt.Errorf("prepare insert into %s: %w", b.table.Target, classify(err))
		}
		for _, row := range b.rows {
			if err := batch.Append(row...); err != nil {
				batch.Abort()
				return fmt.Errorf("append row %s to %s: %w", b.table.KeyString(row), b.table.Target, err)
			}
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("insert %d rows into %s: %w", len(b.rows), b.table.Target, classify(err))
		}
		b.rows = b.rows[:0]
		clear(b.index)
	}
	w.rows = 0
	return nil
}

// Image returns the latest image of a key: the buffered row, else the
// newest row stored in ClickHouse (the mapped columns followed by _version
// and _deleted). keyRow holds the key values at the table's key indexes.
func (w *Writer) Image(ctx context.Context, table int, key string, keyRow []any) ([]any, bool, error) {
	if row, ok := w.Latest(table, key); ok {
		return row, true, nil
	}
	return w.client.latestStored(ctx, w.tables[table].table, keyRow)
}

// Truncate empties a table's ClickHouse target. It does not touch the
// buffer: the caller flushes the rows older than the truncation first.
func (w *Writer) Truncate(ctx context.Context, table int) error {
	t := w.tables[table].table
	if err := w.client.Exec(ctx, w.client.DB().Truncate(t.Target)); err != nil {
		return fmt.Errorf("truncate %s: %w", t.Target, err)
	}
	return nil
}

// latestStored reads the newest stored row of a key from ClickHouse.
func (c *Client) latestStored(ctx context.Context, t *mapping.Table, keyRow []any) ([]any, bool, error) {
	cols := t.ColumnNames()
	for i := range cols {
		cols[i] = ddl.Quote(cols[i])
	}
	var where []string
	var args []any
	for _, k := range t.Key {
		where = append(where, ddl.Quote(t.Columns[k].Name)+" = ?")
		args = append(args, keyRow[k])
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s DESC LIMIT 1",
		strings.Join(cols, ", "), c.DB().Table(t.Target), strings.Join(where, " AND "), mapping.VersionColumn)
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("read latest row of %s %s: %w", t.Target, t.KeyString(keyRow), err)
	}
	if len(rows) == 0 {
		return nil, false, nil
	}
	return rows[0], true, nil
}

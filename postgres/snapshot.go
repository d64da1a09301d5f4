package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/mapping"
)

// Snapshot is a read-only repeatable-read transaction: every read in it
// sees the same snapshot of the database.
type Snapshot struct {
	tx pgx.Tx
}

// BeginSnapshot opens a snapshot transaction. With exported set, the
// transaction imports that snapshot (SET TRANSACTION SNAPSHOT), e.g. the one
// a replication slot's creation exported; otherwise the snapshot is taken
// by its first statement.
func (c *Conn) BeginSnapshot(ctx context.Context, exported string) (*Snapshot, error) {
	tx, err := c.pg.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", Describe(err, "", ""))
	}
	if exported != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(exported)); err != nil {
			tx.Rollback(context.Background())
			return nil, fmt.Errorf("use exported snapshot: %w", Describe(err, "", ""))
		}
	}
	return &Snapshot{tx: tx}, nil
}

// CurrentWAL returns the current WAL write position. As the first statement
// of a snapshot it is read after the snapshot was taken, so every change
// the snapshot sees committed below it.
func (s *Snapshot) CurrentWAL(ctx context.Context) (pglogrepl.LSN, error) {
	return currentWAL(ctx, s.tx)
}

// QueryRow runs a query that returns at most one row.
func (s *Snapshot) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return s.tx.QueryRow(ctx, sql, args...)
}

// Rows reads the named columns of table ("schema.name"), without the rows
// of its inheritance children, in text format,
// restricted by where (an SQL condition, or empty), and passes each row to
// fn as mapping values: NULL or text. vals is reused for the next row; fn
// must not keep it. An error from fn ends the read and is returned as is.
func (s *Snapshot) Rows(ctx context.Context, table string, cols []string, where string, fn func(vals []mapping.Value) error) error {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = QuoteIdent(c)
	}
	from := QuoteTable(table)
	var kind string
	if err := s.tx.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", from).Scan(&kind); err != nil {
		return fmt.Errorf("read table %s: %w", table, Describe(err, "", ""))
	}
	if kind != "p" {
		// The rows of a table with legacy inheritance children are its
		// own (see Partitions); a partitioned table's are its partitions'.
		from = "ONLY " + from
	}
	sql := fmt.Sprintf("SELECT %s FROM %s", strings.Join(names, ", "), from)
	if where != "" {
		sql += " WHERE " + where
	}
	rr := s.tx.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, nil)
	vals := make([]mapping.Value, len(cols))
	for rr.NextRow() {
		for i, v := range rr.Values() {
			if v == nil {
				vals[i] = mapping.Value{Kind: mapping.ValueNull}
			} else {
				vals[i] = mapping.Value{Kind: mapping.ValueText, Data: v}
			}
		}
		if err := fn(vals); err != nil {
			rr.Close()
			return err
		}
	}
	_, err := rr.Close()
	return err
}

// Commit ends the transaction.
func (s *Snapshot) Commit(ctx context.Context) error {
	if err := s.tx.Commit(ctx); err != nil {
		return fmt.Errorf("end snapshot: %w", Describe(err, "", ""))
	}
	return nil
}

// Close rolls the transaction back; after Commit it does nothing.
func (s *Snapshot) Close() { s.tx.Rollback(context.Background()) }

// Query runs a query in the snapshot; the caller closes the rows.
func (s *Snapshot) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return s.tx.Query(ctx, sql, args...)
}

package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TableOIDs returns the OID of each table ("schema.name"). A table that
// does not exist is an error naming it.
func (c *Conn) TableOIDs(ctx context.Context, tables []string) (map[string]uint32, error) {
	out := make(map[string]uint32, len(tables))
	for _, t := range tables {
		var oid uint32
		err := c.pg.QueryRow(ctx, "SELECT to_regclass($1)::oid", QuoteTable(t)).Scan(&oid)
		if err != nil || oid == 0 {
			if err == nil || errors.Is(err, pgx.ErrNoRows) {
				return nil, fmt.Errorf("table %s does not exist in Postgres (renamed or dropped?): "+
					"change its table block to the table's current name, or remove it", t)
			}
			return nil, fmt.Errorf("read table %s: %w", t, Describe(err, "", ""))
		}
		out[t] = oid
	}
	return out, nil
}

// Ancestor returns the table among of (OIDs) that relation relid is a
// partition of, at any depth; found is false when there is none. A child
// of legacy inheritance (INHERITS) is no partition: it is a table of its
// own, whose rows are not the parent's (see Partitions).
func (c *Conn) Ancestor(ctx context.Context, relid uint32, of []uint32) (ancestor uint32, found bool, err error) {
	err = c.pg.QueryRow(ctx, `WITH RECURSIVE up(relid) AS (
			SELECT $1::oid
			UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.relid
				JOIN pg_class c ON c.oid = up.relid AND c.relispartition)
		SELECT relid FROM up WHERE relid <> $1::oid AND relid = ANY($2::oid[]) LIMIT 1`, relid, of).Scan(&ancestor)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the parents of relation %d: %w", relid, Describe(err, "", ""))
	}
	return ancestor, true, nil
}

// Partitioned reports whether table ("schema.name") is a partitioned table.
func (c *Conn) Partitioned(ctx context.Context, table string) (bool, error) {
	var kind string
	if err := c.pg.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", QuoteTable(table)).Scan(&kind); err != nil {
		return false, fmt.Errorf("read table %s: %w", table, Describe(err, "", ""))
	}
	return kind == "p", nil
}

// Partitions returns the leaf partitions of a partitioned table, in the
// snapshot, as "schema.name"; a table that is not partitioned is its own
// only leaf. Only declarative partitions are followed: the children of a
// table with legacy inheritance (INHERITS) are tables of their own, which
// Postgres publishes under their own names, and the parent's rows are
// those of the parent alone (SELECT ... FROM ONLY).
func (s *Snapshot) Partitions(ctx context.Context, table string) ([]string, error) {
	rows, err := s.tx.Query(ctx, `WITH RECURSIVE down(relid) AS (
			SELECT $1::regclass::oid
			UNION SELECT i.inhrelid FROM pg_inherits i JOIN down ON i.inhparent = down.relid
				JOIN pg_class p ON p.oid = down.relid AND p.relkind = 'p')
		SELECT n.nspname || '.' || c.relname FROM down JOIN pg_class c ON c.oid = down.relid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind NOT IN ('p', 'I') ORDER BY c.oid`, QuoteTable(table))
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s: %w", table, Describe(err, "", ""))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read partitions of %s: %w", table, Describe(err, "", ""))
		}
		out = append(out, name)
	}
	return out, rows.Err()
}

// AddedDefault describes what the catalog says now about the rows that
// existed before a column was added.
type AddedDefault struct {
	// Gone is true when no column of that name exists now: it was dropped
	// or renamed since.
	Gone bool
	// Missing is true when Postgres stored one value for those rows (a
	// non-volatile default, PG 11+; on a partitioned table, in its
	// partitions): Value, nil for NULL. A rewrite of the table clears it
	// (each row then holds its own value), as does a column added without
	// a default (the rows read NULL).
	Missing bool
	Value   *string
	// Generated is true for a generated column: its values are computed
	// by Postgres, and the older rows hold theirs already (a stored
	// column the publication starts to send, or one added with a
	// rewrite).
	Generated bool
}

// AddedDefault reads what the rows older than column of relation relid
// read, as the catalog says now. Without a stored value the catalog cannot
// tell a column added without a default (NULL) from one whose value a
// later rewrite stored in every row: the caller tells them apart by the
// table's files (see Storage). The current default expression says
// nothing about those rows (SET DEFAULT changes it afterwards), so it is
// not read.
func (c *Conn) AddedDefault(ctx context.Context, relid uint32, column string) (AddedDefault, error) {
	var d AddedDefault
	var found bool
	err := c.pg.QueryRow(ctx, `WITH RECURSIVE down(relid) AS (
			SELECT $1::oid
			UNION SELECT i.inhrelid FROM pg_inherits i JOIN down ON i.inhparent = down.relid)
		SELECT coalesce(bool_or(a.attrelid = $1::oid), false), coalesce(bool_or(a.atthasmissing), false),
			(array_agg((a.attmissingval::text::text[])[1]) FILTER (WHERE a.atthasmissing))[1],
			coalesce(bool_or(a.attrelid = $1::oid AND a.attgenerated <> ''), false)
		FROM down JOIN pg_attribute a ON a.attrelid = down.relid AND a.attname = $2 AND NOT a.attisdropped`,
		relid, column).Scan(&found, &d.Missing, &d.Value, &d.Generated)
	if err != nil {
		return AddedDefault{}, fmt.Errorf("read the default of column %s of relation %d: %w", column, relid, Describe(err, "", ""))
	}
	if !found {
		return AddedDefault{Gone: true}, nil
	}
	return d, nil
}

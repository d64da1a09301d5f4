package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Storage identifies where a table keeps its values: the attribute number
// and type of each column, and the file of each relation that holds its
// rows (the table, or each leaf partition of a partitioned table).
// Postgres decodes no row changes for a table rewrite, so a rewrite that
// changed values (a type change with USING, a column dropped and added
// again under the same name) shows only here: the Relation message of the
// stream may look the same.
type Storage struct {
	// Columns are the live columns in attribute order.
	Columns []StoredColumn `json:"columns"`
	// Dropped holds the attribute numbers of dropped columns.
	Dropped []int16 `json:"dropped,omitempty"`
	// Files maps the OID of each relation holding rows to its file node
	// (pg_class.relfilenode), which every rewrite changes: VACUUM FULL,
	// CLUSTER, TRUNCATE, ALTER TABLE ... TYPE (unless Postgres proved the
	// stored bytes stay the same), a volatile ADD COLUMN default.
	Files map[uint32]uint32 `json:"files"`
	// Recopy, in a record, says why the daemon started to copy the table
	// again: until the copy completes and replaces the record, a daemon
	// started again starts it again.
	Recopy string `json:"recopy,omitempty"`
}

// StoredColumn is one live column of a Storage.
type StoredColumn struct {
	Name    string `json:"name"`
	Num     int16  `json:"num"`
	Type    uint32 `json:"type"`
	TypeMod int32  `json:"typmod"`
	// Generated marks a stored generated column: Postgres computes its
	// values, and the stream sends them only when the publication
	// publishes generated columns (see Conn.Columns).
	Generated bool `json:"generated,omitempty"`
	// Labels maps each label of the column's enum (an enum, an array of
	// one or a domain over one) by its pg_enum OID, which ALTER TYPE ...
	// RENAME VALUE keeps: a label renamed shows only here (no row change,
	// no Relation message), and the rows that carry it read differently
	// in Postgres from then on.
	Labels map[uint32]string `json:"labels,omitempty"`
}

// Column returns the live column named name; false when there is none.
func (s Storage) Column(name string) (StoredColumn, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return StoredColumn{}, false
}

// maxNum returns the highest attribute number s knows, live or dropped.
func (s Storage) maxNum() int16 {
	var m int16
	for _, c := range s.Columns {
		m = max(m, c.Num)
	}
	for _, n := range s.Dropped {
		m = max(m, n)
	}
	return m
}

// SameFiles reports whether no relation of before has another file now:
// no rewrite happened in between. A relation that is new (a partition
// created or attached) or gone (detached, dropped) is not a rewrite.
func (s Storage) SameFiles(before Storage) bool {
	return len(s.Rewritten(before)) == 0
}

// Rewritten returns the relations (OIDs) of before that have another file
// in s, in order.
func (s Storage) Rewritten(before Storage) []uint32 {
	var out []uint32
	for rel, file := range before.Files {
		if now, ok := s.Files[rel]; ok && now != file {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return out
}

// StorageDiff is what changed in a table's storage between a recorded
// Storage and the catalog now, as data: the daemon decides what to do.
type StorageDiff struct {
	// Moved names the columns of the record whose attribute number
	// changed: dropped and added again under the same name (or another
	// column renamed to it). Their old values are gone in Postgres.
	Moved []string
	// Reused names the columns added since the record whose attribute
	// number is above that of a column also added since and dropped
	// again: the dropped one may have had the same name, and rows written
	// with its values carry them under this name.
	Reused []string
	// Retyped names the columns whose type or type modifier changed.
	Retyped []string
	// Relabeled names the enum columns a label of which was renamed.
	Relabeled []string
	// Stored names the columns that were generated and now hold their
	// values as any column (ALTER COLUMN ... DROP EXPRESSION): a stream
	// that did not send them starts to, and ClickHouse lacks the older
	// rows' values.
	Stored []string
	// Rewritten holds the relations (OIDs) whose file changed.
	Rewritten []uint32
	// Joined holds the partitions (OIDs) attached or created since, and
	// Left those detached or dropped: the stream carries no change for the
	// rows an attached partition brings, nor for those a detached or
	// dropped one takes away.
	Joined, Left []uint32
	// Other reports any other difference (columns added or dropped): the
	// record is out of date, but no value is in doubt.
	Other bool
}

// Changed reports whether anything differs.
func (d StorageDiff) Changed() bool {
	return len(d.Moved)+len(d.Reused)+len(d.Retyped)+len(d.Relabeled)+len(d.Stored)+len(d.Rewritten)+len(d.Joined)+len(d.Left) > 0 ||
		d.Other
}

// DiffStorage compares the catalog now with a recorded Storage.
func DiffStorage(before, now Storage) StorageDiff {
	var d StorageDiff
	top := before.maxNum()
	// The lowest attribute added since before and dropped again: a column
	// added after it may carry its name.
	var droppedSince int16
	for _, n := range now.Dropped {
		if n > top && (droppedSince == 0 || n < droppedSince) {
			droppedSince = n
		}
	}
	for _, c := range now.Columns {
		old, ok := before.Column(c.Name)
		switch {
		case !ok:
			d.Other = true
			if droppedSince > 0 && c.Num > droppedSince {
				d.Reused = append(d.Reused, c.Name)
			}
		case old.Num != c.Num:
			d.Moved = append(d.Moved, c.Name)
		case old.Type != c.Type || old.TypeMod != c.TypeMod:
			d.Retyped = append(d.Retyped, c.Name)
		case old.Generated && !c.Generated:
			d.Stored = append(d.Stored, c.Name)
		case old.Generated != c.Generated:
			d.Other = true
		case relabeled(old.Labels, c.Labels):
			d.Relabeled = append(d.Relabeled, c.Name)
		case !maps.Equal(old.Labels, c.Labels):
			d.Other = true // labels added (or a record without them)
		}
	}
	for _, c := range before.Columns {
		if _, ok := now.Column(c.Name); !ok {
			d.Other = true
		}
	}
	if !slices.Equal(before.Dropped, now.Dropped) || !maps.Equal(before.Files, now.Files) {
		d.Other = true
	}
	d.Rewritten = now.Rewritten(before)
	for rel := range now.Files {
		if _, ok := before.Files[rel]; !ok {
			d.Joined = append(d.Joined, rel)
		}
	}
	for rel := range before.Files {
		if _, ok := now.Files[rel]; !ok {
			d.Left = append(d.Left, rel)
		}
	}
	slices.Sort(d.Joined)
	slices.Sort(d.Left)
	return d
}

// relabeled reports whether a label of before has another text now (a
// label never leaves an enum; a record of an earlier version has none).
func relabeled(before, now map[uint32]string) bool {
	for oid, label := range before {
		if l, ok := now[oid]; ok && l != label {
			return true
		}
	}
	return false
}

// querier runs a query on a connection or in a snapshot.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Storage reads the storage of table ("schema.name") from the catalog now.
func (c *Conn) Storage(ctx context.Context, table string) (Storage, error) {
	return readStorage(ctx, c.pg, table)
}

// Storage reads the storage of table ("schema.name") as the snapshot sees
// it: that of the rows a copy in the snapshot reads.
func (s *Snapshot) Storage(ctx context.Context, table string) (Storage, error) {
	return readStorage(ctx, s.tx, table)
}

// readStorage reads pg_attribute and pg_class with SQL (in a snapshot, the
// snapshot's catalog rows; pg_relation_filenode would read the current
// ones).
func readStorage(ctx context.Context, q querier, table string) (Storage, error) {
	fail := func(err error) (Storage, error) {
		return Storage{}, fmt.Errorf("read the storage of %s: %w", table, Describe(err, "", ""))
	}
	s := Storage{Files: map[uint32]uint32{}}
	// (A virtual generated column has no storage.)
	rows, err := q.Query(ctx, `SELECT a.attname, a.attnum, a.atttypid, a.atttypmod, a.attisdropped, a.attgenerated = 's'
		FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND (a.attisdropped OR a.attgenerated IN ('', 's'))
		ORDER BY a.attnum`, QuoteTable(table))
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var col StoredColumn
		var dropped bool
		if err := rows.Scan(&col.Name, &col.Num, &col.Type, &col.TypeMod, &dropped, &col.Generated); err != nil {
			rows.Close()
			return fail(err)
		}
		if dropped {
			s.Dropped = append(s.Dropped, col.Num)
		} else {
			s.Columns = append(s.Columns, col)
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	rows, err = q.Query(ctx, `SELECT a.attnum, e.oid, e.enumlabel::text FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN pg_enum e ON e.enumtypid IN (t.oid, t.typelem, t.typbasetype)
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, QuoteTable(table))
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var num int16
		var oid uint32
		var label string
		if err := rows.Scan(&num, &oid, &label); err != nil {
			rows.Close()
			return fail(err)
		}
		for i := range s.Columns {
			if c := &s.Columns[i]; c.Num == num {
				if c.Labels == nil {
					c.Labels = map[uint32]string{}
				}
				c.Labels[oid] = label
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	rows, err = q.Query(ctx, `WITH RECURSIVE down(relid) AS (
			SELECT $1::regclass::oid
			UNION SELECT i.inhrelid FROM pg_inherits i JOIN down ON i.inhparent = down.relid)
		SELECT c.oid, c.relfilenode FROM down JOIN pg_class c ON c.oid = down.relid
		WHERE c.relkind NOT IN ('p', 'I')`, QuoteTable(table))
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var rel, file uint32
		if err := rows.Scan(&rel, &file); err != nil {
			rows.Close()
			return fail(err)
		}
		s.Files[rel] = file
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return s, nil
}

package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// Schema is the column list of a ClickHouse table, as DESCRIBE shows it,
// and its keys as system.tables shows them (of the local tables on a
// cluster).
type Schema struct {
	Names, Types []string
	// SortingKey and PartitionKey are the table's keys as ClickHouse
	// renders them ("author_id, created_at, id"; "toYYYYMM(created_at)").
	SortingKey, PartitionKey string
}

// KeyColumn reports whether column is in the table's sorting or partition
// key, whose columns ClickHouse cannot ALTER.
func (s Schema) KeyColumn(column string) bool {
	return ddl.Mentions(s.SortingKey, column) || ddl.Mentions(s.PartitionKey, column)
}

// Exists reports whether the table exists (a table has columns).
func (s Schema) Exists() bool { return len(s.Names) > 0 }

// Schema reads the columns of a table of the target database; the zero
// Schema when the table does not exist.
func (c *Client) Schema(ctx context.Context, table string) (Schema, error) {
	keysOf := table
	if c.DB().Cluster != "" && table != ddl.ChunkTable {
		keysOf = ddl.LocalName(table)
	}
	keys, err := c.Query(ctx, "SELECT name, sorting_key, partition_key FROM system.tables WHERE database = ? AND name IN (?, ?)",
		c.database, table, keysOf)
	if err != nil {
		return Schema{}, err
	}
	var s Schema
	found := false
	for _, r := range keys {
		if r[0].(string) == table {
			found = true
		}
		if r[0].(string) == keysOf {
			s.SortingKey, s.PartitionKey = r[1].(string), r[2].(string)
		}
	}
	if !found {
		return Schema{}, nil
	}
	rows, err := c.Query(ctx, "DESCRIBE TABLE "+c.DB().Table(table))
	var exc *clickhouse.Exception
	if errors.As(err, &exc) && proto.Error(exc.Code) == proto.ErrUnknownTable {
		return Schema{}, nil // dropped or renamed since (a resync's swap)
	}
	if err != nil {
		return Schema{}, err
	}
	for _, r := range rows {
		s.Names = append(s.Names, r[0].(string))
		s.Types = append(s.Types, r[1].(string))
	}
	return s, nil
}

// Existing returns which of the named tables (or views) exist in the
// target database, in one query.
func (c *Client) Existing(ctx context.Context, names ...string) (map[string]bool, error) {
	rows, err := c.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND has(?, name)", c.database, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(rows))
	for _, r := range rows {
		out[r[0].(string)] = true
	}
	return out, nil
}

// DropOutdatedView drops view when it exists and its definition does not
// name mark, so that the caller makes it again as this version defines it
// (a committed view of an earlier version lacks a new copy's rows while
// the checkpoint is held for it). A server whose system.tables has no
// create_table_query keeps its views.
func (c *Client) DropOutdatedView(ctx context.Context, view, mark string) error {
	has, err := c.Query(ctx, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'tables' AND name = 'create_table_query'")
	if err != nil || has[0][0].(uint64) == 0 {
		return err
	}
	rows, err := c.queryMetadata(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", c.database, view)
	if err != nil || len(rows) == 0 || strings.Contains(rows[0][0].(string), mark) {
		return err
	}
	return c.Exec(ctx, c.DB().Drop(view))
}

// metaTypes are the types of the meta columns.
var metaTypes = map[string]string{mapping.VersionColumn: "UInt64", mapping.DeletedColumn: "UInt8", mapping.SeqColumn: "UInt64"}

// ErrNoSeq marks a target created by an earlier version of the replicator,
// before the _seq column existed: `replicator setup` adds it.
var ErrNoSeq = errors.New("no column " + mapping.SeqColumn)

// Check verifies that the table takes the rows the mapping t writes: every
// mapped column exists with the mapped type (columns the mapping does not
// write, e.g. dropped in Postgres, are filled by ClickHouse). A target
// that lacks only _seq is an error that wraps ErrNoSeq.
func (s Schema) Check(t *mapping.Table) error {
	d := s.Diff(t)
	switch {
	case len(d.Added) > 0:
		names := make([]string, len(d.Added))
		for i, c := range d.Added {
			names[i] = c.Name
		}
		return fmt.Errorf("ClickHouse table %s lacks columns %v that the mapping writes (it has %v)", t.Target, names, s.Names)
	case len(d.Retyped) > 0:
		r := d.Retyped[0]
		if r.Have == "" {
			return fmt.Errorf("ClickHouse table %s lacks column %s (%s) (it has %v)", t.Target, r.Column.Name, r.Column.Type, s.Names)
		}
		return fmt.Errorf("ClickHouse column %s.%s is %s, the mapping writes %s", t.Target, r.Column.Name, r.Have, r.Column.Type)
	case d.NoSeq:
		return fmt.Errorf("ClickHouse table %s was created by an earlier version and has %w: run `replicator setup`, which adds it", t.Target, ErrNoSeq)
	}
	return nil
}

// EnumsGrown returns the Enum columns of t whose type adds labels to the
// table's (labels added to the Postgres type since the table was made or
// last altered; see mapping.Table.Adopt): ALTER TABLE ... MODIFY COLUMN
// adds them, on key columns too.
func (s Schema) EnumsGrown(t *mapping.Table) []mapping.Column {
	var out []mapping.Column
	for _, r := range s.Diff(t).Retyped {
		have, err := mapping.ParseType(r.Have)
		if err == nil && r.Column.Type.AddsLabels(have) {
			out = append(out, r.Column)
		}
	}
	return out
}

// EnumsRenamed describes the Enum columns of the table with labels that
// t's Postgres enums lack: renamed since (ALTER TYPE ... RENAME VALUE), so
// that the rows carrying them read differently in Postgres.
func (s Schema) EnumsRenamed(t *mapping.Table) []string {
	var out []string
	for i, n := range s.Names {
		if i >= len(s.Types) {
			break
		}
		have, err := mapping.ParseType(s.Types[i])
		if j := t.ColumnIndex(n); err == nil && j >= 0 {
			if renamed := t.EnumRenamed(j, have); len(renamed) > 0 {
				out = append(out, fmt.Sprintf("column %s: labels %s renamed", n, strings.Join(renamed, ", ")))
			}
		}
	}
	return out
}

// CheckKeys verifies that the table is sorted and partitioned as t says
// (the configuration's order_by and partition_by), comparing the keys as
// ClickHouse renders them without spaces and quotes. A table whose keys
// are unknown (a view) passes. The keys of a table cannot change: a new
// key takes a new copy into a new table, which resync makes.
func (s Schema) CheckKeys(t mapping.TableSpec) error {
	if !s.Exists() {
		return nil
	}
	history := t.Mode == mapping.ModeHistory
	if slices.Contains(s.Names, mapping.OpColumn) != history {
		have, want := "the latest state of each row", "mode = \"history\""
		if !history {
			have, want = "every change (history)", "mode = \"latest\""
		}
		return fmt.Errorf("ClickHouse table %s keeps %s, but the configuration of %s says %s: "+
			"run `replicator resync --config FILE --table %s` to copy the table into a new one, or set mode back",
			t.Target, have, t.Source, want, t.Source)
	}
	if s.SortingKey == "" {
		return nil
	}
	quoted := make([]string, len(t.OrderBy))
	for i, k := range t.OrderBy {
		quoted[i] = ddl.Quote(k)
	}
	if history {
		quoted = append(quoted, ddl.Quote(mapping.VersionColumn), ddl.Quote(mapping.SeqColumn))
	}
	if sameKey(s.SortingKey, strings.Join(quoted, ", ")) && sameKey(s.PartitionKey, t.PartitionBy) {
		return nil
	}
	have := "ORDER BY (" + s.SortingKey + ")"
	if s.PartitionKey != "" {
		have = "PARTITION BY " + s.PartitionKey + " " + have
	}
	want := "ORDER BY (" + strings.Join(t.OrderBy, ", ") + ")"
	if t.PartitionBy != "" {
		want = "PARTITION BY " + t.PartitionBy + " " + want
	}
	return fmt.Errorf("ClickHouse table %s is %s, but the configuration of %s says %s: a table's keys cannot change; "+
		"run `replicator resync --config FILE --table %s` to copy the table into a new one with the configured keys, "+
		"or set order_by and partition_by back", t.Target, have, t.Source, want, t.Source)
}

// sameKey compares two renderings of a key expression without spaces and
// identifier quotes.
func sameKey(a, b string) bool {
	norm := strings.NewReplacer(" ", "", "`", "", `"`, "")
	return norm.Replace(a) == norm.Replace(b)
}

// sameType reports whether a type as ClickHouse prints it is t (an Enum's
// labels may be escaped otherwise than Type.String escapes them).
func sameType(have string, t mapping.Type) bool {
	if have == t.String() {
		return true
	}
	parsed, err := mapping.ParseType(have)
	return err == nil && parsed == t
}

// Adopt makes t write, in each column whose type in the table is the one
// an earlier version mapped it to by default, that type (see
// mapping.Table.Adopt).
func (s Schema) Adopt(t *mapping.Table, caps mapping.Caps) {
	for i, n := range s.Names {
		if i >= len(s.Types) {
			break
		}
		if have, err := mapping.ParseType(s.Types[i]); err == nil {
			t.Adopt(n, have, caps)
		}
	}
}

// Diff is how the columns a mapping writes differ from a ClickHouse table:
// a schema change of the source, as a value.
type Diff struct {
	// Added are mapped columns the table lacks (ADD COLUMN in Postgres).
	Added []mapping.Column
	// Missing are table columns the mapping does not write (a column
	// dropped in Postgres, or added after the transaction being replayed):
	// ClickHouse fills them with their defaults.
	Missing []string
	// Retyped are columns in both whose types differ.
	Retyped []Retype
	// NoSeq is a target of an earlier version, without _seq.
	NoSeq bool
}

// Retype is a column whose mapped type differs from the table's.
type Retype struct {
	Column mapping.Column
	// Have is the table's type.
	Have string
}

// Empty reports whether the table takes the mapping's rows as they are.
func (d Diff) Empty() bool {
	return len(d.Added) == 0 && len(d.Missing) == 0 && len(d.Retyped) == 0 && !d.NoSeq
}

// Diff compares the columns t writes with the table's, by name.
func (s Schema) Diff(t *mapping.Table) Diff {
	var d Diff
	have := make(map[string]string, len(s.Names))
	for i, n := range s.Names {
		have[n] = ""
		if i < len(s.Types) {
			have[n] = s.Types[i]
		}
	}
	mapped := make(map[string]bool, len(t.Columns))
	for _, c := range t.Columns {
		mapped[c.Name] = true
		typ, ok := have[c.Name]
		switch {
		case !ok:
			d.Added = append(d.Added, c)
		case typ != "" && !sameType(typ, c.Type):
			d.Retyped = append(d.Retyped, Retype{Column: c, Have: typ})
		}
	}
	for _, n := range mapping.MetaColumns {
		if typ, ok := have[n]; !ok && n == mapping.SeqColumn {
			d.NoSeq = true
		} else if !ok || typ != "" && typ != metaTypes[n] {
			want, _ := mapping.ParseType(metaTypes[n])
			d.Retyped = append(d.Retyped, Retype{Column: mapping.Column{Name: n, Type: want}, Have: typ})
		}
		mapped[n] = true
	}
	if t.History {
		mapped[mapping.OpColumn] = true
	}
	for _, n := range s.Names {
		if !mapped[n] {
			d.Missing = append(d.Missing, n)
		}
	}
	return d
}

// EngineDeletes reports whether the engine of a table of the target
// database keeps tombstones itself: ReplacingMergeTree(_version, _deleted)
// (mapping.Storage.EngineDeletes). ClickHouse renders engine_full from the
// metadata files of the database's tables, and fails when a table is
// renamed meanwhile (a resync's swap): it is read apart from Schema, and
// again after such a failure.
func (c *Client) EngineDeletes(ctx context.Context, table string) (bool, error) {
	rows, err := c.queryMetadata(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", c.database, table)
	if err != nil || len(rows) == 0 {
		return false, err
	}
	return engineDeletes(rows[0][0].(string)), nil
}

// queryMetadata runs a query of the columns of system.tables that
// ClickHouse renders from the tables' metadata files (engine_full,
// create_table_query), again when a table was renamed meanwhile.
func (c *Client) queryMetadata(ctx context.Context, sql string, args ...any) ([][]any, error) {
	for attempt := 1; ; attempt++ {
		rows, err := c.Query(ctx, sql, args...)
		var exc *clickhouse.Exception
		if !errors.As(err, &exc) || proto.Error(exc.Code) != proto.ErrUnknownTable || attempt == 5 {
			return rows, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// engineDeletes reports whether a table's engine (system.tables.engine_full)
// is a ReplacingMergeTree whose last argument is the deleted column.
func engineDeletes(engineFull string) bool {
	name, rest, ok := strings.Cut(engineFull, "(")
	if !ok || !strings.HasSuffix(name, "ReplacingMergeTree") {
		return false
	}
	args, _, _ := strings.Cut(rest, ")")
	parts := strings.Split(args, ",")
	return strings.Trim(strings.TrimSpace(parts[len(parts)-1]), "`") == mapping.DeletedColumn
}

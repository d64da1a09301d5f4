package mapping

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Transform is a function applied to a source value before it is stored.
type Transform string

// Supported transforms.
const (
	TransformNone Transform = ""
	// TransformXXHash64 stores the xxHash64 of the value's raw bytes (bytea
	// is hashed after hex decoding; other types hash their text form).
	TransformXXHash64 Transform = "xxhash64"
)

// ColumnSpec is what the configuration says about one column.
type ColumnSpec struct {
	// Name is the ClickHouse column name; empty means the Postgres name.
	Name string
	// Type is the ClickHouse type; empty means the default for the source type.
	Type      string
	Transform Transform
	// Nullable keeps SQL NULL as NULL instead of the type's default.
	Nullable bool
	// Invalid is what a value the type cannot hold becomes: InvalidError
	// (or empty), InvalidDefault or InvalidClamp.
	Invalid string
}

// TableSpec is what the configuration says about one replicated table.
type TableSpec struct {
	// Source is the qualified Postgres name, "schema.table".
	Source string
	// Target is the ClickHouse table name.
	Target string
	// OrderBy names ClickHouse columns; PartitionBy is a ClickHouse
	// expression over them.
	OrderBy     []string
	PartitionBy string
	// Columns are keyed by Postgres column name.
	Columns map[string]ColumnSpec
	// Exclude names Postgres columns that are not replicated.
	Exclude []string
	// Storage is how ClickHouse stores and indexes the target beyond its
	// keys.
	Storage Storage
	// Mode is ModeLatest (or empty) or ModeHistory.
	Mode string
	// Ignore names the kinds of changes not written: IgnoreDelete,
	// IgnoreTruncate.
	Ignore []string
	// UniqueKey names order_by columns whose values the user says are
	// unique in Postgres by themselves, although the replica identity has
	// more columns (see CheckUnique).
	UniqueKey []string
}

// Table modes: the latest state of each row, or every change as its own row.
const (
	ModeLatest  = "latest"
	ModeHistory = "history"
)

// Kinds of changes a table may ignore.
const (
	IgnoreDelete   = "delete"
	IgnoreTruncate = "truncate"
)

// OpColumn is the column of a history table that says what a change did:
// Op values, or "snapshot" for a row of a copy (the column's default).
const OpColumn = "_op"

// Op is what a change did to a row, as a history table's OpColumn holds it.
type Op string

// Ops of a history table's changes.
const (
	OpInsert Op = "insert"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// Storage is the part of a target's ClickHouse definition that changes
// neither its rows nor where they live: data skipping indexes,
// projections, a TTL.
type Storage struct {
	Indexes     []Index
	Projections []Projection
	// TTL is a ClickHouse TTL expression for the table's rows.
	TTL string
	// EngineDeletes makes the target ReplacingMergeTree(_version,
	// _deleted) (ClickHouse 23.2+), whose FINAL leaves tombstones out by
	// itself; every reader of the replicator filters _deleted either way.
	EngineDeletes bool
}

// Index is a data skipping index.
type Index struct {
	Name, Expression, Type string
	Granularity            int
}

// Projection is a projection: Query is its SELECT (e.g. "SELECT * ORDER BY author_id, created_at").
type Projection struct {
	Name, Query string
}

// SourceColumn is a Postgres column as the catalog or a pgoutput Relation
// message describes it.
type SourceColumn struct {
	Name    string
	TypeOID uint32
	// TypeMod is the type modifier (atttypmod; -1: none), Elem the element
	// type of an array of a type a user created, and Enum marks an enum
	// (or an array of one), as the catalog tells (see Source).
	TypeMod int32
	Elem    uint32
	Enum    bool
	// Labels are an enum's labels in sort order (pg_enum), as the catalog
	// tells.
	Labels []string
	// Hstore marks an hstore (or an array of one), as the catalog tells
	// (pg_type.typname).
	Hstore bool
	// Identity marks a column of the replica identity, which a delete carries.
	Identity bool
}

// Source returns what the mapping knows of the column's type.
func (sc SourceColumn) Source() Source {
	return Source{OID: sc.TypeOID, Mod: sc.TypeMod, Elem: sc.Elem, Enum: sc.Enum, Labels: sc.Labels, Hstore: sc.Hstore}
}

// Caps are the features of the target ClickHouse server that change the mapping.
type Caps struct {
	// DateTime64 is true for servers >= 20.1, Bool for >= 21.12, Date32
	// (1900..2299) for >= 22.8, Map for >= 21.8 (no longer
	// experimental), JSON for >= 25.3 (production ready).
	DateTime64 bool
	Bool       bool
	Date32     bool
	Map        bool
	JSON       bool
	// Server is the server's version, major and minor; the years a
	// DateTime64 holds depend on it (see DateTime64Years). Zero: a
	// server of 22.8 or later.
	Server [2]int
}

// DateTime64Years returns the first and last year whose every second a
// DateTime64 holds on a ClickHouse server of version major.minor (0.0: a
// server of 22.8 or later). ClickHouse clamps or garbles a value outside
// them without an error, so the mapping checks them itself:
//
//   - 20.1 (the first DateTime64) to 21.3: the range of the date lookup
//     table, 1970 to 2105;
//   - 21.4 (ClickHouse#9404, "extended range of DateTime64"): 1925-01-01
//     to 2283-11-11;
//   - 22.8 (ClickHouse#39425): 1900 to 2299;
//   - ClickHouse#107907 (merged 2026-07-13) takes the range to 0000..9999;
//     it is counted from 26.8, the first release sure to hold it.
//
// The last year of 21.4..22.7 ends on November 11 (see dateTime64Bounds).
func DateTime64Years(major, minor int) (first, last int) {
	atLeast := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	switch {
	case major == 0 && minor == 0:
		return 1900, 2299
	case atLeast(26, 8):
		return 0, 9999
	case atLeast(22, 8):
		return 1900, 2299
	case atLeast(21, 4):
		return 1925, 2283
	}
	return 1970, 2105
}

// dateTime64Bounds returns the first and last Unix second a DateTime64 of
// the given precision holds on the server: the server's years, within
// what its Int64 of 10^-precision ticks holds (1677..2262 at precision 9).
func (c Caps) dateTime64Bounds(precision int) (lo, hi int64) {
	first, last := DateTime64Years(c.Server[0], c.Server[1])
	lo = time.Date(first, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi = time.Date(last+1, 1, 1, 0, 0, 0, 0, time.UTC).Unix() - 1
	if last == 2283 {
		hi = time.Date(2283, 11, 11, 23, 59, 59, 0, time.UTC).Unix()
	}
	if precision >= 0 && precision <= 18 {
		scale := int64(math.Pow10(precision))
		// Every fraction of the last second fits too.
		lo = max(lo, math.MinInt64/scale)
		hi = min(hi, (math.MaxInt64-(scale-1))/scale)
	}
	return lo, hi
}

// Column is one resolved target column.
type Column struct {
	// Name is the ClickHouse name, Source the Postgres name.
	Name      string
	Source    string
	Type      Type
	Transform Transform
	SourceOID uint32
	// Src is the column's Postgres type as the mapping knows it.
	Src  Source
	conv converter
	zero any
	// spec is the column's configuration.
	spec ColumnSpec
	// pos is the column's position in the source tuple.
	pos int
	// invalid counts the values stored by spec.Invalid (nil: "error").
	invalid *invalidCount
	// caps are those of the server the column is written to.
	caps Caps
}

// Table is the resolved mapping of one Postgres table to one ClickHouse table.
// Its columns are in the source table's column order, without the
// excluded ones.
type Table struct {
	Source      string
	Target      string
	Columns     []Column
	OrderBy     []string
	PartitionBy string
	Storage     Storage
	// History makes the target keep every change as its own row, with
	// OpColumn (see ModeHistory); rows of one key are found by Ident.
	History bool
	// IgnoreDelete and IgnoreTruncate skip deletes and truncations.
	IgnoreDelete, IgnoreTruncate bool
	// UniqueKey is TableSpec.UniqueKey.
	UniqueKey []string
	// Key holds the indexes of the ORDER BY columns in Columns.
	Key []int
	// partKey holds the indexes of the partition columns not in Key.
	partKey []int
	// identity marks the columns carried by a delete's old tuple.
	identity []bool
	// ident holds the indexes of the columns that identify a row, in
	// sorting key order: the replica identity when the keys use other
	// columns (see Placed), else Key. Earlier images of a row are looked
	// up by them.
	ident []int
	// placed holds the indexes of the sorting and partition key columns
	// outside the replica identity (see Placed).
	placed []int
	// width is the number of columns of a source tuple.
	width int
	// full is true under REPLICA IDENTITY FULL: every column is marked.
	full bool
}

// Resolve builds the mapping of spec for a source table with columns src.
func Resolve(spec TableSpec, src []SourceColumn, caps Caps) (*Table, error) {
	t := &Table{Source: spec.Source, Target: spec.Target, OrderBy: spec.OrderBy, PartitionBy: spec.PartitionBy, Storage: spec.Storage,
		History: spec.Mode == ModeHistory, IgnoreDelete: slices.Contains(spec.Ignore, IgnoreDelete),
		IgnoreTruncate: slices.Contains(spec.Ignore, IgnoreTruncate), width: len(src), UniqueKey: spec.UniqueKey}
	full := true // REPLICA IDENTITY FULL: every column is marked
	for _, sc := range src {
		full = full && sc.Identity
	}
	t.full = full
	byName := make(map[string]int, len(src))
	sourceNames := make(map[string]string, len(src))
	for pos, sc := range src {
		sourceNames[sc.Name] = ""
		if slices.Contains(spec.Exclude, sc.Name) {
			if sc.Identity && !full {
				return nil, fmt.Errorf("table %s: column %q is part of the replica identity, which finds the rows that updates and deletes change: "+
					"it cannot be excluded", spec.Source, sc.Name)
			}
			continue
		}
		cs := spec.Columns[sc.Name]
		name := sc.Name
		if cs.Name != "" {
			name = cs.Name
			sourceNames[sc.Name] = name
		}
		if strings.HasPrefix(name, "_") && (contains(MetaColumns, name) || name == OpColumn) {
			return nil, fmt.Errorf("table %s: column %q collides with the replicator's own column; rename it with name = \"...\"", spec.Source, name)
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("table %s: two columns are named %q in ClickHouse", spec.Source, name)
		}
		src := sc.Source()
		typ, err := targetType(src, cs, caps)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", spec.Source, sc.Name, err)
		}
		var count *invalidCount
		if cs.Invalid != "" && cs.Invalid != InvalidError {
			count = new(invalidCount)
		}
		conv, err := newPolicyConverter(src, typ, cs.Transform, cs.Invalid, count, caps)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", spec.Source, sc.Name, err)
		}
		byName[name] = len(t.Columns)
		t.Columns = append(t.Columns, Column{
			Name: name, Source: sc.Name, Type: typ, Transform: cs.Transform, SourceOID: sc.TypeOID, Src: src, spec: cs,
			conv: conv, zero: zeroValue(typ), invalid: count, pos: pos, caps: caps,
		})
		t.identity = append(t.identity, sc.Identity)
	}
	for name := range spec.Columns {
		if _, ok := sourceNames[name]; !ok {
			return nil, fmt.Errorf("table %s: configured column %q does not exist in Postgres", spec.Source, name)
		}
		if slices.Contains(spec.Exclude, name) {
			return nil, fmt.Errorf("table %s: column %q is both configured and excluded", spec.Source, name)
		}
	}
	// (An excluded column that Postgres no longer has is no error: a
	// schema change of an excluded column is ignored.)
	keyColumn := func(key, name string) (int, error) {
		i, ok := byName[name]
		switch {
		case ok:
			return i, nil
		case slices.Contains(spec.Exclude, name):
			return 0, fmt.Errorf("table %s: %s column %q is excluded", spec.Source, key, name)
		case sourceNames[name] != "":
			return 0, fmt.Errorf("table %s: %s names ClickHouse columns: %q is named %q there", spec.Source, key, name, sourceNames[name])
		}
		return 0, fmt.Errorf("table %s: %s column %q does not exist in Postgres", spec.Source, key, name)
	}
	if len(spec.OrderBy) == 0 {
		return nil, fmt.Errorf("table %s: order_by is empty", spec.Source)
	}
	for _, name := range spec.OrderBy {
		i, err := keyColumn("order_by", name)
		if err != nil {
			return nil, err
		}
		if t.Columns[i].Type.Nullable {
			return nil, fmt.Errorf("table %s: order_by column %q cannot be nullable", spec.Source, name)
		}
		if k := t.Columns[i].Type.Kind; k == KindMap || k == KindJSON {
			return nil, fmt.Errorf("table %s: order_by column %q is %s, which cannot be in a sorting key", spec.Source, name, t.Columns[i].Type)
		}
		t.Key = append(t.Key, i)
	}
	for _, id := range identifiers(t.PartitionBy) {
		if t.ColumnIndex(id) < 0 && (slices.Contains(spec.Exclude, id) || sourceNames[id] != "") {
			if _, err := keyColumn("partition_by", id); err != nil {
				return nil, err
			}
		}
	}
	if err := t.checkPartitionNullable(); err != nil {
		return nil, err
	}
	for _, name := range t.PartitionColumns() {
		if i := t.ColumnIndex(name); !slices.Contains(t.Key, i) {
			t.partKey = append(t.partKey, i)
		}
	}
	for _, id := range identifiers(spec.Storage.TTL) {
		if i := t.ColumnIndex(id); i >= 0 && !slices.Contains(t.Key, i) && !slices.Contains(t.partKey, i) {
			return nil, fmt.Errorf("table %s: ttl uses column %q, which a delete's tombstone does not carry: the tombstone would expire "+
				"before the row it deletes, which would be visible again; use only order_by and partition_by columns in ttl", spec.Source, id)
		}
	}
	t.ident = t.Key
	for _, i := range append(slices.Clone(t.Key), t.partKey...) {
		if !t.identity[i] {
			t.placed = append(t.placed, i)
		}
	}
	if len(t.placed) > 0 && t.identityInKey() {
		t.ident = nil
		for _, i := range t.Key {
			if t.identity[i] {
				t.ident = append(t.ident, i)
			}
		}
	} else if len(t.placed) > 0 && t.History && !full {
		// A history table keeps a row per change at any key: its rows
		// are found by the replica identity alone.
		t.ident, t.placed = nil, nil
		for i, id := range t.identity {
			if id {
				t.ident = append(t.ident, i)
			}
		}
	}
	if t.History {
		t.placed = nil // every change is its own row: nothing to delete at an old place
	}
	return t, nil
}

// identityInKey reports whether the sorting key holds every replica
// identity column, so that one sorting key is one row.
func (t *Table) identityInKey() bool {
	n := 0
	for i, id := range t.identity {
		if id {
			n++
			if !slices.Contains(t.Key, i) {
				return false
			}
		}
	}
	return n > 0
}

// Placed reports whether the sorting or partition key uses columns
// outside the replica identity, which a delete, and an update that keeps
// the identity, do not carry: the tombstone of such a change takes them
// from the row's latest image, and an update that changes them writes a
// tombstone at the row's old place (see Ident, TakePlacement).
func (t *Table) Placed() bool { return len(t.placed) > 0 }

// Ident returns the indexes of the columns that identify a row, in
// sorting key order (Key unless Placed).
func (t *Table) Ident() []int { return t.ident }

// IdentString is the identifying columns of a mapped row (see Ident) in
// the compact form of Placement's keys.
func (t *Table) IdentString(row []any) string { return string(t.appendKey(nil, t.ident, row)) }

// IdentText renders the identity of a mapped row as name=value pairs, for
// messages (IdentString is a compact binary form).
func (t *Table) IdentText(row []any) string { return t.render(t.ident, row) }

// TakePlacement copies into the tombstone dst the sorting and partition
// key values outside the replica identity from image, a row of the same
// identity.
func (t *Table) TakePlacement(dst, image []any) {
	for _, i := range t.placed {
		dst[i] = image[i]
	}
}

// PlacedColumns returns the indexes of the sorting and partition key
// columns outside the replica identity (see Placed).
func (t *Table) PlacedColumns() []int { return t.placed }

// CheckIdentity verifies that the table's changes can be placed. A delete
// carries only the replica identity, and ReplacingMergeTree collapses rows
// only within one partition and sorting key, so a tombstone must land where
// the row it deletes lives: either every sorting and partition key column
// is part of the replica identity, or the sorting key holds the whole
// replica identity (one sorting key is one row) and the other key values
// come from the row's latest image (see Placed).
func (t *Table) CheckIdentity() error {
	if len(t.ident) == 0 {
		return fmt.Errorf("table %s has no replica identity columns to find its rows by: add a primary key, "+
			"or set REPLICA IDENTITY FULL on the Postgres table", t.Source)
	}
	if len(t.placed) == 0 || t.identityInKey() || t.History {
		return t.CheckUnique()
	}
	var ident, keys []string
	for i, id := range t.identity {
		if id && !slices.Contains(t.Key, i) {
			ident = append(ident, t.Columns[i].Name)
		}
	}
	for _, i := range t.placed {
		keys = append(keys, t.Columns[i].Name)
	}
	if len(ident) == 0 {
		return fmt.Errorf("table %s: order_by/partition_by use %s, which a delete does not carry, and the table has no replica identity "+
			"columns to find the deleted row by: add a primary key, or set REPLICA IDENTITY FULL on the Postgres table",
			t.Source, strings.Join(keys, ", "))
	}
	return fmt.Errorf("table %s: order_by must hold the replica identity column(s) %s: order_by/partition_by use %s, "+
		"which a delete does not carry, so a delete finds its row by the replica identity, and one sorting key must be one row; "+
		"add %s to order_by, or set REPLICA IDENTITY FULL on the Postgres table",
		t.Source, strings.Join(ident, ", "), strings.Join(keys, ", "), strings.Join(ident, ", "))
}

// CheckUnique verifies that one sorting and partition key is one
// Postgres row. When every key column is part of the replica identity but
// the identity has more columns (PK (id, created_at), order_by = ["id"],
// partitioned by month), two rows that differ only in those columns
// collapse into one ClickHouse row, unless the key columns are unique by
// themselves, which only the user knows: UniqueKey says so. A partition
// column counts only when partition_by holds it whole (the column, or an
// element of a tuple): a partition by an expression of it (a month) holds
// rows that differ in it. Under REPLICA
// IDENTITY FULL the identity names no key, and the sorting key is taken to
// identify a row; a history table keeps every change as its own row.
func (t *Table) CheckUnique() error {
	if t.full || t.History || len(t.placed) > 0 || len(t.UniqueKey) > 0 {
		return nil
	}
	var missing, keys []string
	whole := wholeColumns(t.PartitionBy)
	for i, id := range t.identity {
		if id && !slices.Contains(t.Key, i) && !slices.Contains(whole, t.Columns[i].Name) {
			missing = append(missing, t.Columns[i].Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	for _, i := range t.Key {
		keys = append(keys, strconv.Quote(t.Columns[i].Name))
	}
	return fmt.Errorf("table %s: order_by does not hold the replica identity column(s) %s, so two Postgres rows "+
		"that differ only there would be one ClickHouse row: add %s to order_by, or, if the order_by columns are unique by "+
		"themselves in Postgres, say so with unique_key = [%s] in the table's block",
		t.Source, strings.Join(missing, ", "), strings.Join(missing, ", "), strings.Join(keys, ", "))
}

// ColumnNames returns the target column names, followed by the meta
// columns _version, _deleted and _seq.
func (t *Table) ColumnNames() []string {
	return append(t.MappedNames(), MetaColumns...)
}

// WriteNames returns the columns of the rows the stream writes: those of
// ColumnNames, then, for a history table, OpColumn.
func (t *Table) WriteNames() []string {
	if t.History {
		return append(t.ColumnNames(), OpColumn)
	}
	return t.ColumnNames()
}

// SetOp sets the OpColumn of a history table's row (see NewRow).
func (t *Table) SetOp(row []any, op Op) { row[len(t.Columns)+len(MetaColumns)] = string(op) }

// MappedNames returns the target column names without the meta columns.
func (t *Table) MappedNames() []string {
	names := make([]string, len(t.Columns), len(t.Columns)+len(MetaColumns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// NewRow returns a row of t: the mapped columns, then the meta columns.
// A history table's row ends with OpColumn.
func (t *Table) NewRow() []any {
	if t.History {
		return make([]any, len(t.Columns)+len(MetaColumns)+1)
	}
	return make([]any, len(t.Columns)+len(MetaColumns))
}

// SetMeta sets the meta columns of a row of t.
func (t *Table) SetMeta(row []any, version uint64, deleted bool, seq uint64) {
	n := len(t.Columns)
	var d uint8
	if deleted {
		d = 1
	}
	row[n], row[n+1], row[n+2] = version, d, seq
}

// IsTombstone reports whether a row of t is a tombstone.
func (t *Table) IsTombstone(row []any) bool {
	_, deleted, _ := t.Meta(row)
	return deleted
}

// Meta returns the meta columns of a row of t, as written or as read back
// from ClickHouse.
func (t *Table) Meta(row []any) (version uint64, deleted bool, seq uint64) {
	n := len(t.Columns)
	return row[n].(uint64), row[n+1].(uint8) == 1, row[n+2].(uint64)
}

// PartitionColumns returns the column names that the partition expression refers to.
func (t *Table) PartitionColumns() []string {
	var out []string
	for _, id := range identifiers(t.PartitionBy) {
		if t.ColumnIndex(id) >= 0 && !contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// Retype makes column i write values of typ, a type that widens its own:
// rows of a transaction replayed after its target column was widened.
func (t *Table) Retype(i int, typ Type) error {
	c := &t.Columns[i]
	if !typ.Widens(c.Type) {
		return fmt.Errorf("table %s column %s: %s does not widen %s", t.Source, c.Name, typ, c.Type)
	}
	conv, err := newPolicyConverter(c.Src, typ, c.Transform, c.spec.Invalid, c.invalid, c.caps)
	if err != nil {
		return fmt.Errorf("table %s column %s: %w", t.Source, c.Name, err)
	}
	c.Type, c.conv, c.zero = typ, conv, zeroValue(typ)
	return nil
}

// Narrow makes column i write typ, a type its own widens (the type a
// ClickHouse key column keeps until the table is copied again): each value
// is converted under the column's invalid policy, so one that typ cannot
// hold is an error naming the row (or clamped or defaulted when the
// configuration says so).
func (t *Table) Narrow(i int, typ Type) error {
	c := &t.Columns[i]
	if !c.Type.Widens(typ) {
		return fmt.Errorf("table %s column %s: %s is not narrower than %s", t.Source, c.Name, typ, c.Type)
	}
	conv, err := newPolicyConverter(c.Src, typ, c.Transform, c.spec.Invalid, c.invalid, c.caps)
	if err != nil {
		return fmt.Errorf("table %s column %s: %w", t.Source, c.Name, err)
	}
	c.Type, c.conv, c.zero = typ, conv, zeroValue(typ)
	return nil
}

// Adopt makes the named column write have when have is the type an
// earlier version mapped the column's Postgres type to by default (before
// numeric(p, s), arrays, enums, bool and date had their own types) and the
// configuration names no type for it: a target made then keeps its
// columns (`replicator resync` makes it anew with the current mapping).
// It reports whether the column writes have now.
func (t *Table) Adopt(name string, have Type, caps Caps) bool {
	i := t.ColumnIndex(name)
	if i < 0 {
		return false
	}
	c := &t.Columns[i]
	if c.Type == have {
		return true
	}
	if c.Type.IsEnum() {
		return t.adoptEnum(c, have)
	}
	if c.spec.Type != "" || c.spec.Transform != TransformNone {
		return false
	}
	legacy := DefaultType(c.Src.OID, Caps{DateTime64: caps.DateTime64})
	legacy.Nullable = c.spec.Nullable
	if have != legacy {
		return false
	}
	conv, err := newConverter(c.Src, legacy, TransformNone, c.caps)
	if err != nil {
		return false
	}
	c.Type, c.conv, c.zero = legacy, conv, zeroValue(legacy)
	return true
}

// adoptEnum makes Enum column c keep the values of have, the target's
// Enum, and gain the labels Postgres added since, after have's: c then
// writes have, or a type that widens it by the added labels (which the
// schema change adds to the target). A label of have that Postgres lacks
// now was renamed, and stays in the type: the rows that carry it are the
// schema change's to copy again (see EnumRenamed).
func (t *Table) adoptEnum(c *Column, have Type) bool {
	if !have.IsEnum() || have.Nullable != c.Type.Nullable || have.Array {
		return false
	}
	want, err := EnumOf(c.Type.Kind, c.spec.Type == "Enum", c.Src.Labels, have)
	if err != nil {
		return false
	}
	want.Nullable = have.Nullable
	conv, err := newPolicyConverter(c.Src, want, c.Transform, c.spec.Invalid, c.invalid, c.caps)
	if err != nil {
		return false
	}
	c.Type, c.conv, c.zero = want, conv, zeroValue(want)
	return want == have
}

// EnumRenamed returns the labels of have, a target column's Enum, that
// column i's Postgres enum lacks: labels renamed since (ALTER TYPE ...
// RENAME VALUE), which ClickHouse's rows still carry.
func (t *Table) EnumRenamed(i int, have Type) []string {
	c := &t.Columns[i]
	if !c.Type.IsEnum() || !have.IsEnum() {
		return nil
	}
	return have.Missing(c.Src.Labels)
}

// ColumnIndex returns the index of the named column, or -1.
func (t *Table) ColumnIndex(name string) int {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// identifiers returns the bare identifiers of an SQL expression (function
// names included; callers match them against column names).
func identifiers(expr string) []string {
	var out []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(expr) && expr[j] != '\'' {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '`' || c == '"':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return append(out, expr[i+1:])
			}
			out = append(out, expr[i+1:i+1+j])
			i += j + 2
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(expr) && (expr[j] == '_' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= 'A' && expr[j] <= 'Z' || expr[j] >= '0' && expr[j] <= '9') {
				j++
			}
			out = append(out, expr[i:j])
			i = j
		default:
			i++
		}
	}
	return out
}

// wholeColumns returns the identifiers that expr is, or that are elements
// of the tuple expr is: "tenant", "(tenant, intDiv(id, 1000))" hold
// tenant whole, "toYYYYMM(created_at)" holds nothing whole.
func wholeColumns(expr string) []string {
	var out []string
	for _, e := range keyElements(expr) {
		if ids := identifiers(e); len(ids) == 1 && (e == ids[0] || len(e) == len(ids[0])+2 && e[1:len(e)-1] == ids[0]) {
			out = append(out, ids[0])
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ValueKind says how a column value arrived.
type ValueKind byte

// Value kinds, as pgoutput marks them.
const (
	ValueNull      ValueKind = 'n'
	ValueUnchanged ValueKind = 'u'
	ValueText      ValueKind = 't'
)

// Value is one column of a source tuple in Postgres text format.
type Value struct {
	Kind ValueKind
	Data []byte
}

// Row maps a full source tuple into dst (len(dst) >= len(t.Columns)).
// Unchanged TOAST values are left nil and their indexes are returned in
// unchanged (appended to the passed slice), to be filled from the row's
// latest image by the caller.
func (t *Table) Row(vals []Value, dst []any, unchanged []int) ([]int, error) {
	if len(vals) != t.width {
		return unchanged, fmt.Errorf("tuple has %d columns, table %s has %d", len(vals), t.Source, t.width)
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		val := vals[c.pos]
		switch val.Kind {
		case ValueText:
			v, err := c.conv(val.Data)
			if err != nil {
				return unchanged, &ColumnError{Column: c.Name, Err: err}
			}
			dst[i] = v
		case ValueNull:
			dst[i] = c.zero
		case ValueUnchanged:
			dst[i] = nil
			unchanged = append(unchanged, i)
		default:
			return unchanged, &ColumnError{Column: c.Name, Err: fmt.Errorf("unsupported value kind %q", byte(val.Kind))}
		}
	}
	return unchanged, nil
}

// Tuple returns a source tuple (reusing buf) that holds the values read of
// the columns cols (indexes in Columns), NULL elsewhere, for Row.
func (t *Table) Tuple(buf []Value, cols []int, read []Value) []Value {
	buf = slices.Grow(buf[:0], t.width)[:t.width]
	for i := range buf {
		buf[i] = Value{Kind: ValueNull}
	}
	for i, val := range read {
		buf[t.Columns[cols[i]].pos] = val
	}
	return buf
}

// Tombstone maps the identity columns of a delete's old tuple into dst; every
// other column gets its default (for a Placed table, the caller then takes
// the other key values from the row's latest image).
func (t *Table) Tombstone(old []Value, dst []any) error {
	if len(old) != t.width {
		return fmt.Errorf("old tuple has %d columns, table %s has %d", len(old), t.Source, t.width)
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		dst[i] = c.zero
		if !t.identity[i] || old[c.pos].Kind != ValueText {
			continue
		}
		v, err := c.conv(old[c.pos].Data)
		if err != nil {
			return &ColumnError{Column: c.Name, Err: err}
		}
		dst[i] = v
	}
	for _, k := range t.ident {
		if old[t.Columns[k].pos].Kind != ValueText {
			return &ColumnError{Column: t.Columns[k].Name, Err: fmt.Errorf("delete carries no value for sorting key column; check the table's REPLICA IDENTITY")}
		}
	}
	return nil
}

// TombstoneOf returns a tombstone of the row that a mapped row identifies
// (see Ident): its identifying values, every other column at its default.
func (t *Table) TombstoneOf(row []any) []any {
	tomb := t.NewRow()
	for i := range t.Columns {
		tomb[i] = t.Columns[i].zero
	}
	for _, i := range t.ident {
		tomb[i] = row[i]
	}
	return tomb
}

// KeyString renders the sorting key of a mapped row, for deduplication and messages.
func (t *Table) KeyString(row []any) string { return t.render(t.Key, row) }

// render renders the columns cols of a mapped row as name=value pairs.
func (t *Table) render(cols []int, row []any) string {
	return string(t.appendPairs(nil, cols, row))
}

// appendPairs appends the columns cols of row as name=value pairs to b,
// after a separator when b is not empty.
func (t *Table) appendPairs(b []byte, cols []int, row []any) []byte {
	for _, i := range cols {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = t.appendPair(b, i, row[i])
	}
	return b
}

// appendPair appends name=value for column i, the value formatted as
// fmt's %v would (a time as its instant in UTC, a date as its day), with
// the common types formatted without fmt: keys are rendered once per
// change.
func (t *Table) appendPair(b []byte, i int, v any) []byte {
	b = append(b, t.Columns[i].Name...)
	b = append(b, '=')
	switch v := v.(type) {
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10)
	case int16:
		return strconv.AppendInt(b, int64(v), 10)
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10)
	case int8:
		return strconv.AppendInt(b, int64(v), 10)
	case string:
		return strconv.AppendQuote(b, v)
	case time.Time:
		// Mapped values are in UTC; clickhouse-go returns a value read back
		// in its column's zone, the server's when the type names none (a
		// configured "DateTime", any Date): a time by its instant and a
		// date by its day render alike from either side.
		if k := t.Columns[i].Type.Kind; k == KindDate || k == KindDate32 {
			if v.Location() != time.UTC {
				y, m, d := v.Date()
				v = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
			}
		} else {
			v = v.UTC()
		}
		// time.Time.String without a monotonic reading, which mapped
		// values never carry.
		if y := v.Year(); y >= 0 && y <= 9999 {
			return appendUTC(b, v)
		}
		return v.AppendFormat(b, "2006-01-02 15:04:05.999999999 -0700 MST")
	default:
		return fmt.Append(b, v)
	}
}

// appendUTC appends t, in UTC and of a four-digit year, as time.Time.String
// renders it, at a fraction of AppendFormat's cost.
func appendUTC(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	b = appendDigits(b, y, 4)
	for _, f := range [...]struct {
		sep byte
		v   int
	}{{'-', int(mo)}, {'-', d}, {' ', h}, {':', mi}, {':', sec}} {
		b = appendDigits(append(b, f.sep), f.v, 2)
	}
	if ns := t.Nanosecond(); ns != 0 {
		n := 9
		for ns%10 == 0 {
			ns /= 10
			n--
		}
		b = appendDigits(append(b, '.'), ns, n)
	}
	return append(b, " +0000 UTC"...)
}

// appendDigits appends v (non-negative) with at least n digits.
func appendDigits(b []byte, v, n int) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 || n > 1 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		n--
	}
	i--
	buf[i] = byte('0' + v)
	return append(b, buf[i:]...)
}

// PlacementColumns returns the indexes of the columns that Placement
// renders: the sorting key, then the partition columns outside it.
func (t *Table) PlacementColumns() []int { return append(slices.Clone(t.Key), t.partKey...) }

// Placement is where a mapped row lives in ClickHouse, its sorting key and
// its partition, in a compact binary form (see appendKey). Two rows collapse into one only when both agree,
// so an update that changes either must delete the row at its old place.
func (t *Table) Placement(row []any) string {
	return string(t.appendKey(t.appendKey(make([]byte, 0, 32), t.Key, row), t.partKey, row))
}

// appendKey appends the columns cols of row to b in a compact binary form
// that two rows share exactly when their values are equal as KeyString
// compares them (a time by its instant, a date by its day, whichever zone
// a value read back from ClickHouse is in): integers as 8 bytes, strings
// with their length, times as Unix seconds and nanoseconds, other values
// as fmt prints them, with their length. The keys of buffers and lookups
// are built once per change or more, and are never shown (KeyString and
// IdentText render them for messages).
func (t *Table) appendKey(b []byte, cols []int, row []any) []byte {
	for _, i := range cols {
		switch v := row[i].(type) {
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case int64:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case uint32:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case int32:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case uint16:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case int16:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case uint8:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case int8:
			b = binary.BigEndian.AppendUint64(b, uint64(v))
		case string:
			b = append(binary.AppendUvarint(b, uint64(len(v))), v...)
		case time.Time:
			if k := t.Columns[i].Type.Kind; (k == KindDate || k == KindDate32) && v.Location() != time.UTC {
				y, m, d := v.Date()
				v = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
			}
			b = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(b, uint64(v.Unix())), uint32(v.Nanosecond()))
		default:
			text := fmt.Append(nil, v)
			b = append(binary.AppendUvarint(b, uint64(len(text))), text...)
		}
	}
	return b
}

// KeyOf renders the sorting key of a source tuple's text values, for error
// messages about tuples that could not be mapped.
func (t *Table) KeyOf(vals []Value) string {
	var b strings.Builder
	for n, i := range t.Key {
		if n > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.Columns[i].Name)
		b.WriteByte('=')
		if p := t.Columns[i].pos; p < len(vals) && vals[p].Kind == ValueText {
			b.Write(vals[p].Data)
		} else {
			b.WriteString("?")
		}
	}
	return b.String()
}

// keyElements returns the elements of the tuple a key expression is, or
// the expression itself when it is not one tuple ("(a) + (b)").
func keyElements(expr string) []string {
	expr = strings.TrimSpace(expr)
	if !strings.HasPrefix(expr, "(") || !strings.HasSuffix(expr, ")") {
		return []string{expr}
	}
	var elems []string
	depth, start := 0, 1
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '\'', '`', '"':
			for i++; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
		case '(', '[':
			depth++
		case ')', ']':
			if depth--; depth == 0 && i != len(expr)-1 {
				return []string{expr}
			}
		case ',':
			if depth == 1 {
				elems = append(elems, strings.TrimSpace(expr[start:i]))
				start = i + 1
			}
		}
	}
	return append(elems, strings.TrimSpace(expr[start:len(expr)-1]))
}

// nullRemovers are the functions whose result is not Nullable whatever
// their arguments: a partition key element that calls one may use a
// Nullable column.
var nullRemovers = []string{"ifnull", "coalesce", "assumenotnull", "isnull", "isnotnull"}

// checkPartitionNullable refuses a partition_by element over a Nullable
// column that no function makes non-Nullable: ClickHouse refuses a
// Nullable partition key (on every version, unless allow_nullable_key,
// which the replicator does not set), which setup would otherwise meet as
// a server error.
func (t *Table) checkPartitionNullable() error {
	if t.PartitionBy == "" {
		return nil
	}
	for _, e := range keyElements(t.PartitionBy) {
		ids := identifiers(e)
		if slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(nullRemovers, strings.ToLower(id)) }) {
			continue
		}
		for _, id := range ids {
			if i := t.ColumnIndex(id); i >= 0 && t.Columns[i].Type.Nullable {
				return fmt.Errorf("table %s: partition_by column %q cannot be nullable (ClickHouse refuses a Nullable partition key): "+
					"map it without nullable = true or Nullable(...), or use ifNull(%s, <default>) in partition_by", t.Source, id, id)
			}
		}
	}
	return nil
}

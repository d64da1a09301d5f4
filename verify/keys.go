package verify

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
)

// firstKey is how verify and repair split a table by its first sorting
// column: an expression on each side that orders values alike and renders
// equal values as equal text. Integers order as numbers; text orders by
// its bytes (COLLATE "C" in Postgres, as ClickHouse compares strings), an
// enum as its label's text;
// a UUID orders as its text (Postgres compares its bytes, which is the
// same order; ClickHouse's own UUID order is not).
type firstKey struct {
	col     int
	pg, ch  string
	numeric bool
	collate string // of the Postgres expression's order
	// unit renders a time value: as Unix seconds, microseconds or days.
	unit timeUnit
}

type timeUnit int

const (
	noTime timeUnit = iota
	seconds
	micros
	days
)

// newFirstKey returns the split expressions of column c, or an error for
// a type whose order the two servers do not share.
func newFirstKey(t *mapping.Table) (firstKey, error) {
	i := t.Key[0]
	c := t.Columns[i]
	col, qc := postgres.QuoteIdent(c.Source), ddl.Quote(c.Name)
	k := firstKey{col: i}
	switch {
	case c.Transform != mapping.TransformNone || c.Type.Array || c.Type.Nullable:
	case c.Type.IsInteger() && (c.SourceOID == 20 || c.SourceOID == 21 || c.SourceOID == 23):
		k.pg, k.ch, k.numeric = col, qc, true
	case c.Type.Kind == mapping.KindString && (c.SourceOID == 25 || c.SourceOID == 1043):
		k.pg, k.ch, k.collate = col+` COLLATE "C"`, qc, ` COLLATE "C"`
	case c.Type.Kind == mapping.KindUUID && c.SourceOID == 2950:
		k.pg, k.ch = col, "toString("+qc+")"
	case c.Type.IsEnum() && c.Src.Enum:
		// By label: the servers order an enum by sort order and by value,
		// which differ once a label is added before others.
		k.pg, k.ch, k.collate = col+`::text COLLATE "C"`, "toString("+qc+")", ` COLLATE "C"`
	// Times order as their Unix time at the target's precision (floor:
	// monotonic, so ranges of it are ranges of the column).
	case c.Type.Kind == mapping.KindDateTime && (c.SourceOID == 1114 || c.SourceOID == 1184):
		k.pg, k.ch, k.numeric, k.unit = "floor(extract(epoch from "+col+"))::bigint", "toInt64(toUnixTimestamp("+qc+"))", true, seconds
	case c.Type.Kind == mapping.KindDateTime64 && c.Type.Precision == 6 && (c.SourceOID == 1114 || c.SourceOID == 1184):
		k.pg, k.ch, k.numeric, k.unit = "floor(extract(epoch from "+col+") * 1000000)::bigint", "toUnixTimestamp64Micro("+qc+")", true, micros
	case c.Type.Kind == mapping.KindDate && c.SourceOID == 1082:
		k.pg, k.ch, k.numeric, k.unit = "("+col+" - date '1970-01-01')", "toInt32("+qc+")", true, days
	}
	if k.pg == "" {
		return k, fmt.Errorf("verify splits a table by its first sorting column, and cannot order %s (%s) alike in Postgres and ClickHouse: "+
			"put an integer, text, uuid, date or timestamp column first in order_by (%s)", c.Name, c.Type, strings.Join(t.OrderBy, ", "))
	}
	return k, nil
}

// text renders a value of the column, mapped or read back from ClickHouse,
// as both sides' expressions render it.
func (k firstKey) text(row []any) string {
	v := deref(row[k.col])
	t, ok := v.(time.Time)
	if !ok || k.unit == noTime {
		return fmt.Sprint(v)
	}
	switch k.unit {
	case seconds:
		return strconv.FormatInt(t.Unix(), 10)
	case micros:
		return strconv.FormatInt(t.UnixMicro(), 10)
	}
	// A date read back is at midnight in the server's zone: its calendar
	// day counts.
	y, m, d := t.Date()
	return strconv.FormatInt(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()/86400, 10)
}

func (k firstKey) pgLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (k firstKey) chLit(s string) string {
	if k.numeric {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (k firstKey) list(vals []string, lit func(string) string) string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = lit(v)
	}
	return strings.Join(out, ",")
}

// pgIn and chIn are conditions on the column's values vals; negated with not.
func (k firstKey) pgIn(vals []string, not bool) string {
	return k.pg + inOp(not) + "(" + k.list(vals, k.pgLit) + ")"
}

func (k firstKey) chIn(vals []string, not bool) string {
	return k.ch + inOp(not) + "(" + k.list(vals, k.chLit) + ")"
}

func inOp(not bool) string {
	if not {
		return " NOT IN "
	}
	return " IN "
}

// keyRange is a range of the first sorting column's values, [from, to);
// nil is unbounded.
type keyRange struct{ from, to *string }

// ranges splits the values at bounds (ascending, distinct): below the
// first, between each two, from the last on.
func ranges(bounds []string) []keyRange {
	out := make([]keyRange, 0, len(bounds)+1)
	var from *string
	for i := range bounds {
		out = append(out, keyRange{from: from, to: &bounds[i]})
		from = &bounds[i]
	}
	return append(out, keyRange{from: from})
}

func (r keyRange) String() string {
	s := func(p *string, inf string) string {
		if p == nil {
			return inf
		}
		return *p
	}
	return "[" + s(r.from, "-inf") + ", " + s(r.to, "+inf") + ")"
}

func (k firstKey) where(r keyRange, expr string, lit func(string) string) string {
	var parts []string
	if r.from != nil {
		parts = append(parts, expr+" >= "+lit(*r.from))
	}
	if r.to != nil {
		parts = append(parts, expr+" < "+lit(*r.to))
	}
	if len(parts) == 0 {
		return "1 = 1"
	}
	return strings.Join(parts, " AND ")
}

func (k firstKey) pgRange(r keyRange) string { return k.where(r, k.pg, k.pgLit) }

func (k firstKey) chRange(r keyRange) string { return k.where(r, k.ch, k.chLit) }

package mapping

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// autoEnum is the Labels of the configuration's type = "Enum": Enum8 or
// Enum16, whichever the Postgres enum's labels need.
const autoEnum = "?"

// An Enum column of the replicator holds '' = 0, the value of a NULL (as
// a String column holds '') and ClickHouse's default (tombstones, added
// columns), which no Postgres label can be (labels are 1 to 63 bytes), and
// the Postgres labels from 1 on. A label keeps its value for good: a label
// added to the Postgres type (ALTER TYPE ... ADD VALUE, even BEFORE another)
// takes the next free value, so ClickHouse orders it last.

// EnumPair is one element of an Enum.
type EnumPair struct {
	Label string
	Value int
}

// UnknownLabelError is an enum value the column's Enum lacks: a label added
// to the Postgres type after the mapping read it (ALTER TYPE ... ADD VALUE
// sends no Relation message), or one renamed since (RENAME VALUE).
type UnknownLabelError struct {
	Label string
	Type  Type
}

func (e *UnknownLabelError) Error() string {
	return fmt.Sprintf("enum value %q is not a label of %s", e.Label, e.Type)
}

// IsEnum reports whether the type is Enum8 or Enum16.
func (t Type) IsEnum() bool { return t.Kind == KindEnum8 || t.Kind == KindEnum16 }

// Pairs returns the elements of an Enum, ordered by value.
func (t Type) Pairs() []EnumPair {
	if !t.IsEnum() || t.Labels == "" || t.Labels == autoEnum {
		return nil
	}
	// Labels is always the rendering of parsed pairs.
	_, args, _, _ := splitType("Enum(" + t.Labels + ")")
	pairs, _ := parsePairs(args)
	return pairs
}

// EnumOf returns the Enum of kind (KindEnum8, KindEnum16, or either as the
// labels need when auto) holding labels, a Postgres enum's in sort order,
// with the values that have keeps (a target's Enum, or the zero Type): a
// label have lacks takes the value after have's largest.
func EnumOf(kind Kind, auto bool, labels []string, have Type) (Type, error) {
	pairs := have.Pairs()
	if len(pairs) == 0 {
		pairs = []EnumPair{{Label: "", Value: 0}}
	}
	known := make(map[string]bool, len(pairs))
	next := 0
	for _, p := range pairs {
		known[p.Label] = true
		next = max(next, p.Value+1)
	}
	for _, l := range labels {
		if bad := strings.IndexFunc(l, needsEscape); bad >= 0 {
			return Type{}, fmt.Errorf("the enum label %q holds %q, which ClickHouse escapes in the Enum's type and "+
				"clickhouse-go (v2.50, issue 1839) then reads wrong: map the column as String (the default, "+
				"LowCardinality(String))", l, l[bad:bad+1])
		}
		if !known[l] {
			known[l] = true
			pairs = append(pairs, EnumPair{Label: l, Value: next})
			next++
		}
	}
	if have.IsEnum() && have.Kind == KindEnum16 {
		kind = KindEnum16
	}
	if auto && next-1 > math.MaxInt8 {
		kind = KindEnum16
	}
	limit := math.MaxInt8
	if kind == KindEnum16 {
		limit = math.MaxInt16
	}
	if next-1 > limit {
		return Type{}, fmt.Errorf("the enum has %d labels, more than %s holds (values 1..%d)", len(labels), kindNames[kind], limit)
	}
	return Type{Kind: kind, Labels: renderPairs(pairs)}, nil
}

// needsEscape reports whether ClickHouse writes r escaped in a quoted
// string (quotes, backslashes, control characters).
func needsEscape(r rune) bool { return r == '\'' || r == '\\' || r < 0x20 || r == 0x7f }

// renderPairs renders an Enum's elements as ClickHouse does.
func renderPairs(pairs []EnumPair) string {
	pairs = slices.Clone(pairs)
	slices.SortFunc(pairs, func(a, b EnumPair) int { return a.Value - b.Value })
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteLabel(p.Label))
		b.WriteString(" = ")
		b.WriteString(strconv.Itoa(p.Value))
	}
	return b.String()
}

// quoteLabel quotes a label as ClickHouse writes a string literal.
func quoteLabel(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\0`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// unquoteLabel reads a label quoted as ClickHouse writes a string literal.
func unquoteLabel(s string) (string, error) {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", fmt.Errorf("enum label %s is not a quoted string", s)
	}
	body := s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\'' {
			return "", fmt.Errorf("enum label %s has an unescaped quote", s)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(body) {
			return "", fmt.Errorf("enum label %s ends with a backslash", s)
		}
		switch e := body[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'a':
			b.WriteByte('\a')
		case 'v':
			b.WriteByte('\v')
		case 'e':
			b.WriteByte(0x1b)
		case 'x':
			if i+3 > len(body) {
				return "", fmt.Errorf("enum label %s has a short \\x escape", s)
			}
			n, err := strconv.ParseUint(body[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("enum label %s has a bad \\x escape", s)
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(e)
		}
	}
	return b.String(), nil
}

// parsePairs parses an Enum's arguments ("'a' = 1").
func parsePairs(args []string) ([]EnumPair, error) {
	pairs := make([]EnumPair, 0, len(args))
	labels := make(map[string]bool, len(args))
	values := make(map[int]bool, len(args))
	for _, a := range args {
		eq := strings.LastIndexByte(a, '=')
		if eq < 0 {
			return nil, fmt.Errorf("enum element %s has no value", a)
		}
		label, err := unquoteLabel(strings.TrimSpace(a[:eq]))
		if err != nil {
			return nil, err
		}
		v, err := strconv.Atoi(strings.TrimSpace(a[eq+1:]))
		if err != nil {
			return nil, fmt.Errorf("enum element %s has no integer value", a)
		}
		if labels[label] || values[v] {
			return nil, fmt.Errorf("enum element %s repeats a label or value", a)
		}
		labels[label], values[v] = true, true
		pairs = append(pairs, EnumPair{Label: label, Value: v})
	}
	return pairs, nil
}

// parseEnum parses Enum8(...) or Enum16(...).
func parseEnum(kind Kind, args []string) (Type, error) {
	pairs, err := parsePairs(args)
	if err != nil {
		return Type{}, err
	}
	lo, hi := math.MinInt8, math.MaxInt8
	if kind == KindEnum16 {
		lo, hi = math.MinInt16, math.MaxInt16
	}
	for _, p := range pairs {
		if p.Value < lo || p.Value > hi {
			return Type{}, fmt.Errorf("enum value %d is out of the range of %s", p.Value, kindNames[kind])
		}
	}
	return Type{Kind: kind, Labels: renderPairs(pairs)}, nil
}

func kindOf(name string) Kind {
	if name == "Enum16" {
		return KindEnum16
	}
	return KindEnum8
}

// AddsLabels reports whether Enum t is Enum from with labels added, in
// the same width: a change of the type's metadata alone, which ClickHouse
// makes by ALTER ... MODIFY COLUMN even on a sorting key column.
func (t Type) AddsLabels(from Type) bool {
	return from.IsEnum() && t.Kind == from.Kind && t.Widens(from)
}

// enumWidens reports whether Enum t holds every element of Enum from with
// its value, in as many bits.
func enumWidens(t, from Type) bool {
	if !t.IsEnum() || !from.IsEnum() || t.Kind < from.Kind {
		return false
	}
	have := make(map[string]int)
	for _, p := range t.Pairs() {
		have[p.Label] = p.Value
	}
	for _, p := range from.Pairs() {
		if v, ok := have[p.Label]; !ok || v != p.Value {
			return false
		}
	}
	return true
}

// Missing returns the labels of Enum t that labels lack: labels renamed in
// Postgres since the target was made (the empty label is the replicator's
// own).
func (t Type) Missing(labels []string) []string {
	var out []string
	for _, p := range t.Pairs() {
		if p.Label != "" && !slices.Contains(labels, p.Label) {
			out = append(out, p.Label)
		}
	}
	return out
}

// enumConverter maps an enum's text to its label, checked against typ's.
func enumConverter(typ Type) converter {
	labels := make(map[string]string)
	for _, p := range typ.Pairs() {
		if p.Label != "" {
			labels[p.Label] = p.Label
		}
	}
	return func(b []byte) (any, error) {
		if l, ok := labels[string(b)]; ok {
			return l, nil // no copy of the bytes per value
		}
		return nil, &UnknownLabelError{Label: string(b), Type: typ}
	}
}

// AsUnknownLabel returns the enum label a mapping error is about.
func AsUnknownLabel(err error) (*UnknownLabelError, bool) {
	var e *UnknownLabelError
	ok := errors.As(err, &e)
	return e, ok
}

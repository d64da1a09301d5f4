package mapping

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseEnum(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Enum8('' = 0, 'a' = 1, 'b' = 2)", "Enum8('' = 0, 'a' = 1, 'b' = 2)"},
		{"Enum8('b' = 2,'a'=1)", "Enum8('a' = 1, 'b' = 2)"},
		{`Enum16('it\'s' = 1, 'a,b (c)' = 300, 'back\\slash' = -5)`, `Enum16('back\\slash' = -5, 'it\'s' = 1, 'a,b (c)' = 300)`},
		{`Nullable(Enum8('x = y' = 1))`, `Nullable(Enum8('x = y' = 1))`},
		{`Enum8('tab\there' = 1, 'nl\n' = 2, 'hex\x41' = 3)`, `Enum8('tab\there' = 1, 'nl\n' = 2, 'hexA' = 3)`},
		{"Enum", "Enum"},
		{"Enum16", "Enum16"},
	} {
		typ, err := ParseType(c.in)
		if err != nil {
			t.Errorf("ParseType(%q): %v", c.in, err)
			continue
		}
		if got := typ.String(); got != c.want {
			t.Errorf("ParseType(%q) = %s, want %s", c.in, got, c.want)
		}
		if again, err := ParseType(typ.String()); err != nil || again != typ {
			t.Errorf("ParseType(%q) again = %v, %v, want %v", typ.String(), again, err, typ)
		}
	}
	for _, in := range []string{
		"Enum8('a' = 1, 'b' = 1)", "Enum8('a' = 1, 'a' = 2)", "Enum8('a' = 128)", "Enum16('a' = 40000)",
		"Enum8('a')", "Enum8(a = 1)", "Enum8('a = 1)", "Enum('a' = 1)", "Enum8('a' = x)", `Enum8('a\' = 1)`,
		"LowCardinality(Enum8('a' = 1))",
	} {
		if typ, err := ParseType(in); err == nil {
			t.Errorf("ParseType(%q) = %s, want an error", in, typ)
		}
	}
}

func TestEnumOf(t *testing.T) {
	typ, err := EnumOf(KindEnum8, true, []string{"sad", "ok", "happy"}, Type{})
	if err != nil || typ.String() != "Enum8('' = 0, 'sad' = 1, 'ok' = 2, 'happy' = 3)" {
		t.Errorf("EnumOf = %s, %v", typ, err)
	}
	// A label added later (even before another in Postgres' order) takes
	// the next value; values kept by the target stay.
	have, _ := ParseType("Enum8('' = 0, 'sad' = 1, 'happy' = 3, 'ok' = 7)")
	typ, err = EnumOf(KindEnum8, true, []string{"meh", "sad", "ok", "happy"}, have)
	if err != nil || typ.String() != "Enum8('' = 0, 'sad' = 1, 'happy' = 3, 'ok' = 7, 'meh' = 8)" {
		t.Errorf("EnumOf after ADD VALUE = %s, %v", typ, err)
	}
	if !typ.Widens(have) || have.Widens(typ) {
		t.Errorf("%s must widen %s, not the other way", typ, have)
	}
	many := make([]string, 200)
	for i := range many {
		many[i] = fmt.Sprintf("l%d", i)
	}
	if typ, err := EnumOf(KindEnum8, true, many, Type{}); err != nil || typ.Kind != KindEnum16 {
		t.Errorf("auto Enum of 200 labels = %s, %v, want Enum16", typ, err)
	}
	if _, err := EnumOf(KindEnum8, false, many, Type{}); err == nil || !strings.Contains(err.Error(), "more than Enum8 holds") {
		t.Errorf("Enum8 of 200 labels: %v", err)
	}
	// The 128th label of an auto Enum8 makes it an Enum16, which widens it.
	e8, _ := EnumOf(KindEnum8, true, many[:127], Type{})
	e16, err := EnumOf(KindEnum8, true, many[:128], e8)
	if err != nil || e8.Kind != KindEnum8 || e16.Kind != KindEnum16 || !e16.Widens(e8) {
		t.Errorf("127 then 128 labels: %s, %s, %v", e8, e16, err)
	}
	// Renumbered or narrower enums do not widen.
	renum, _ := ParseType("Enum8('' = 0, 'sad' = 2, 'happy' = 3, 'ok' = 7)")
	if renum.Widens(have) {
		t.Errorf("%s widens %s", renum, have)
	}
	if e8.Widens(e16) {
		t.Errorf("Enum8 widens Enum16")
	}
}

// enumTable is a table with an enum column e (type as configured) of
// labels, nullable as configured.
func enumTable(t *testing.T, typ string, nullable bool, labels ...string) (*Table, error) {
	t.Helper()
	spec := TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
		Columns: map[string]ColumnSpec{"e": {Type: typ, Nullable: nullable}}}
	return Resolve(spec, []SourceColumn{
		{Name: "id", TypeOID: oidInt8, Identity: true},
		{Name: "e", TypeOID: 16500, Enum: true, Labels: labels},
	}, Caps{})
}

func TestResolveEnum(t *testing.T) {
	tbl, err := enumTable(t, "Enum", false, "sad", "ok")
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Columns[1].Type.String(); got != "Enum8('' = 0, 'sad' = 1, 'ok' = 2)" {
		t.Errorf("type %s", got)
	}
	row := make([]any, len(tbl.Columns)+len(MetaColumns)+1)
	if _, err := tbl.Row([]Value{text("1"), text("ok")}, row, nil); err != nil || row[1] != "ok" {
		t.Errorf("Row = %v, %v", row[1], err)
	}
	if _, err := tbl.Row([]Value{text("1"), nullValue}, row, nil); err != nil || row[1] != "" {
		t.Errorf("NULL: Row = %q, %v, want ''", row[1], err)
	}
	_, err = tbl.Row([]Value{text("1"), text("happy")}, row, nil)
	l, ok := AsUnknownLabel(err)
	if !ok || l.Label != "happy" {
		t.Errorf("unknown label: %v", err)
	}
	var ce *ColumnError
	if !errors.As(err, &ce) || ce.Column != "e" {
		t.Errorf("unknown label: %v names no column", err)
	}
	// The copy maps the same.
	b := tbl.NewBlock()
	if err := b.AppendBinary([][]byte{{0, 0, 0, 0, 0, 0, 0, 1}, []byte("sad")}); err != nil {
		t.Fatalf("AppendBinary: %v", err)
	}
	if err := b.AppendBinary([][]byte{{0, 0, 0, 0, 0, 0, 0, 2}, []byte("happy")}); err == nil {
		t.Errorf("AppendBinary of an unknown label: no error")
	}
	if cols := b.Columns(1, 0); !slices.Equal(cols[1].([]string), []string{"sad"}) {
		t.Errorf("block column %v", cols[1])
	}

	tbl, err = enumTable(t, "Enum16", true, "sad")
	if err != nil || tbl.Columns[1].Type.String() != "Nullable(Enum16('' = 0, 'sad' = 1))" {
		t.Errorf("nullable Enum16: %v, %v", tbl, err)
	}
	if _, err := tbl.Row([]Value{text("1"), nullValue}, row, nil); err != nil || row[1] != nil {
		t.Errorf("NULL into a nullable Enum: %v, %v", row[1], err)
	}

	// Enum is for enum columns only.
	_, err = Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
		Columns: map[string]ColumnSpec{"e": {Type: "Enum"}}},
		[]SourceColumn{{Name: "id", TypeOID: oidInt8, Identity: true}, {Name: "e", TypeOID: oidText}}, Caps{})
	if err == nil || !strings.Contains(err.Error(), "Postgres enum") {
		t.Errorf("Enum of a text column: %v", err)
	}
	_, err = Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
		Columns: map[string]ColumnSpec{"e": {Type: "Array(Enum8)"}}},
		[]SourceColumn{{Name: "id", TypeOID: oidInt8, Identity: true}, {Name: "e", TypeOID: 16501, Elem: 16500, Enum: true}}, Caps{})
	if err == nil {
		t.Errorf("Array(Enum8) of an enum array: no error")
	}
}

func TestAdoptEnum(t *testing.T) {
	have, _ := ParseType("Enum8('' = 0, 'ok' = 1, 'sad' = 2)")
	// Postgres added 'happy' before 'ok': the target keeps its values and
	// the mapping writes its Enum and the new label.
	tbl, err := enumTable(t, "Enum", false, "happy", "sad", "ok")
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Adopt("e", have, Caps{}) {
		t.Errorf("Adopt with a label the target lacks reports the target's type")
	}
	if got := tbl.Columns[1].Type.String(); got != "Enum8('' = 0, 'ok' = 1, 'sad' = 2, 'happy' = 3)" {
		t.Errorf("adopted %s", got)
	}
	if !tbl.Columns[1].Type.Widens(have) {
		t.Errorf("the adopted type does not widen the target's")
	}
	// The same labels: the target's type as it is.
	tbl, _ = enumTable(t, "Enum", false, "sad", "ok")
	if !tbl.Adopt("e", have, Caps{}) || tbl.Columns[1].Type != have {
		t.Errorf("Adopt of the same labels: %s", tbl.Columns[1].Type)
	}
	// 'ok' renamed to 'fine': the new name is added, the old one stays
	// (rows carry it until the table is copied again), and it is named.
	tbl, _ = enumTable(t, "Enum", false, "sad", "fine")
	if tbl.Adopt("e", have, Caps{}) || tbl.Columns[1].Type.String() != "Enum8('' = 0, 'ok' = 1, 'sad' = 2, 'fine' = 3)" {
		t.Errorf("Adopt after a rename: %s", tbl.Columns[1].Type)
	}
	if got := tbl.EnumRenamed(1, have); !slices.Equal(got, []string{"ok"}) {
		t.Errorf("EnumRenamed = %v", got)
	}
	// Nullable differs: not adopted.
	tbl, _ = enumTable(t, "Enum", true, "sad", "ok")
	if tbl.Adopt("e", have, Caps{}) {
		t.Errorf("a nullable Enum adopted a plain one")
	}
}

// FuzzEnumLabels checks that every label survives its ClickHouse quoting
// and a parse of the type, as the target reads back.
func FuzzEnumLabels(f *testing.F) {
	for _, s := range []string{"a", "it's", `back\slash`, "a,b (c) = 1", "tab\tnl\n", "\x00\x01", "ünï 🚀", "x = 'y'"} {
		f.Add(s, "other")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == "" || b == "" || a == b {
			return
		}
		typ, err := EnumOf(KindEnum16, false, []string{a, b}, Type{})
		if escaped := strings.IndexFunc(a+b, needsEscape) >= 0; escaped != (err != nil) {
			t.Fatalf("labels %q, %q: %v", a, b, err)
		} else if escaped {
			return
		}
		back, err := ParseType("Nullable(" + typ.String() + ")")
		if err != nil {
			t.Fatalf("ParseType(%q): %v", typ.String(), err)
		}
		back.Nullable = false
		if back != typ {
			t.Fatalf("%q read back as %q", typ, back)
		}
		pairs := back.Pairs()
		if len(pairs) != 3 || pairs[1].Label != a || pairs[2].Label != b {
			t.Fatalf("pairs %v, want '', %q, %q", pairs, a, b)
		}
	})
}

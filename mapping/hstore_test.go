package mapping

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const pgHstore = 16400 // an extension's type: the catalog marks it (Hstore)

// mapCaps are those of a server with Map and JSON.
var mapCaps = Caps{DateTime64: true, Bool: true, Date32: true, Map: true, JSON: true}

// resolveHstore resolves a table with an int8 key "k" and an hstore column
// "c" of spec.
func resolveHstore(spec ColumnSpec, caps Caps) (*Table, error) {
	return Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"k"}, Columns: map[string]ColumnSpec{"c": spec}},
		[]SourceColumn{{Name: "k", TypeOID: pgInt8, Identity: true}, {Name: "c", TypeOID: pgHstore, Hstore: true}}, caps)
}

// formatHstore writes pairs as Postgres' hstore output does.
func formatHstore(pairs map[string]*string) string {
	keys := make([]string, 0, len(pairs))
	for k := range pairs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	quote := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := "NULL"
		if pairs[k] != nil {
			v = quote(*pairs[k])
		}
		parts[i] = quote(k) + "=>" + v
	}
	return strings.Join(parts, ", ")
}

func TestParseHstore(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]*string
	}{
		{``, map[string]*string{}},
		{`"a"=>"1"`, map[string]*string{"a": ptr("1")}},
		{`"a"=>"1", "b"=>NULL`, map[string]*string{"a": ptr("1"), "b": nil}},
		{`"b"=>NULL, "a"=>"1"`, map[string]*string{"a": ptr("1"), "b": nil}},
		{`""=>""`, map[string]*string{"": ptr("")}},
		{`"NULL"=>"NULL"`, map[string]*string{"NULL": ptr("NULL")}},
		{`"q\"uote"=>"back\\slash"`, map[string]*string{`q"uote`: ptr(`back\slash`)}},
		{`"=>, "=>"a, \"b\"=>c"`, map[string]*string{`=>, `: ptr(`a, "b"=>c`)}},
		{`"ключ"=>"значение", "tab	nl
"=>" "`, map[string]*string{"ключ": ptr("значение"), "tab\tnl\n": ptr(" ")}},
		{` "a" => "1" ,"b"=>"2" `, map[string]*string{"a": ptr("1"), "b": ptr("2")}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHstore([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseHstore(%q) = %v, want %v", tc.in, show(got), show(tc.want))
			}
		})
	}
}

func show(m map[string]*string) string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = "NULL"
		if v != nil {
			out[k] = `"` + *v + `"`
		}
	}
	return formatShow(out)
}

func formatShow(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + ":" + m[k] + " ")
	}
	return b.String()
}

func TestParseHstoreErrors(t *testing.T) {
	for _, in := range []string{
		`a=>1`,              // unquoted (never in the output)
		`"a"`,               // no =>
		`"a"=>`,             // no value
		`"a"=>"1`,           // unterminated value
		`"a=>"1"`,           // unterminated key
		`"a"=>"1\`,          // ends in an escape
		`"a"=>"1" "b"=>"2"`, // no comma
		`"a"=>"1",`,         // trailing comma
		`"a"=>null`,         // NULL is upper case in the output
		`"a"=>NULLx`,        // garbage after NULL
		`"a"=>"1", "a"=>"2"`,
		`"a"->"1"`,
	} {
		t.Run(in, func(t *testing.T) {
			if got, err := ParseHstore([]byte(in)); err == nil {
				t.Errorf("ParseHstore(%q) = %v, want an error", in, show(got))
			}
		})
	}
}

func TestHstoreConvert(t *testing.T) {
	row := func(t *testing.T, spec ColumnSpec, in Value) (any, error) {
		t.Helper()
		tbl, err := resolveHstore(spec, mapCaps)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]any, 2)
		_, err = tbl.Row([]Value{text("1"), in}, dst, nil)
		return dst[1], err
	}
	plain := ColumnSpec{Type: "Map(String, String)"}
	nullable := ColumnSpec{Type: "Map(String,Nullable(String))"}
	for _, tc := range []struct {
		name string
		spec ColumnSpec
		in   Value
		want any
	}{
		{"pairs", plain, text(`"a"=>"1", "b"=>"x\"y"`), map[string]string{"a": "1", "b": `x"y`}},
		{"empty", plain, text(``), map[string]string{}},
		{"NULL hstore", plain, nullValue, map[string]string{}},
		{"nullable values", nullable, text(`"a"=>"1", "b"=>NULL`), map[string]*string{"a": ptr("1"), "b": nil}},
		{"NULL hstore, nullable values", nullable, nullValue, map[string]*string{}},
		{"NULL value as default", ColumnSpec{Type: "Map(String, String)", Invalid: InvalidDefault}, text(`"a"=>NULL, "b"=>"2"`),
			map[string]string{"a": "", "b": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := row(t, tc.spec, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}

	// A NULL value into Map(String, String) is an error naming the key.
	_, err := row(t, plain, text(`"a"=>"1", "the key"=>NULL`))
	var nv *NullValueError
	if !errors.As(err, &nv) || nv.Key != "the key" || !strings.Contains(err.Error(), `"the key"`) {
		t.Errorf("NULL value: error %v, want a NullValueError naming the key", err)
	}
	if _, err := row(t, plain, text(`"a"=>1`)); err == nil {
		t.Errorf("malformed hstore: no error")
	}

	// The default policy counts the values it stored.
	tbl, err := resolveHstore(ColumnSpec{Type: "Map(String, String)", Invalid: InvalidDefault}, mapCaps)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]any, 2)
	for _, in := range []string{`"a"=>NULL`, `"a"=>"1"`, `"a"=>NULL, "b"=>NULL`} {
		if _, err := tbl.Row([]Value{text("1"), text(in)}, dst, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := tbl.Invalid()["c"]; got != 2 {
		t.Errorf("invalid count = %d, want 2 (rows with NULL values)", got)
	}
}

func TestJSONConvert(t *testing.T) {
	for _, oid := range []uint32{pgJSON, pgJSONB} {
		got, err := convert(t, oid, ColumnSpec{Type: "JSON"}, mapCaps, text(`{"a": 1, "b": [1, 2]}`))
		if err != nil || got != `{"a": 1, "b": [1, 2]}` {
			t.Errorf("oid %d: %#v, %v; want the text", oid, got, err)
		}
		if got, err := convert(t, oid, ColumnSpec{Type: "JSON"}, mapCaps, nullValue); err != nil || got != "{}" {
			t.Errorf("oid %d NULL: %#v, %v; want {}", oid, got, err)
		}
		for _, in := range []string{`[1, 2]`, `1`, `"s"`, `null`, ``} {
			if got, err := convert(t, oid, ColumnSpec{Type: "JSON"}, mapCaps, text(in)); err == nil {
				t.Errorf("oid %d: %q = %#v, want an error (not an object)", oid, in, got)
			}
			got, err := convert(t, oid, ColumnSpec{Type: "JSON", Invalid: InvalidDefault}, mapCaps, text(in))
			if err != nil || got != "{}" {
				t.Errorf("oid %d: %q with invalid = default: %#v, %v; want {}", oid, in, got, err)
			}
		}
	}
}

func TestMapJSONResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		oid  uint32
		hs   bool
		spec ColumnSpec
		caps Caps
		want string
	}{
		{"Map on text", pgText, false, ColumnSpec{Type: "Map(String, String)"}, mapCaps, "for a column of type hstore"},
		{"Map on jsonb", pgJSONB, false, ColumnSpec{Type: "Map(String, String)"}, mapCaps, "for a column of type hstore"},
		{"JSON on text", pgText, false, ColumnSpec{Type: "JSON"}, mapCaps, "for a column of type json or jsonb"},
		{"JSON on hstore", pgHstore, true, ColumnSpec{Type: "JSON"}, mapCaps, "for a column of type json or jsonb"},
		{"Map before 21.8", pgHstore, true, ColumnSpec{Type: "Map(String, String)"}, allCaps, "needs ClickHouse >= 21.8"},
		{"JSON before 25.3", pgJSONB, false, ColumnSpec{Type: "JSON"}, Caps{Map: true}, "needs ClickHouse >= 25.3"},
		{"nullable Map", pgHstore, true, ColumnSpec{Type: "Map(String, String)", Nullable: true}, mapCaps, "no Nullable(Map)"},
		{"nullable JSON", pgJSONB, false, ColumnSpec{Type: "JSON", Nullable: true}, mapCaps, "Nullable(JSON) is not supported"},
		{"clamp Map", pgHstore, true, ColumnSpec{Type: "Map(String, String)", Invalid: InvalidClamp}, mapCaps, "does not apply"},
		{"default on nullable values", pgHstore, true, ColumnSpec{Type: "Map(String, Nullable(String))", Invalid: InvalidDefault}, mapCaps, "does not apply"},
		{"xxhash64 Map", pgHstore, true, ColumnSpec{Type: "Map(String, String)", Transform: TransformXXHash64}, mapCaps, "xxhash64 needs type UInt64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"k"}, Columns: map[string]ColumnSpec{"c": tc.spec}},
				[]SourceColumn{{Name: "k", TypeOID: pgInt8, Identity: true}, {Name: "c", TypeOID: tc.oid, Hstore: tc.hs}}, tc.caps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// Neither is a sorting key.
	for _, typ := range []string{"Map(String, String)", "JSON"} {
		oid := uint32(pgHstore)
		if typ == "JSON" {
			oid = pgJSONB
		}
		_, err := Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"c"}, Columns: map[string]ColumnSpec{"c": {Type: typ}}},
			[]SourceColumn{{Name: "c", TypeOID: oid, Hstore: oid == pgHstore, Identity: true}}, mapCaps)
		if err == nil || !strings.Contains(err.Error(), "cannot be in a sorting key") {
			t.Errorf("order_by a %s column: %v, want an error", typ, err)
		}
	}
	// An hstore keeps its text in a String by default.
	tbl, err := resolveHstore(ColumnSpec{}, mapCaps)
	if err != nil || tbl.Columns[1].Type.String() != "String" {
		t.Errorf("default type of hstore: %v, %v", tbl, err)
	}
}

func TestParseMapJSON(t *testing.T) {
	for _, tc := range []struct{ in, str string }{
		{"Map(String, String)", "Map(String, String)"},
		{"Map(String,String)", "Map(String, String)"},
		{"Map( String , Nullable( String ) )", "Map(String, Nullable(String))"},
		{"JSON", "JSON"},
	} {
		typ, err := ParseType(tc.in)
		if err != nil || typ.String() != tc.str {
			t.Errorf("ParseType(%q) = %v, %v; want %s", tc.in, typ, err, tc.str)
		}
	}
	for _, in := range []string{"Map(String, UInt64)", "Map(UInt64, String)", "Map(String)", "Map", "Map(String, String, String)",
		"Nullable(Map(String, String))", "Array(Map(String, String))", "LowCardinality(Map(String, String))", "Map(String, Map(String, String))",
		"JSON(a String)", "JSON()", "Nullable(JSON)", "Array(JSON)", "Map(Nullable(String), String)", "Map(LowCardinality(String), String)"} {
		if typ, err := ParseType(in); err == nil {
			t.Errorf("ParseType(%q) = %v, want an error", in, typ)
		}
	}
}

func TestHstoreBlock(t *testing.T) {
	for _, spec := range []ColumnSpec{{Type: "Map(String, String)"}, {Type: "Map(String, Nullable(String))"}} {
		tbl, err := resolveHstore(spec, mapCaps)
		if err != nil {
			t.Fatal(err)
		}
		b := tbl.NewBlock()
		for _, f := range [][]byte{[]byte(`"a"=>"1"`), nil, []byte(``)} {
			if err := b.AppendBinary([][]byte{be64(1), f}); err != nil {
				t.Fatal(err)
			}
		}
		// The copy maps each value as the stream does.
		cols := b.Columns(1, 0)
		dst := make([]any, 2)
		vals := reflect.ValueOf(cols[1])
		for i, in := range []Value{text(`"a"=>"1"`), nullValue, text(``)} {
			if _, err := tbl.Row([]Value{text("1"), in}, dst, nil); err != nil {
				t.Fatal(err)
			}
			if got := vals.Index(i).Interface(); !reflect.DeepEqual(got, dst[1]) {
				t.Errorf("%s row %d: block %#v, stream %#v", spec.Type, i, got, dst[1])
			}
		}
		if err := b.AppendBinary([][]byte{be64(1), []byte(`"a"=>`)}); err == nil {
			t.Errorf("malformed hstore appended")
		}
		if b.Len() != 3 {
			t.Errorf("Len = %d after a failed append, want 3", b.Len())
		}
	}
}

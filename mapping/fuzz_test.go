package mapping

import (
	"errors"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// FuzzParseType: ParseType never panics, and an accepted type survives a
// round trip through String.
func FuzzParseType(f *testing.F) {
	for _, s := range []string{
		"UInt64", "LowCardinality(String)", "LowCardinality(Nullable(String))",
		"DateTime('UTC')", "DateTime64(6, 'UTC')", "Nullable(Int32)",
		"Nullable(DateTime64(3, 'Europe/Berlin'))", "DateTime('a(,)b')",
		"Decimal(10,2)", "LowCardinality(UInt64)", "DateTime64(12)", "Array(String)",
		"Nullable(Nullable(String))", "Nullable((String)", "", "(", ")", "DateTime64(+6,' UTC ')",
		"Map(String, String)", "Map(String,Nullable(String))", "JSON", "Nullable(JSON)", "Array(Map(String, String))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, err := ParseType(s)
		if err != nil {
			if typ != (Type{}) {
				t.Fatalf("ParseType(%q) = %+v with error %v", s, typ, err)
			}
			return
		}
		if typ.Kind == KindInvalid {
			t.Fatalf("ParseType(%q) accepted an invalid kind: %+v", s, typ)
		}
		if typ.LowCardinality && typ.Kind != KindString {
			t.Fatalf("ParseType(%q) = LowCardinality of %v", s, typ.Kind)
		}
		if (typ.Kind == KindMap || typ.Kind == KindJSON) && (typ.Array || typ.Nullable || typ.LowCardinality) {
			t.Fatalf("ParseType(%q) = %+v: a Map or JSON wrapped", s, typ)
		}
		if typ.NullableValues && typ.Kind != KindMap {
			t.Fatalf("ParseType(%q) = %+v: NullableValues outside a Map", s, typ)
		}
		if typ.Kind == KindDateTime64 && (typ.Precision < 0 || typ.Precision > 9) {
			t.Fatalf("ParseType(%q): precision %d", s, typ.Precision)
		}
		str := typ.String()
		again, err := ParseType(str)
		if err != nil {
			t.Fatalf("ParseType(%q) = %+v, but ParseType(String() = %q): %v", s, typ, str, err)
		}
		if again != typ {
			t.Fatalf("ParseType(%q) = %+v, ParseType(%q) = %+v", s, typ, str, again)
		}
		if again.String() != str {
			t.Fatalf("String() not stable: %q then %q", str, again.String())
		}
	})
}

var (
	fuzzOIDs = []uint32{
		pgBool, pgBytea, 18, 19, pgInt8, pgInt2, pgInt4, pgText, pgOID, pgJSON, pgFloat4, pgFloat8,
		pgBPChar, pgVarchar, pgDate, pgTimestamp, pgTimestamptz, pgNumeric, pgUUID, pgJSONB, 600,
		1007, 1009, 1231, 1182, pgHstore,
	}
	fuzzTypes = []string{
		"", "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64",
		"Float32", "Float64", "String", "LowCardinality(String)", "UUID", "Date",
		"DateTime", "DateTime('UTC')", "DateTime64(3)", "DateTime64(6, 'UTC')", "Nullable(UInt64)",
		"Decimal(12, 2)", "Decimal(38, 10)", "Bool", "Date32", "Array(Int32)", "Array(Nullable(String))",
		"Array(Decimal(5, 1))", "Array(Date)", "JSON", "Map(String, String)", "Map(String, Nullable(String))",
	}
)

// FuzzConvert maps arbitrary text through Resolve and Row (and Tombstone)
// for a choice of source and target types: no panics, errors are
// *ColumnError naming the column, and results have the Go type of their
// ClickHouse type.
func FuzzConvert(f *testing.F) {
	for _, s := range []struct {
		oid, typ  uint8
		flags     uint8
		data      string
		transform bool
	}{
		{4, 4, 0, "-5", false},
		{17, 4, 0, "18446744073709551615", false},
		{6, 1, 0, "300", false},
		{16, 0, 1, "2024-05-01 10:11:12.123456+00", false},
		{16, 0, 0, "infinity", false},
		{1, 0, 0, `\x616263`, true},
		{1, 0, 0, `\x6`, false},
		{0, 1, 0, "t", false},
		{18, 13, 0, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", false},
		{11, 4, 0, "-0", false},
		{14, 14, 0, "2024-05-01", false},
		{17, 20, 0, "12345.678", false},
		{21, 24, 4, `{1,NULL,"3"}`, false},
		{22, 25, 8, `{"a\"b",NULL}`, false},
		{23, 26, 4, "{1.25,99999}", false},
		{14, 23, 5, "-infinity", false},
		{25, 29, 1, `"a"=>"1", "b"=>NULL`, false},
		{25, 30, 9, `"a"=>"1", "b"=>NULL`, false},
		{25, 31, 1, `"a"=>"1", "b"=>NULL`, false},
		{19, 28, 1, `{"a": [1, 2]}`, false},
		{9, 28, 9, `[1]`, false},
	} {
		f.Add(s.oid, s.typ, s.flags, []byte(s.data), s.transform)
	}
	f.Fuzz(func(t *testing.T, oidChoice, typeChoice, flags uint8, data []byte, transform bool) {
		oid := fuzzOIDs[int(oidChoice)%len(fuzzOIDs)]
		spec := ColumnSpec{Type: fuzzTypes[int(typeChoice)%len(fuzzTypes)], Nullable: flags&2 != 0}
		if transform {
			spec.Transform = TransformXXHash64
		}
		switch {
		case flags&4 != 0:
			spec.Invalid = InvalidClamp
		case flags&8 != 0:
			spec.Invalid = InvalidDefault
		}
		caps := Caps{DateTime64: flags&1 != 0, Bool: flags&1 != 0, Date32: flags&1 != 0, Map: flags&1 != 0, JSON: flags&1 != 0}
		tbl, err := resolveColumn(oid, spec, caps)
		if oid == pgHstore {
			tbl, err = resolveHstore(spec, caps)
		}
		if err != nil {
			return
		}
		col := tbl.Columns[1]
		dst := make([]any, 2)
		unchanged, err := tbl.Row([]Value{text("1"), {Kind: ValueText, Data: data}}, dst, nil)
		if len(unchanged) != 0 {
			t.Fatalf("unchanged = %v", unchanged)
		}
		// The same value as an identity column of a tombstone.
		tomb := make([]any, 2)
		tbl.identity[1] = true
		terr := tbl.Tombstone([]Value{text("1"), {Kind: ValueText, Data: data}}, tomb)
		if (err == nil) != (terr == nil) {
			t.Fatalf("Row error %v, Tombstone error %v", err, terr)
		}
		if err != nil {
			var ce *ColumnError
			if !errors.As(err, &ce) || ce.Column != "c" {
				t.Fatalf("Row error %v (%T), want *ColumnError for c", err, err)
			}
			return
		}
		v := dst[1]
		if !reflect.DeepEqual(v, tomb[1]) {
			t.Fatalf("Row gave %#v, Tombstone %#v", v, tomb[1])
		}
		if v == nil && col.Type.Nullable && spec.Invalid == InvalidDefault {
			return // the default of a Nullable column is NULL
		}
		checkGoType(t, col, v)
		if spec.Transform == TransformNone && col.Type.IsInteger() && !col.Type.Array && spec.Invalid == "" && oid != pgBool {
			checkInteger(t, col.Type, data, v)
		}
		// NULL is the default of the type, or nil.
		if _, err := tbl.Row([]Value{text("1"), nullValue}, dst, nil); err != nil {
			t.Fatalf("NULL: %v", err)
		}
		if col.Type.Array {
			if reflect.ValueOf(dst[1]).Len() != 0 {
				t.Fatalf("NULL of %s = %#v, want an empty array", col.Type, dst[1])
			}
		} else if col.Type.Nullable != (dst[1] == nil) {
			t.Fatalf("NULL of %s = %#v", col.Type, dst[1])
		}
	})
}

func checkGoType(t *testing.T, col Column, v any) {
	t.Helper()
	if col.Type.Array {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice {
			t.Fatalf("%s value %#v is not a slice", col.Type, v)
		}
		et := col
		et.Type.Array = false
		for i := 0; i < rv.Len(); i++ {
			e := rv.Index(i)
			if e.Kind() == reflect.Pointer {
				if !col.Type.Nullable {
					t.Fatalf("%s element %d is a pointer", col.Type, i)
				}
				if e.IsNil() {
					continue
				}
				e = e.Elem()
			}
			et.Type.Nullable = false
			checkGoType(t, et, e.Interface())
		}
		return
	}
	var want reflect.Type
	switch col.Type.Kind {
	case KindDecimal:
		want = reflect.TypeOf(decimal.Decimal{})
	case KindBool:
		want = reflect.TypeOf(false)
	case KindDate32:
		want = reflect.TypeOf(time.Time{})
	case KindUInt8:
		want = reflect.TypeOf(uint8(0))
	case KindUInt16:
		want = reflect.TypeOf(uint16(0))
	case KindUInt32:
		want = reflect.TypeOf(uint32(0))
	case KindUInt64:
		want = reflect.TypeOf(uint64(0))
	case KindInt8:
		want = reflect.TypeOf(int8(0))
	case KindInt16:
		want = reflect.TypeOf(int16(0))
	case KindInt32:
		want = reflect.TypeOf(int32(0))
	case KindInt64:
		want = reflect.TypeOf(int64(0))
	case KindFloat32:
		want = reflect.TypeOf(float32(0))
	case KindFloat64:
		want = reflect.TypeOf(float64(0))
	case KindString, KindJSON:
		want = reflect.TypeOf("")
	case KindMap:
		want = reflect.TypeOf(map[string]string{})
		if col.Type.NullableValues {
			want = reflect.TypeOf(map[string]*string{})
		}
	case KindUUID:
		want = reflect.TypeOf(uuid.UUID{})
	case KindDate, KindDateTime, KindDateTime64:
		want = reflect.TypeOf(time.Time{})
	default:
		t.Fatalf("column type %+v", col.Type)
	}
	if reflect.TypeOf(v) != want {
		t.Fatalf("%s value %#v has Go type %T, want %v", col.Type, v, v, want)
	}
	tm, ok := v.(time.Time)
	if !ok {
		return
	}
	if tm.Location() != time.UTC {
		t.Fatalf("time %v not in UTC", tm)
	}
	s := tm.Unix()
	switch col.Type.Kind {
	case KindDate:
		if tm.Hour() != 0 || tm.Minute() != 0 || tm.Second() != 0 || tm.Nanosecond() != 0 || tm.Year() < 1970 {
			t.Fatalf("Date %v", tm)
		}
	case KindDateTime:
		if s < 0 || s > math.MaxUint32 {
			t.Fatalf("DateTime %v out of range", tm)
		}
	case KindDateTime64:
		if tm.Year() < 1900 || tm.Year() > 2299 {
			t.Fatalf("DateTime64 %v out of range", tm)
		}
	}
}

// checkInteger verifies that an integer result is the number the text says.
func checkInteger(t *testing.T, typ Type, data []byte, v any) {
	t.Helper()
	if typ.IsUnsigned() {
		if len(data) > 0 && data[0] == '-' {
			// Only a negative zero may map into an unsigned column.
			if n, err := strconv.ParseInt(string(data), 10, 64); err != nil || n != 0 || reflect.ValueOf(v).Uint() != 0 {
				t.Fatalf("negative %q into %s = %#v", data, typ, v)
			}
			return
		}
		u, err := strconv.ParseUint(string(data), 10, 64)
		if err != nil || reflect.ValueOf(v).Uint() != u {
			t.Fatalf("%q into %s = %#v", data, typ, v)
		}
		return
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil || reflect.ValueOf(v).Int() != n {
		t.Fatalf("%q into %s = %#v", data, typ, v)
	}
}

// FuzzParseHstore: ParseHstore never panics; what it accepts, written back
// as Postgres writes hstore, parses to the same pairs; and pairs written
// as Postgres writes them parse back to themselves.
func FuzzParseHstore(f *testing.F) {
	for _, s := range []string{``, `"a"=>"1"`, `"a"=>"1", "b"=>NULL`, `"q\"uote"=>"back\\slash"`, `"=>, "=>"a, \"b\"=>c"`,
		`"a"=>NULLx`, `"a"=>"1\`, `"a"=>"1",`, `"a"=>"1", "a"=>"2"`, `a=>1`} {
		f.Add(s, "k", "v", false)
	}
	f.Add("", `"\`, `\"`, true)
	f.Fuzz(func(t *testing.T, s, key, val string, null bool) {
		pairs, err := ParseHstore([]byte(s))
		if err == nil {
			again, err := ParseHstore([]byte(formatHstore(pairs)))
			if err != nil || !reflect.DeepEqual(again, pairs) {
				t.Fatalf("ParseHstore(%q) = %v; written back %q, parsed %v, %v", s, show(pairs), formatHstore(pairs), show(again), err)
			}
		}
		want := map[string]*string{key: &val, key + "2": nil}
		if !null {
			want[key+"2"] = &key
		}
		text := formatHstore(want)
		got, err := ParseHstore([]byte(text))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseHstore(%q) = %v, %v; want %v", text, show(got), err, show(want))
		}
	})
}

package mapping

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Postgres type OIDs, spelled out independently of the package's constants.
const (
	pgBool        = 16
	pgBytea       = 17
	pgInt8        = 20
	pgInt2        = 21
	pgInt4        = 23
	pgText        = 25
	pgOID         = 26
	pgJSON        = 114
	pgFloat4      = 700
	pgFloat8      = 701
	pgBPChar      = 1042
	pgVarchar     = 1043
	pgDate        = 1082
	pgTimestamp   = 1114
	pgTimestamptz = 1184
	pgNumeric     = 1700
	pgUUID        = 2950
	pgJSONB       = 3802
)

func text(s string) Value { return Value{Kind: ValueText, Data: []byte(s)} }

var (
	nullValue      = Value{Kind: ValueNull}
	unchangedValue = Value{Kind: ValueUnchanged}
)

// resolveColumn resolves a table with an int8 identity key "k" and one
// column "c" of the given source type and spec.
func resolveColumn(oid uint32, spec ColumnSpec, caps Caps) (*Table, error) {
	return Resolve(TableSpec{
		Source:  "public.t",
		Target:  "t",
		OrderBy: []string{"k"},
		Columns: map[string]ColumnSpec{"c": spec},
	}, []SourceColumn{{Name: "k", TypeOID: pgInt8, Identity: true}, {Name: "c", TypeOID: oid}}, caps)
}

// convert maps one value of column "c" through Resolve and Row.
func convert(t *testing.T, oid uint32, spec ColumnSpec, caps Caps, v Value) (any, error) {
	t.Helper()
	tbl, err := resolveColumn(oid, spec, caps)
	if err != nil {
		t.Fatalf("Resolve(oid %d, %+v, %+v): %v", oid, spec, caps, err)
	}
	dst := []any{"junk", "junk"}
	unchanged, err := tbl.Row([]Value{text("1"), v}, dst, nil)
	if len(unchanged) != 0 {
		t.Errorf("unchanged = %v, want none", unchanged)
	}
	if err != nil {
		return nil, err
	}
	if dst[0] != int64(1) {
		t.Errorf("key column = %#v, want int64(1)", dst[0])
	}
	return dst[1], nil
}

var (
	epochUTC   = time.Unix(0, 0).UTC()
	noCaps     = Caps{}
	dt64Caps   = Caps{DateTime64: true}
	allCaps    = Caps{DateTime64: true, Bool: true, Date32: true}
	sampleUUID = uuid.UUID{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
)

func TestConvert(t *testing.T) {
	xx := ColumnSpec{Transform: TransformXXHash64}
	for _, tc := range []struct {
		name string
		oid  uint32
		spec ColumnSpec
		caps Caps
		in   Value
		want any
	}{
		// NULL becomes the type's default, or nil when nullable.
		{"null UInt64", pgInt8, ColumnSpec{Type: "UInt64"}, noCaps, nullValue, uint64(0)},
		{"null UInt8", pgInt2, ColumnSpec{Type: "UInt8"}, noCaps, nullValue, uint8(0)},
		{"null Int32 default", pgInt4, ColumnSpec{}, noCaps, nullValue, int32(0)},
		{"null Int64 default", pgInt8, ColumnSpec{}, noCaps, nullValue, int64(0)},
		{"null String", pgText, ColumnSpec{}, noCaps, nullValue, ""},
		{"null LowCardinality(String)", pgVarchar, ColumnSpec{Type: "LowCardinality(String)"}, noCaps, nullValue, ""},
		{"null DateTime", pgTimestamptz, ColumnSpec{}, noCaps, nullValue, epochUTC},
		{"null DateTime64", pgTimestamptz, ColumnSpec{}, dt64Caps, nullValue, epochUTC},
		{"null Date", pgDate, ColumnSpec{}, noCaps, nullValue, epochUTC},
		{"null UUID", pgUUID, ColumnSpec{}, noCaps, nullValue, uuid.UUID{}},
		{"null Float32", pgFloat4, ColumnSpec{}, noCaps, nullValue, float32(0)},
		{"null Float64", pgFloat8, ColumnSpec{}, noCaps, nullValue, float64(0)},
		{"null bool", pgBool, ColumnSpec{}, noCaps, nullValue, uint8(0)},
		{"null xxhash64 bytea", pgBytea, xx, noCaps, nullValue, uint64(0)},
		{"null nullable UInt64", pgInt8, ColumnSpec{Type: "UInt64", Nullable: true}, noCaps, nullValue, nil},
		{"null nullable default String", pgText, ColumnSpec{Nullable: true}, noCaps, nullValue, nil},
		{"null Nullable(Int32) type", pgInt4, ColumnSpec{Type: "Nullable(Int32)"}, noCaps, nullValue, nil},
		{"null nullable DateTime64", pgTimestamptz, ColumnSpec{Nullable: true}, dt64Caps, nullValue, nil},
		{"null nullable xxhash64", pgBytea, ColumnSpec{Transform: TransformXXHash64, Nullable: true}, noCaps, nullValue, nil},
		{"value of nullable UInt64", pgInt8, ColumnSpec{Type: "UInt64", Nullable: true}, noCaps, text("42"), uint64(42)},

		// xxHash64 against the reference implementation's published vectors.
		{"xxhash64 bytea empty", pgBytea, xx, noCaps, text(`\x`), uint64(0xef46db3751d8e999)},
		{"xxhash64 bytea a", pgBytea, xx, noCaps, text(`\x61`), uint64(0xd24ec4f1a98c6e5b)},
		{"xxhash64 bytea abc", pgBytea, xx, noCaps, text(`\x616263`), uint64(0x44bc2cf5ad770999)},
		{"xxhash64 bytea with explicit UInt64", pgBytea, ColumnSpec{Type: "UInt64", Transform: TransformXXHash64}, noCaps, text(`\x616263`), uint64(0x44bc2cf5ad770999)},
		{"xxhash64 text hashes the text", pgText, xx, noCaps, text("abc"), uint64(0x44bc2cf5ad770999)},
		{"xxhash64 text empty", pgText, xx, noCaps, text(""), uint64(0xef46db3751d8e999)},
		{"bytea to String is the raw bytes", pgBytea, ColumnSpec{}, noCaps, text(`\x61620aff`), "ab\n\xff"},
		{"bytea upper-case hex digits", pgBytea, ColumnSpec{}, noCaps, text(`\x4A4b`), "JK"},
		{"bytea empty", pgBytea, ColumnSpec{}, noCaps, text(`\x`), ""},

		// Integers.
		{"UInt64 zero", pgInt8, ColumnSpec{Type: "UInt64"}, noCaps, text("0"), uint64(0)},
		{"UInt64 max from numeric", pgNumeric, ColumnSpec{Type: "UInt64"}, noCaps, text("18446744073709551615"), uint64(math.MaxUint64)},
		{"UInt64 from int8 max", pgInt8, ColumnSpec{Type: "UInt64"}, noCaps, text("9223372036854775807"), uint64(math.MaxInt64)},
		{"UInt8 max", pgInt4, ColumnSpec{Type: "UInt8"}, noCaps, text("255"), uint8(255)},
		{"UInt8 zero", pgInt4, ColumnSpec{Type: "UInt8"}, noCaps, text("0"), uint8(0)},
		{"UInt8 from int2", pgInt2, ColumnSpec{Type: "UInt8"}, noCaps, text("7"), uint8(7)},
		{"UInt16 max", pgInt4, ColumnSpec{Type: "UInt16"}, noCaps, text("65535"), uint16(65535)},
		{"UInt32 max", pgInt8, ColumnSpec{Type: "UInt32"}, noCaps, text("4294967295"), uint32(math.MaxUint32)},
		{"UInt32 from oid", pgOID, ColumnSpec{}, noCaps, text("4294967295"), uint32(math.MaxUint32)},
		{"Int8 min", pgInt2, ColumnSpec{Type: "Int8"}, noCaps, text("-128"), int8(-128)},
		{"Int8 max", pgInt2, ColumnSpec{Type: "Int8"}, noCaps, text("127"), int8(127)},
		{"Int16 default min", pgInt2, ColumnSpec{}, noCaps, text("-32768"), int16(-32768)},
		{"Int32 default max", pgInt4, ColumnSpec{}, noCaps, text("2147483647"), int32(math.MaxInt32)},
		{"Int64 default min", pgInt8, ColumnSpec{}, noCaps, text("-9223372036854775808"), int64(math.MinInt64)},
		{"Int64 from numeric", pgNumeric, ColumnSpec{Type: "Int64"}, noCaps, text("-42"), int64(-42)},
		{"bool t to UInt8", pgBool, ColumnSpec{Type: "UInt8"}, noCaps, text("t"), uint8(1)},
		{"bool f to UInt8", pgBool, ColumnSpec{Type: "UInt8"}, noCaps, text("f"), uint8(0)},
		{"bool t default", pgBool, ColumnSpec{}, noCaps, text("t"), uint8(1)},
		{"negative zero float8 into Int64", pgFloat8, ColumnSpec{Type: "Int64"}, noCaps, text("-0"), int64(0)},
		// float8 prints negative zero as "-0"; the unsigned converter exempts
		// "-0" from the negative check, so it must map to 0 like "0" does.
		{"negative zero float8 into UInt64", pgFloat8, ColumnSpec{Type: "UInt64"}, noCaps, text("-0"), uint64(0)},
		{"bool t to Int64", pgBool, ColumnSpec{Type: "Int64"}, noCaps, text("t"), int64(1)},
		{"bool t to UInt64", pgBool, ColumnSpec{Type: "UInt64"}, noCaps, text("t"), uint64(1)},

		// Floats.
		{"Float64", pgFloat8, ColumnSpec{}, noCaps, text("1.5"), float64(1.5)},
		{"Float32", pgFloat4, ColumnSpec{}, noCaps, text("0.1"), float32(0.1)},
		{"Float64 from int4", pgInt4, ColumnSpec{Type: "Float64"}, noCaps, text("-3"), float64(-3)},
		{"Float64 from numeric", pgNumeric, ColumnSpec{Type: "Float64"}, noCaps, text("123.25"), float64(123.25)},

		// Strings and UUIDs.
		{"text", pgText, ColumnSpec{}, noCaps, text("hello, мир"), "hello, мир"},
		{"varchar to LowCardinality(String)", pgVarchar, ColumnSpec{Type: "LowCardinality(String)"}, noCaps, text("push"), "push"},
		{"json keeps its text", pgJSON, ColumnSpec{}, noCaps, text(`{"a": 1}`), `{"a": 1}`},
		{"jsonb keeps its text", pgJSONB, ColumnSpec{}, noCaps, text(`{"a": 1}`), `{"a": 1}`},
		{"numeric keeps its text", pgNumeric, ColumnSpec{}, noCaps, text("1.50"), "1.50"},
		{"bpchar keeps its padding", pgBPChar, ColumnSpec{}, noCaps, text("ab  "), "ab  "},
		{"uuid", pgUUID, ColumnSpec{}, noCaps, text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), sampleUUID},
		{"uuid text to UUID", pgText, ColumnSpec{Type: "UUID"}, noCaps, text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), sampleUUID},
		{"uuid varchar to UUID", pgVarchar, ColumnSpec{Type: "UUID"}, noCaps, text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), sampleUUID},

		// Timestamps.
		{"timestamptz micros", pgTimestamptz, ColumnSpec{}, dt64Caps, text("2024-05-01 10:11:12.123456+00"), time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC)},
		{"timestamptz offset to UTC", pgTimestamptz, ColumnSpec{}, dt64Caps, text("2024-05-01 10:11:12+05:30"), time.Date(2024, 5, 1, 4, 41, 12, 0, time.UTC)},
		{"timestamptz negative offset", pgTimestamptz, ColumnSpec{}, dt64Caps, text("2024-05-01 22:11:12.5-03"), time.Date(2024, 5, 2, 1, 11, 12, 500000000, time.UTC)},
		{"timestamptz seconds offset", pgTimestamptz, ColumnSpec{}, dt64Caps, text("1900-01-01 12:00:00+01:00:30"), time.Date(1900, 1, 1, 10, 59, 30, 0, time.UTC)},
		{"timestamp without zone is UTC", pgTimestamp, ColumnSpec{}, dt64Caps, text("2024-05-01 10:11:12.000001"), time.Date(2024, 5, 1, 10, 11, 12, 1000, time.UTC)},
		{"DateTime", pgTimestamptz, ColumnSpec{}, noCaps, text("2024-05-01 10:11:12+00"), time.Date(2024, 5, 1, 10, 11, 12, 0, time.UTC)},
		{"DateTime epoch", pgTimestamptz, ColumnSpec{}, noCaps, text("1970-01-01 00:00:00+00"), epochUTC},
		{"DateTime last second", pgTimestamptz, ColumnSpec{}, noCaps, text("2106-02-07 06:28:15+00"), time.Date(2106, 2, 7, 6, 28, 15, 0, time.UTC)},
		{"DateTime64 before 1970", pgTimestamptz, ColumnSpec{}, dt64Caps, text("1969-07-20 20:17:40+00"), time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC)},
		{"DateTime64 first second", pgTimestamptz, ColumnSpec{}, dt64Caps, text("1900-01-01 00:00:00+00"), time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"DateTime64 last second", pgTimestamptz, ColumnSpec{}, dt64Caps, text("2299-12-31 23:59:59+00"), time.Date(2299, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"date", pgDate, ColumnSpec{}, noCaps, text("2024-05-01"), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"date to DateTime", pgDate, ColumnSpec{Type: "DateTime"}, noCaps, text("2024-05-01"), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"timestamp to Date", pgTimestamp, ColumnSpec{Type: "Date"}, noCaps, text("2024-05-01 23:59:59"), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := convert(t, tc.oid, tc.spec, tc.caps, tc.in)
			if err != nil {
				t.Fatalf("convert %q: %v", tc.in.Data, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("convert %q = %#v (%T), want %#v (%T)", tc.in.Data, got, got, tc.want, tc.want)
			}
			if tm, ok := got.(time.Time); ok && tm.Location() != time.UTC {
				t.Errorf("time %v is in %v, want UTC", tm, tm.Location())
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	xx := ColumnSpec{Transform: TransformXXHash64}
	for _, tc := range []struct {
		name     string
		oid      uint32
		spec     ColumnSpec
		caps     Caps
		in       string
		negative bool // the error must be errNegative
	}{
		{"negative into UInt64", pgInt4, ColumnSpec{Type: "UInt64"}, noCaps, "-5", true},
		{"negative into UInt8", pgInt4, ColumnSpec{Type: "UInt8"}, noCaps, "-1", true},
		{"negative into UInt32", pgInt8, ColumnSpec{Type: "UInt32"}, noCaps, "-4294967295", true},
		{"min int8 into UInt64", pgInt8, ColumnSpec{Type: "UInt64"}, noCaps, "-9223372036854775808", true},
		{"huge negative numeric into UInt64", pgNumeric, ColumnSpec{Type: "UInt64"}, noCaps, "-18446744073709551615", false},
		{"negative fraction into UInt64", pgNumeric, ColumnSpec{Type: "UInt64"}, noCaps, "-1.5", false},
		{"UInt8 out of range", pgInt4, ColumnSpec{Type: "UInt8"}, noCaps, "300", false},
		{"UInt8 just out of range", pgInt4, ColumnSpec{Type: "UInt8"}, noCaps, "256", false},
		{"UInt16 out of range", pgInt4, ColumnSpec{Type: "UInt16"}, noCaps, "65536", false},
		{"UInt32 out of range", pgInt8, ColumnSpec{Type: "UInt32"}, noCaps, "4294967296", false},
		{"UInt64 out of range", pgNumeric, ColumnSpec{Type: "UInt64"}, noCaps, "18446744073709551616", false},
		{"Int8 out of range", pgInt2, ColumnSpec{Type: "Int8"}, noCaps, "128", false},
		{"Int8 below range", pgInt2, ColumnSpec{Type: "Int8"}, noCaps, "-129", false},
		{"Int16 out of range", pgInt4, ColumnSpec{Type: "Int16"}, noCaps, "32768", false},
		{"Int32 out of range", pgInt8, ColumnSpec{Type: "Int32"}, noCaps, "2147483648", false},
		{"Int64 out of range", pgNumeric, ColumnSpec{Type: "Int64"}, noCaps, "9223372036854775808", false},
		{"numeric fraction into Int64", pgNumeric, ColumnSpec{Type: "Int64"}, noCaps, "1.5", false},
		{"numeric NaN into UInt64", pgNumeric, ColumnSpec{Type: "UInt64"}, noCaps, "NaN", false},
		{"empty into Int32", pgInt4, ColumnSpec{}, noCaps, "", false},
		{"bool garbage", pgBool, ColumnSpec{}, noCaps, "true", false},
		{"float garbage", pgFloat8, ColumnSpec{}, noCaps, "1.5x", false},
		{"Float32 out of range", pgFloat8, ColumnSpec{Type: "Float32"}, noCaps, "1e300", false},
		{"uuid garbage", pgUUID, ColumnSpec{}, noCaps, "not-a-uuid", false},
		{"bytea not hex", pgBytea, xx, noCaps, "abc", false},
		{"bytea odd hex", pgBytea, xx, noCaps, `\x616`, false},
		{"bytea bad hex", pgBytea, xx, noCaps, `\xzz`, false},
		{"bytea to String not hex", pgBytea, ColumnSpec{}, noCaps, `\001abc`, false},
		{"timestamptz infinity", pgTimestamptz, ColumnSpec{}, dt64Caps, "infinity", false},
		{"timestamptz -infinity", pgTimestamptz, ColumnSpec{}, dt64Caps, "-infinity", false},
		{"DateTime infinity", pgTimestamptz, ColumnSpec{}, noCaps, "infinity", false},
		{"timestamp BC", pgTimestamp, ColumnSpec{}, dt64Caps, "2024-05-01 10:11:12 BC", false},
		{"date BC", pgDate, ColumnSpec{}, noCaps, "0044-03-15 BC", false},
		{"timestamp garbage", pgTimestamptz, ColumnSpec{}, dt64Caps, "yesterday", false},
		{"timestamp not ISO", pgTimestamptz, ColumnSpec{}, dt64Caps, "Wed May 01 10:11:12 2024 UTC", false},
		{"DateTime before 1970", pgTimestamptz, ColumnSpec{}, noCaps, "1969-12-31 23:59:59+00", false},
		{"DateTime year 1900", pgTimestamp, ColumnSpec{}, noCaps, "1900-01-01 00:00:00", false},
		{"DateTime after 2106", pgTimestamptz, ColumnSpec{}, noCaps, "2106-02-07 06:28:16+00", false},
		{"DateTime64 before 1900", pgTimestamptz, ColumnSpec{}, dt64Caps, "1899-12-31 23:59:59+00", false},
		{"DateTime64 after 2299", pgTimestamptz, ColumnSpec{}, dt64Caps, "2300-01-01 00:00:00+00", false},
		{"Date before 1970", pgDate, ColumnSpec{}, noCaps, "1969-12-31", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := convert(t, tc.oid, tc.spec, tc.caps, text(tc.in))
			if err == nil {
				t.Fatalf("convert %q = %#v (%T), want an error", tc.in, got, got)
			}
			var ce *ColumnError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, want *ColumnError", err, err)
			}
			if ce.Column != "c" || !strings.HasPrefix(err.Error(), "column c: ") {
				t.Errorf("error %q names column %q, want c", err, ce.Column)
			}
			if tc.negative && !errors.Is(err, errNegative) {
				t.Errorf("error %q is not errNegative", err)
			}
		})
	}
}

func TestResolveTypes(t *testing.T) {
	for _, tc := range []struct {
		name string
		oid  uint32
		spec ColumnSpec
		caps Caps
		want Type
		str  string
	}{
		{"timestamptz with DateTime64", pgTimestamptz, ColumnSpec{}, dt64Caps, Type{Kind: KindDateTime64, Precision: 6, TimeZone: "UTC"}, "DateTime64(6, 'UTC')"},
		{"timestamp with DateTime64", pgTimestamp, ColumnSpec{}, dt64Caps, Type{Kind: KindDateTime64, Precision: 6, TimeZone: "UTC"}, "DateTime64(6, 'UTC')"},
		{"timestamptz without DateTime64", pgTimestamptz, ColumnSpec{}, noCaps, Type{Kind: KindDateTime, TimeZone: "UTC"}, "DateTime('UTC')"},
		{"xxhash64 defaults to UInt64", pgBytea, ColumnSpec{Transform: TransformXXHash64}, noCaps, Type{Kind: KindUInt64}, "UInt64"},
		{"nullable flag", pgInt4, ColumnSpec{Nullable: true}, noCaps, Type{Kind: KindInt32, Nullable: true}, "Nullable(Int32)"},
		{"nullable explicit type", pgInt8, ColumnSpec{Type: "UInt64", Nullable: true}, noCaps, Type{Kind: KindUInt64, Nullable: true}, "Nullable(UInt64)"},
		{"configured LowCardinality", pgVarchar, ColumnSpec{Type: "LowCardinality(String)"}, noCaps, Type{Kind: KindString, LowCardinality: true}, "LowCardinality(String)"},
		{"configured DateTime64(3)", pgTimestamptz, ColumnSpec{Type: "DateTime64(3)"}, dt64Caps, Type{Kind: KindDateTime64, Precision: 3}, "DateTime64(3)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := resolveColumn(tc.oid, tc.spec, tc.caps)
			if err != nil {
				t.Fatal(err)
			}
			c := tbl.Columns[1]
			if c.Name != "c" || c.Type != tc.want || c.SourceOID != tc.oid || c.Transform != tc.spec.Transform {
				t.Errorf("column = {%s %+v oid %d %q}, want {c %+v oid %d %q}", c.Name, c.Type, c.SourceOID, c.Transform, tc.want, tc.oid, tc.spec.Transform)
			}
			if s := c.Type.String(); s != tc.str {
				t.Errorf("Type.String() = %q, want %q", s, tc.str)
			}
		})
	}
}

func TestDefaultType(t *testing.T) {
	for _, tc := range []struct {
		oid  uint32
		caps Caps
		want string
	}{
		{pgBool, noCaps, "UInt8"},
		{pgInt2, noCaps, "Int16"},
		{pgInt4, noCaps, "Int32"},
		{pgInt8, noCaps, "Int64"},
		{pgOID, noCaps, "UInt32"},
		{pgFloat4, noCaps, "Float32"},
		{pgFloat8, noCaps, "Float64"},
		{pgUUID, noCaps, "UUID"},
		{pgDate, noCaps, "Date"},
		{pgTimestamp, noCaps, "DateTime('UTC')"},
		{pgTimestamptz, noCaps, "DateTime('UTC')"},
		{pgTimestamp, dt64Caps, "DateTime64(6, 'UTC')"},
		{pgTimestamptz, dt64Caps, "DateTime64(6, 'UTC')"},
		{pgText, noCaps, "String"},
		{pgVarchar, noCaps, "String"},
		{pgBPChar, noCaps, "String"},
		{pgBytea, noCaps, "String"},
		{pgNumeric, noCaps, "String"},
		{pgJSON, noCaps, "String"},
		{pgJSONB, noCaps, "String"},
		{600, noCaps, "String"}, // point
	} {
		if got := DefaultType(tc.oid, tc.caps).String(); got != tc.want {
			t.Errorf("DefaultType(%d, %+v) = %s, want %s", tc.oid, tc.caps, got, tc.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	key := SourceColumn{Name: "id", TypeOID: pgInt8, Identity: true}
	for _, tc := range []struct {
		name     string
		spec     TableSpec
		src      []SourceColumn
		caps     Caps
		contains []string
	}{
		{"configured column missing", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"gone": {Type: "UInt64"}}},
			[]SourceColumn{key}, noCaps, []string{`"gone"`, "does not exist"}},
		{"xxhash64 into String", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"fp": {Type: "String", Transform: TransformXXHash64}}},
			[]SourceColumn{key, {Name: "fp", TypeOID: pgBytea}}, noCaps, []string{"column fp", "xxhash64", "UInt64"}},
		{"xxhash64 into Nullable(Int64)", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"fp": {Type: "Nullable(Int64)", Transform: TransformXXHash64}}},
			[]SourceColumn{key, {Name: "fp", TypeOID: pgBytea}}, noCaps, []string{"column fp", "xxhash64"}},
		{"unknown transform", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"fp": {Transform: "md5"}}},
			[]SourceColumn{key, {Name: "fp", TypeOID: pgBytea}}, noCaps, []string{"column fp", `"md5"`}},
		{"configured DateTime64 without capability", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"ts": {Type: "DateTime64(3, 'UTC')"}}},
			[]SourceColumn{key, {Name: "ts", TypeOID: pgTimestamptz}}, noCaps, []string{"column ts", "DateTime64(3, 'UTC')", "20.1"}},
		{"nullable DateTime64 without capability", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"ts": {Type: "Nullable(DateTime64(6))"}}},
			[]SourceColumn{key, {Name: "ts", TypeOID: pgTimestamptz}}, noCaps, []string{"column ts", "20.1"}},
		{"invalid type", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "Decimal(40,2)"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgNumeric}}, noCaps, []string{"column x", "Decimal(40,2)", "P <= 38"}},
		{"array into a scalar", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "Int32"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: 1007}}, noCaps, []string{"column x", "Array(T) or String"}},
		{"scalar into an array", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "Array(Int32)"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgInt4}}, noCaps, []string{"column x", "Array(Int32)"}},
		{"Bool without capability", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "Bool"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: 16}}, noCaps, []string{"column x", "21.12"}},
		{"nullable LowCardinality", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "LowCardinality(String)", Nullable: true}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgText}}, noCaps, []string{"column x", "LowCardinality"}},
		{"text into UInt64", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "UInt64"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgText}}, noCaps, []string{"column x", "UInt64"}},
		{"int4 into UUID", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "UUID"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgInt4}}, noCaps, []string{"column x", "UUID"}},
		{"int4 into DateTime", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "DateTime"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgInt4}}, noCaps, []string{"column x", "DateTime"}},
		{"text into Float64", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "Float64"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgText}}, noCaps, []string{"column x", "Float64"}},
		{"text into Date", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"x": {Type: "Date"}}},
			[]SourceColumn{key, {Name: "x", TypeOID: pgText}}, noCaps, []string{"column x", "Date"}},
		{"empty order_by", TableSpec{}, []SourceColumn{key}, noCaps, []string{"order_by is empty"}},
		{"order_by column missing", TableSpec{OrderBy: []string{"nope"}}, []SourceColumn{key}, noCaps, []string{`"nope"`, "does not exist"}},
		{"nullable order_by column", TableSpec{OrderBy: []string{"id"}, Columns: map[string]ColumnSpec{"id": {Nullable: true}}},
			[]SourceColumn{key}, noCaps, []string{`"id"`, "nullable"}},
		{"_version collides", TableSpec{OrderBy: []string{"id"}}, []SourceColumn{key, {Name: "_version", TypeOID: pgInt8}}, noCaps, []string{`"_version"`}},
		{"_deleted collides", TableSpec{OrderBy: []string{"id"}}, []SourceColumn{key, {Name: "_deleted", TypeOID: pgBool}}, noCaps, []string{`"_deleted"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Source = "public.t"
			tc.spec.Target = "t"
			tbl, err := Resolve(tc.spec, tc.src, tc.caps)
			if err == nil {
				t.Fatalf("Resolve = %+v, want an error", tbl)
			}
			if tbl != nil {
				t.Errorf("Resolve returned a table with the error")
			}
			for _, s := range append(tc.contains, "public.t") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// eventsTable resolves a table like public.events: id int8 key and tenant
// int4 in the replica identity, then non-identity columns.
func eventsTable(t *testing.T, caps Caps) *Table {
	t.Helper()
	tbl, err := Resolve(TableSpec{
		Source:  "public.events",
		Target:  "events",
		OrderBy: []string{"tenant", "id"},
		Columns: map[string]ColumnSpec{
			"id":          {Type: "UInt64"},
			"fingerprint": {Transform: TransformXXHash64},
			"target_type": {Type: "LowCardinality(String)"},
			"note":        {Nullable: true},
		},
	}, []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "tenant", TypeOID: pgInt4, Identity: true},
		{Name: "target_type", TypeOID: pgVarchar},
		{Name: "created_at", TypeOID: pgTimestamptz},
		{Name: "fingerprint", TypeOID: pgBytea},
		{Name: "note", TypeOID: pgText},
	}, caps)
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func TestResolveTable(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	if tbl.Source != "public.events" || tbl.Target != "events" {
		t.Errorf("Source, Target = %q, %q", tbl.Source, tbl.Target)
	}
	wantNames := []string{"id", "tenant", "target_type", "created_at", "fingerprint", "note"}
	wantTypes := []string{"UInt64", "Int32", "LowCardinality(String)", "DateTime64(6, 'UTC')", "UInt64", "Nullable(String)"}
	if len(tbl.Columns) != len(wantNames) {
		t.Fatalf("%d columns, want %d", len(tbl.Columns), len(wantNames))
	}
	for i, c := range tbl.Columns {
		if c.Name != wantNames[i] || c.Type.String() != wantTypes[i] {
			t.Errorf("column %d = %s %s, want %s %s", i, c.Name, c.Type, wantNames[i], wantTypes[i])
		}
	}
	if !reflect.DeepEqual(tbl.Key, []int{1, 0}) {
		t.Errorf("Key = %v, want [1 0] (order_by order)", tbl.Key)
	}
	if got := tbl.ColumnIndex("created_at"); got != 3 {
		t.Errorf("ColumnIndex(created_at) = %d, want 3", got)
	}
	if got := tbl.ColumnIndex("nope"); got != -1 {
		t.Errorf("ColumnIndex(nope) = %d, want -1", got)
	}
}

func TestRow(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	row := []Value{text("5"), text("7"), text("push"), text("2024-05-01 10:11:12.123456+00"), text(`\x616263`), nullValue}
	dst := make([]any, len(tbl.Columns))
	unchanged, err := tbl.Row(row, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if unchanged != nil {
		t.Errorf("unchanged = %v, want nil", unchanged)
	}
	want := []any{uint64(5), int32(7), "push", time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC), uint64(0x44bc2cf5ad770999), nil}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("Row = %#v, want %#v", dst, want)
	}
	if got, wantKey := tbl.KeyString(dst), "tenant=7, id=5"; got != wantKey {
		t.Errorf("KeyString = %q, want %q", got, wantKey)
	}
	if got, wantKey := tbl.KeyOf(row), "tenant=7, id=5"; got != wantKey {
		t.Errorf("KeyOf = %q, want %q", got, wantKey)
	}
	if got, wantKey := tbl.KeyOf(row[:1]), "tenant=?, id=5"; got != wantKey {
		t.Errorf("KeyOf(short) = %q, want %q", got, wantKey)
	}
}

func TestRowUnchanged(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	row := []Value{text("5"), text("7"), unchangedValue, text("2024-05-01 10:11:12+00"), unchangedValue, nullValue}
	dst := []any{"x", "x", "x", "x", "x", "x"}
	unchanged, err := tbl.Row(row, dst, []int{42})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(unchanged, []int{42, 2, 4}) {
		t.Errorf("unchanged = %v, want [42 2 4] (appended to the passed slice)", unchanged)
	}
	want := []any{uint64(5), int32(7), nil, time.Date(2024, 5, 1, 10, 11, 12, 0, time.UTC), nil, nil}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("Row = %#v, want %#v", dst, want)
	}
}

func TestRowErrors(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	good := func() []Value {
		return []Value{text("5"), text("7"), text("push"), text("2024-05-01 10:11:12+00"), text(`\x00`), text("n")}
	}
	for _, tc := range []struct {
		name   string
		vals   []Value
		column string // "" when the error is not a *ColumnError
	}{
		{"too few values", good()[:5], ""},
		{"too many values", append(good(), text("x")), ""},
		{"binary value kind", func() []Value { v := good(); v[3] = Value{Kind: 'b', Data: []byte{1}}; return v }(), "created_at"},
		{"zero value kind", func() []Value { v := good(); v[5] = Value{}; return v }(), "note"},
		{"negative id", func() []Value { v := good(); v[0] = text("-5"); return v }(), "id"},
		{"bad fingerprint", func() []Value { v := good(); v[4] = text("abc"); return v }(), "fingerprint"},
		{"infinity", func() []Value { v := good(); v[3] = text("infinity"); return v }(), "created_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]any, len(tc.vals)+1)
			_, err := tbl.Row(tc.vals, dst, nil)
			if err == nil {
				t.Fatalf("Row = %#v, want an error", dst)
			}
			var ce *ColumnError
			isCol := errors.As(err, &ce)
			if tc.column == "" {
				if isCol {
					t.Errorf("error %v is a *ColumnError", err)
				}
				return
			}
			if !isCol || ce.Column != tc.column {
				t.Errorf("error %v (%T), want *ColumnError for column %s", err, err, tc.column)
			}
		})
	}
	// A negative value never becomes a wrapped unsigned number.
	dst := make([]any, len(tbl.Columns))
	v := good()
	v[0] = text("-5")
	if _, err := tbl.Row(v, dst, nil); !errors.Is(err, errNegative) {
		t.Errorf("negative id: err = %v, want errNegative", err)
	}
	if dst[0] != nil {
		t.Errorf("negative id: dst[0] = %#v, want untouched nil", dst[0])
	}
}

func TestTombstone(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	dst := []any{"x", "x", "x", "x", "x", "x"}
	old := []Value{text("5"), text("7"), nullValue, nullValue, nullValue, nullValue}
	if err := tbl.Tombstone(old, dst); err != nil {
		t.Fatal(err)
	}
	want := []any{uint64(5), int32(7), "", epochUTC, uint64(0), nil}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("Tombstone = %#v, want %#v", dst, want)
	}

	// Values of non-identity columns (REPLICA IDENTITY FULL with a catalog
	// that marks only the key) are not copied: a tombstone carries defaults.
	full := []Value{text("5"), text("7"), text("push"), text("2024-05-01 10:11:12+00"), text(`\x61`), text("n")}
	if err := tbl.Tombstone(full, dst); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("Tombstone(full old row) = %#v, want %#v", dst, want)
	}
}

func TestTombstoneErrors(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	for _, tc := range []struct {
		name   string
		old    []Value
		column string
	}{
		{"wrong length", []Value{text("5"), text("7")}, ""},
		{"key column null", []Value{nullValue, text("7"), nullValue, nullValue, nullValue, nullValue}, "id"},
		{"second key column null", []Value{text("5"), nullValue, nullValue, nullValue, nullValue, nullValue}, "tenant"},
		{"key column unchanged", []Value{text("5"), unchangedValue, nullValue, nullValue, nullValue, nullValue}, "tenant"},
		{"key column invalid", []Value{text("-1"), text("7"), nullValue, nullValue, nullValue, nullValue}, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]any, len(tbl.Columns))
			err := tbl.Tombstone(tc.old, dst)
			if err == nil {
				t.Fatalf("Tombstone = %#v, want an error", dst)
			}
			var ce *ColumnError
			if tc.column == "" {
				if errors.As(err, &ce) {
					t.Errorf("error %v is a *ColumnError", err)
				}
				return
			}
			if !errors.As(err, &ce) || ce.Column != tc.column {
				t.Errorf("error %v (%T), want *ColumnError for column %s", err, err, tc.column)
			}
		})
	}
}

func TestKeyString(t *testing.T) {
	tbl, err := Resolve(TableSpec{
		Source: "s.t", Target: "t",
		OrderBy: []string{"name", "n", "u", "small", "ts"},
		Columns: map[string]ColumnSpec{"u": {Type: "UInt64"}, "small": {Type: "UInt8"}},
	}, []SourceColumn{
		{Name: "u", TypeOID: pgInt8, Identity: true},
		{Name: "n", TypeOID: pgInt8, Identity: true},
		{Name: "name", TypeOID: pgText, Identity: true},
		{Name: "small", TypeOID: pgInt2, Identity: true},
		{Name: "ts", TypeOID: pgTimestamptz, Identity: true},
	}, noCaps)
	if err != nil {
		t.Fatal(err)
	}
	row := []any{uint64(math.MaxUint64), int64(-3), "a \"b\"\n", uint8(9), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)}
	want := `name="a \"b\"\n", n=-3, u=18446744073709551615, small=9, ts=2024-05-01 00:00:00 +0000 UTC`
	if got := tbl.KeyString(row); got != want {
		t.Errorf("KeyString = %q, want %q", got, want)
	}
}

func TestCheckIdentity(t *testing.T) {
	src := []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "tenant", TypeOID: pgInt4, Identity: true},
		{Name: "created_at", TypeOID: pgTimestamptz},
		{Name: "kind", TypeOID: pgText},
	}
	for _, tc := range []struct {
		name      string
		orderBy   []string
		partition string
		placed    []string // key columns outside the identity
		ident     []string // columns a row is found by
		err       string   // in the error; "" means no error
		unique    []string
	}{
		{"order_by lacks identity tenant", []string{"id"}, "", nil, nil, `order_by does not hold the replica identity column(s) tenant, ` +
			`so two Postgres rows that differ only there would be one ClickHouse row: add tenant to order_by, or, if the order_by ` +
			`columns are unique by themselves in Postgres, say so with unique_key = ["id"]`, nil},
		{"identity key said unique", []string{"id"}, "", nil, []string{"id"}, "", []string{"id"}},
		{"two identity columns", []string{"tenant", "id"}, "", nil, []string{"tenant", "id"}, "", nil},
		{"partition by an expression of the identity", []string{"id"}, "intDiv(tenant, 1000)", nil, nil, "tenant", nil},
		{"partition by the identity column", []string{"id"}, "tenant", nil, []string{"id"}, "", nil},
		{"partition by the quoted identity column", []string{"id"}, " `tenant` ", nil, []string{"id"}, "", nil},
		{"partition by a sum of tuples", []string{"id"}, "(tenant) + (id)", nil, nil, "tenant", nil},
		{"partition two identity columns", []string{"id"}, "(tenant, intDiv(id, 1000000))", nil, []string{"id"}, "", nil},
		{"partition string literal is not a column", []string{"id"}, "(tenant, 'kind')", nil, []string{"id"}, "", nil},
		{"order_by non-identity with the identity", []string{"created_at", "tenant", "id"}, "", []string{"created_at"}, []string{"tenant", "id"}, "", nil},
		{"sort and partition outside the identity", []string{"kind", "id", "created_at", "tenant"}, "toYYYYMM(created_at)", []string{"kind", "created_at"}, []string{"id", "tenant"}, "", nil},
		{"partition outside the identity", []string{"tenant", "id"}, "toYYYYMM(`created_at`)", []string{"created_at"}, []string{"tenant", "id"}, "", nil},
		{"order_by lacks an identity column", []string{"created_at", "id"}, "", []string{"created_at"}, nil, "order_by must hold the replica identity column(s) tenant", nil},
		{"partition outside, order_by lacks tenant", []string{"id"}, `toYYYYMM("created_at")`, []string{"created_at"}, nil, "use created_at, which", nil},
		{"same column in both", []string{"created_at"}, "toYYYYMM(created_at)", []string{"created_at"}, nil, "tenant", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := Resolve(TableSpec{Source: "public.events", Target: "events", OrderBy: tc.orderBy, PartitionBy: tc.partition,
				UniqueKey: tc.unique}, src, noCaps)
			if err != nil {
				t.Fatal(err)
			}
			var placed []string
			for _, i := range tbl.PlacedColumns() {
				placed = append(placed, tbl.Columns[i].Name)
			}
			if !slices.Equal(placed, tc.placed) || tbl.Placed() != (tc.placed != nil) {
				t.Errorf("placed columns %v (Placed %v), want %v", placed, tbl.Placed(), tc.placed)
			}
			err = tbl.CheckIdentity()
			if tc.err == "" {
				if err != nil {
					t.Errorf("CheckIdentity: %v", err)
				}
				var ident []string
				for _, i := range tbl.Ident() {
					ident = append(ident, tbl.Columns[i].Name)
				}
				if !slices.Equal(ident, tc.ident) {
					t.Errorf("identifying columns %v, want %v", ident, tc.ident)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckIdentity: no error, want one with %q", tc.err)
			}
			if !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "public.events") {
				t.Errorf("error %q does not contain %q and the table", err, tc.err)
			}
		})
	}
}

// TestCheckUniqueFullIdentity: REPLICA IDENTITY FULL names no key, so the
// sorting key is taken to identify a row.
func TestCheckUniqueFullIdentity(t *testing.T) {
	src := []SourceColumn{{Name: "id", TypeOID: pgInt8, Identity: true}, {Name: "note", TypeOID: pgText, Identity: true}}
	tbl, err := Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"}}, src, noCaps)
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.CheckIdentity(); err != nil {
		t.Errorf("CheckIdentity = %v, want nil under REPLICA IDENTITY FULL", err)
	}
}

func TestHistoryWithoutIdentity(t *testing.T) {
	src := []SourceColumn{{Name: "id", TypeOID: pgInt8}, {Name: "at", TypeOID: pgTimestamptz}}
	tbl, err := Resolve(TableSpec{Source: "public.log", Target: "log", OrderBy: []string{"at"}, Mode: ModeHistory}, src, noCaps)
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.CheckIdentity(); err == nil || !strings.Contains(err.Error(), "no replica identity") {
		t.Errorf("CheckIdentity = %v, want an error naming the missing replica identity", err)
	}
}

func TestPlacedTombstone(t *testing.T) {
	src := []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "author_id", TypeOID: pgInt4},
		{Name: "created_at", TypeOID: pgTimestamptz},
		{Name: "note", TypeOID: pgText},
	}
	tbl, err := Resolve(TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"author_id", "created_at", "id"},
		PartitionBy: "toYYYYMM(created_at)"}, src, dt64Caps)
	if err != nil {
		t.Fatal(err)
	}
	tomb := tbl.NewRow()
	if err := tbl.Tombstone([]Value{text("5"), nullValue, nullValue, nullValue}, tomb); err != nil {
		t.Fatalf("a delete that carries only the identity: %v", err)
	}
	if got := tbl.IdentText(tomb); got != "id=5" {
		t.Errorf("IdentText = %q, want id=5", got)
	}
	image := tbl.NewRow()
	if _, err := tbl.Row([]Value{text("5"), text("42"), text("2026-10-05 10:00:00+00"), text("x")}, image, nil); err != nil {
		t.Fatal(err)
	}
	tbl.TakePlacement(tomb, image)
	if tbl.Placement(tomb) != tbl.Placement(image) || tomb[3] != "" {
		t.Errorf("tombstone %#v after TakePlacement, want the image's key values %#v and a default note", tomb, image)
	}
}

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Type
		str  string
	}{
		{"UInt64", Type{Kind: KindUInt64}, "UInt64"},
		{"UInt8", Type{Kind: KindUInt8}, "UInt8"},
		{"Int16", Type{Kind: KindInt16}, "Int16"},
		{"Float32", Type{Kind: KindFloat32}, "Float32"},
		{"String", Type{Kind: KindString}, "String"},
		{"UUID", Type{Kind: KindUUID}, "UUID"},
		{"Date", Type{Kind: KindDate}, "Date"},
		{"DateTime", Type{Kind: KindDateTime}, "DateTime"},
		{"LowCardinality(String)", Type{Kind: KindString, LowCardinality: true}, "LowCardinality(String)"},
		{"LowCardinality(Nullable(String))", Type{Kind: KindString, LowCardinality: true, Nullable: true}, "LowCardinality(Nullable(String))"},
		{"DateTime('UTC')", Type{Kind: KindDateTime, TimeZone: "UTC"}, "DateTime('UTC')"},
		{"DateTime('Europe/Berlin')", Type{Kind: KindDateTime, TimeZone: "Europe/Berlin"}, "DateTime('Europe/Berlin')"},
		{"DateTime64(6, 'UTC')", Type{Kind: KindDateTime64, Precision: 6, TimeZone: "UTC"}, "DateTime64(6, 'UTC')"},
		{"DateTime64(0)", Type{Kind: KindDateTime64}, "DateTime64(0)"},
		{"DateTime64(9,'UTC')", Type{Kind: KindDateTime64, Precision: 9, TimeZone: "UTC"}, "DateTime64(9, 'UTC')"},
		{"Nullable(Int32)", Type{Kind: KindInt32, Nullable: true}, "Nullable(Int32)"},
		{"Nullable(DateTime64(3, 'UTC'))", Type{Kind: KindDateTime64, Precision: 3, TimeZone: "UTC", Nullable: true}, "Nullable(DateTime64(3, 'UTC'))"},
		{"  Nullable( UInt8 ) ", Type{Kind: KindUInt8, Nullable: true}, "Nullable(UInt8)"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseType(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ParseType(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			again, err := ParseType(got.String())
			if err != nil || again != got {
				t.Errorf("ParseType(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseTypeErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"uint64",
		"Decimal(40,2)",
		"Decimal(10,12)",
		"Decimal(10)",
		"Decimal(a,b)",
		"Decimal",
		"Array(Array(Int32))",
		"Nullable(Array(Int32))",
		"Array",
		"LowCardinality(UInt64)",
		"LowCardinality(LowCardinality(String))",
		"Nullable(LowCardinality(String))",
		"Nullable(Nullable(String))",
		"Nullable(String, String)",
		"Nullable",
		"DateTime64",
		"DateTime64()",
		"DateTime64(12)",
		"DateTime64(-1)",
		"DateTime64(x)",
		"DateTime64(3, UTC)",
		"DateTime64(3, 'UTC', 1)",
		"DateTime(UTC)",
		"DateTime('')",
		"DateTime('a'b')",
		"DateTime('UTC', 'UTC')",
		"String(",
		"UInt64)",
		"Nullable(String))",
		"Nullable((String)",
		"(String)",
		"Invalid",
	} {
		t.Run(in, func(t *testing.T) {
			typ, err := ParseType(in)
			if err == nil {
				t.Fatalf("ParseType(%q) = %+v, want an error", in, typ)
			}
			if typ != (Type{}) {
				t.Errorf("ParseType(%q) returned %+v with the error", in, typ)
			}
			if !strings.Contains(err.Error(), in) {
				t.Errorf("error %q does not quote the input", err)
			}
		})
	}
}

func TestColumnNames(t *testing.T) {
	tbl := eventsTable(t, dt64Caps)
	want := []string{"id", "tenant", "target_type", "created_at", "fingerprint", "note", "_version", "_deleted", "_seq"}
	if got := tbl.ColumnNames(); !reflect.DeepEqual(got, want) {
		t.Errorf("ColumnNames = %v, want %v", got, want)
	}
}

func TestWidens(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"Int16", "Int32", true},
		{"Int32", "Int64", true},
		{"Int64", "Int32", false},
		{"UInt8", "UInt64", true},
		{"UInt32", "Int64", true},
		{"UInt64", "Int64", false},
		{"Int32", "UInt64", false},
		{"Float32", "Float64", true},
		{"Float64", "Float32", false},
		{"Int32", "String", false},
		{"Int32", "Nullable(Int64)", false},
		{"String", "String", true},
	} {
		from, _ := ParseType(tc.from)
		to, _ := ParseType(tc.to)
		if got := to.Widens(from); got != tc.want {
			t.Errorf("%s widens %s = %v, want %v", tc.to, tc.from, got, tc.want)
		}
	}
}

func TestExcludeAndRename(t *testing.T) {
	src := []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "secret", TypeOID: pgText},
		{Name: "Author Id", TypeOID: pgInt4},
		{Name: "note", TypeOID: pgText},
	}
	spec := TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"author_id", "id"},
		Columns: map[string]ColumnSpec{"Author Id": {Name: "author_id"}}, Exclude: []string{"secret"}}
	tbl, err := Resolve(spec, src, noCaps)
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.MappedNames(); !slices.Equal(got, []string{"id", "author_id", "note"}) {
		t.Errorf("mapped names %v, want id, author_id, note", got)
	}
	row := tbl.NewRow()
	if _, err := tbl.Row([]Value{text("5"), text("hidden"), text("42"), text("n")}, row, nil); err != nil {
		t.Fatal(err)
	}
	if row[0] != int64(5) || row[1] != int32(42) || row[2] != "n" {
		t.Errorf("row %#v, want id 5, author_id 42, note n", row)
	}
	if got := tbl.KeyOf([]Value{text("5"), text("hidden"), text("42"), text("n")}); got != "author_id=42, id=5" {
		t.Errorf("KeyOf = %q", got)
	}
	tomb := tbl.NewRow()
	if err := tbl.Tombstone([]Value{text("5"), nullValue, nullValue, nullValue}, tomb); err != nil || tomb[0] != int64(5) {
		t.Errorf("tombstone %#v, %v", tomb, err)
	}
	if cols := strings.Join(tbl.CopyColumns(), ", "); !strings.Contains(cols, `"Author Id"`) || strings.Contains(cols, "secret") {
		t.Errorf("copy selects %s, want the Postgres names without the excluded column", cols)
	}
	if got := tbl.Tuple(nil, []int{1}, []Value{text("7")}); len(got) != 4 || string(got[2].Data) != "7" || got[0].Kind != ValueNull {
		t.Errorf("Tuple = %v", got)
	}
	// The excluded column may change or go: the mapping does not see it.
	if _, err := Resolve(spec, []SourceColumn{src[0], src[2], src[3]}, noCaps); err != nil {
		t.Errorf("without the excluded column: %v", err)
	}
	for _, tc := range []struct {
		name string
		spec TableSpec
		err  string
	}{
		{"excluded identity", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"note"}, Exclude: []string{"id"}},
			`column "id" is part of the replica identity`},
		{"order_by by the Postgres name", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"Author Id", "id"},
			Columns: spec.Columns}, `order_by names ClickHouse columns: "Author Id" is named "author_id" there`},
		{"order_by an excluded column", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"secret", "id"},
			Exclude: []string{"secret"}}, `order_by column "secret" is excluded`},
		{"partition_by an excluded column", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"id"},
			PartitionBy: "cityHash64(secret) % 4", Exclude: []string{"secret"}}, `partition_by column "secret" is excluded`},
		{"two columns under one name", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"id"},
			Columns: map[string]ColumnSpec{"note": {Name: "secret"}}}, `two columns are named "secret"`},
		{"ttl outside the keys", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"id"},
			Storage: Storage{TTL: "toDate(note) + INTERVAL 1 DAY"}}, `ttl uses column "note"`},
		{"renamed into a meta column", TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"id"},
			Columns: map[string]ColumnSpec{"note": {Name: "_version"}}}, `collides with the replicator's own column`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(tc.spec, src, noCaps)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestPartitionNullable checks that a partition_by element over a
// Nullable column is refused up front, naming the table, the key and the
// column, unless a function makes it non-Nullable (as ClickHouse 18.16
// accepts ifNull(region, 0) and refuses region and toYYYYMM(c)).
func TestPartitionNullable(t *testing.T) {
	src := []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "region", TypeOID: pgInt4, Identity: true},
		{Name: "created_at", TypeOID: pgTimestamptz},
	}
	nullable := map[string]ColumnSpec{"region": {Nullable: true}, "created_at": {Nullable: true}}
	for _, tc := range []struct {
		partition string
		columns   map[string]ColumnSpec
		err       string
	}{
		{"region", nullable, `table public.t: partition_by column "region" cannot be nullable`},
		{"toYYYYMM(created_at)", nullable, `partition_by column "created_at" cannot be nullable`},
		{"(intDiv(id, 1000), `region`)", nullable, `partition_by column "region" cannot be nullable`},
		{"region", map[string]ColumnSpec{"region": {Type: "Nullable(UInt8)"}}, `partition_by column "region" cannot be nullable`},
		{"region", nil, ""},
		{"toYYYYMM(created_at)", map[string]ColumnSpec{"region": {Nullable: true}}, ""},
		{"ifNull(region, 0)", nullable, ""},
		{"(toYYYYMM(assumeNotNull(created_at)), intDiv(id, 1000))", nullable, ""},
		{"", nullable, ""},
	} {
		t.Run(tc.partition, func(t *testing.T) {
			_, err := Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
				PartitionBy: tc.partition, Columns: tc.columns, UniqueKey: []string{"id"}}, src, dt64Caps)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestTimesAsStored checks that a timestamp maps to the value its column
// stores, so that keys and places built from mapped values equal those
// read back from ClickHouse.
func TestTimesAsStored(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		want time.Time
	}{
		{"DateTime('UTC')", time.Date(2024, 5, 1, 10, 11, 12, 0, time.UTC)},
		{"DateTime64(3, 'UTC')", time.Date(2024, 5, 1, 10, 11, 12, 123000000, time.UTC)},
		{"DateTime64(6, 'UTC')", time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC)},
	} {
		typ, err := ParseType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		conv, err := newConverter(Source{OID: pgTimestamptz, Mod: -1}, typ, TransformNone, Caps{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := conv([]byte("2024-05-01 10:11:12.123456+00"))
		if err != nil || !got.(time.Time).Equal(tc.want) {
			t.Errorf("%s: %v (%v), want %v", tc.typ, got, err, tc.want)
		}
	}
}

// TestParseISOFast: the fast path agrees with the layouts on every shape
// Postgres prints, and leaves the rest to them.
func TestParseISOFast(t *testing.T) {
	slow := func(s string) (time.Time, bool) {
		for _, layout := range timestampLayouts {
			if v, err := time.Parse(layout, s); err == nil {
				return v.UTC(), true
			}
		}
		return time.Time{}, false
	}
	inputs := []string{
		"2024-05-01 10:11:12", "2024-05-01 10:11:12.5", "2024-05-01 10:11:12.123456", "2024-05-01 10:11:12.123456789",
		"2024-05-01 10:11:12+00", "2024-05-01 10:11:12.000001+02", "2024-05-01 10:11:12-07", "2024-05-01 10:11:12.25+05:30",
		"1900-12-31 23:59:59-00:00:36", "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+14",
		"2024-02-29 00:00:00", "2023-02-29 00:00:00", "2024-13-01 00:00:00", "2024-05-01 24:00:00", "2024-05-01 10:11:12.",
		"2024-05-01 10:11:12.1234567890", "2024-05-01 10:11:12+0", "2024-05-01 10:11:12+05:", "2024-05-01 10:11:12 BC",
		"12024-05-01 10:11:12", "2024-05-01", "infinity", "2024-05-01T10:11:12Z", "2024-05-01 10:11:12+05:30:15:01",
	}
	for _, in := range inputs {
		got, ok := parseISOFast([]byte(in))
		want, wok := slow(in)
		if ok && (!wok || !got.Equal(want)) {
			t.Errorf("%q: fast %s, layouts %s (ok %v)", in, got, want, wok)
		}
		if !ok && wok && len(in) >= 19 && in[10] == ' ' && !strings.HasSuffix(in, " BC") && len(in) <= 35 && in[4] == '-' {
			t.Logf("%q: left to the layouts", in)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		v := time.Unix(rng.Int64N(400*365*86400)-200*365*86400, int64(rng.IntN(1000000))*1000).UTC()
		off := (rng.IntN(29) - 14) * 3600
		in := v.In(time.FixedZone("", off)).Format("2006-01-02 15:04:05.999999-07")
		got, ok := parseISOFast([]byte(in))
		if !ok || !got.Equal(v) {
			t.Fatalf("%q: fast %s ok %v, want %s", in, got, ok, v)
		}
	}
}

// TestAppendPair checks that the values keys are rendered from without fmt
// read as fmt's %v would render them (a time as its instant in UTC).
func TestAppendPair(t *testing.T) {
	tbl := &Table{Columns: []Column{{Name: "c"}}}
	loc := time.FixedZone("X", -(3*3600 + 30*60))
	for _, v := range []any{
		uint64(math.MaxUint64), int64(math.MinInt64), uint32(math.MaxUint32), int32(math.MinInt32),
		uint16(65535), int16(-32768), uint8(255), int8(-128), float64(1.5), true, nil, []byte{1, 2},
		time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), time.Date(1900, 12, 31, 23, 59, 59, 123456000, loc),
		time.Date(2024, 1, 2, 3, 4, 5, 1, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 120000000, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1700000000, 123456000).UTC(), time.Date(2024, 5, 1, 0, 0, 0, 0, time.Local),
	} {
		want := fmt.Sprintf("c=%v", v)
		if tv, ok := v.(time.Time); ok {
			// A time renders by its instant, in UTC.
			want = fmt.Sprintf("c=%v", tv.UTC())
		}
		if got := string(tbl.appendPair(nil, 0, v)); got != want {
			t.Errorf("appendPair(%T) = %q, want %q", v, got, want)
		}
	}
	// Random UTC times, fractions of every length included.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		v := time.Unix(r.Int64N(253402300800+62135596800)-62135596800, r.Int64N(1e9)).UTC()
		if r.IntN(3) == 0 {
			v = v.Truncate(time.Duration(r.IntN(10)) * time.Millisecond)
		}
		if got, want := string(tbl.appendPair(nil, 0, v)), fmt.Sprintf("c=%v", v); got != want {
			t.Fatalf("appendPair(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestDateTime64RangeByVersion checks the DateTime64 bounds against the
// server version: ClickHouse clamps or garbles a value outside its range
// without an error, so the mapping must refuse (or, with invalid = "clamp",
// clamp) by the range of the server it writes to.
func TestDateTime64RangeByVersion(t *testing.T) {
	type probe struct {
		text string
		ok   bool
	}
	for _, tc := range []struct {
		name   string
		server [2]int
		typ    string
		probes []probe
	}{
		{"20.1..21.3: 1970..2105", [2]int{21, 3}, "DateTime64(6, 'UTC')", []probe{
			{"1969-12-31 23:59:59+00", false}, {"1970-01-01 00:00:00+00", true},
			{"2105-12-31 23:59:59.999999+00", true}, {"2106-01-01 00:00:00+00", false}}},
		{"21.4: 1925..2283-11-11", [2]int{21, 4}, "DateTime64(6, 'UTC')", []probe{
			{"1924-12-31 23:59:59.999999+00", false}, {"1925-01-01 00:00:00+00", true},
			{"2283-11-11 23:59:59.999999+00", true}, {"2283-11-12 00:00:00+00", false}}},
		{"22.7: 1925..2283-11-11", [2]int{22, 7}, "DateTime64(6, 'UTC')", []probe{
			{"1900-01-01 00:00:00+00", false}, {"2290-01-01 00:00:00+00", false}}},
		{"22.8: 1900..2299", [2]int{22, 8}, "DateTime64(6, 'UTC')", []probe{
			{"1899-12-31 23:59:59+00", false}, {"1900-01-01 00:00:00+00", true},
			{"2299-12-31 23:59:59.999999+00", true}, {"2300-01-01 00:00:00+00", false}}},
		{"26.7: 1900..2299", [2]int{26, 7}, "DateTime64(6, 'UTC')", []probe{
			{"1899-12-31 23:59:59+00", false}, {"2300-01-01 00:00:00+00", false}}},
		{"26.8: 0000..9999", [2]int{26, 8}, "DateTime64(6, 'UTC')", []probe{
			{"0001-01-01 00:00:00+00", true}, {"1800-06-01 12:00:00+00", true},
			{"9999-12-31 23:59:59.999999+00", true}}},
		{"unknown version: 1900..2299", [2]int{}, "DateTime64(6, 'UTC')", []probe{
			{"1899-12-31 23:59:59+00", false}, {"1900-01-01 00:00:00+00", true}, {"2300-01-01 00:00:00+00", false}}},
		{"precision 9: Int64 nanoseconds, 1677..2262", [2]int{26, 8}, "DateTime64(9, 'UTC')", []probe{
			{"1677-09-21 00:12:43+00", false}, {"1677-09-21 00:12:44+00", true},
			{"2262-04-11 23:47:15.999999+00", true}, {"2262-04-11 23:47:17+00", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, err := ParseType(tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			caps := Caps{DateTime64: true, Server: tc.server}
			conv, err := newConverter(Source{OID: pgTimestamptz, Mod: -1}, typ, TransformNone, caps)
			if err != nil {
				t.Fatal(err)
			}
			clamp, err := newPolicyConverter(Source{OID: pgTimestamptz, Mod: -1}, typ, TransformNone, InvalidClamp, new(invalidCount), caps)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := caps.dateTime64Bounds(typ.Precision)
			for _, p := range tc.probes {
				_, err := conv([]byte(p.text))
				var re *RangeError
				if p.ok != (err == nil) || !p.ok && !errors.As(err, &re) {
					t.Errorf("%s on %d.%d: error %v, want ok %v (a RangeError otherwise)", p.text, tc.server[0], tc.server[1], err, p.ok)
				}
				if p.ok {
					continue
				}
				got, err := clamp([]byte(p.text))
				if s := got.(time.Time).Unix(); err != nil || s != lo && s != hi {
					t.Errorf("%s clamped on %d.%d: %v (%v), want a bound (%d or %d)", p.text, tc.server[0], tc.server[1], got, err, lo, hi)
				}
			}
		})
	}
}

// TestDateTime64RangeBinary: the binary copy checks the same bounds as
// the stream's text path.
func TestDateTime64RangeBinary(t *testing.T) {
	typ, err := ParseType("DateTime64(6, 'UTC')")
	if err != nil {
		t.Fatal(err)
	}
	// 1910-01-01 00:00:00 UTC in microseconds since 2000-01-01.
	us := (time.Date(1910, 1, 1, 0, 0, 0, 0, time.UTC).Unix() - time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()) * 1e6
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(us))
	for _, tc := range []struct {
		server [2]int
		ok     bool
	}{{[2]int{21, 4}, false}, {[2]int{22, 8}, true}} {
		_, err := timeDecoder(pgTimestamptz, typ, Caps{DateTime64: true, Server: tc.server})(b)
		if tc.ok != (err == nil) {
			t.Errorf("1910-01-01 on %d.%d: error %v, want ok %v", tc.server[0], tc.server[1], err, tc.ok)
		}
	}
}

// TestKeysOfTimesReadBack renders keys of date and time columns read back
// from a ClickHouse server whose zone is not UTC: clickhouse-go returns a
// zone-less DateTime or DateTime64 in the server's zone and a Date at
// midnight there. The keys must equal those of the mapped values, in UTC,
// or the lookups of TOAST values and places find no image.
func TestKeysOfTimesReadBack(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	src := []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "at", TypeOID: pgTimestamp, Identity: true},
		{Name: "day", TypeOID: pgDate, Identity: true},
	}
	for _, tc := range []struct {
		at, day string
		mapped  []any // id, at, day as mapped from Postgres
		read    []any // as read back from a server in Europe/Berlin
	}{
		{"DateTime", "Date", []any{uint64(1), time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
			[]any{uint64(1), time.Date(2024, 1, 1, 11, 0, 0, 0, berlin), time.Date(2024, 1, 1, 0, 0, 0, 0, berlin)}},
		{"DateTime64(6)", "Date32", []any{uint64(1), time.Date(2024, 7, 1, 10, 0, 0, 123456000, time.UTC), time.Date(1950, 7, 1, 0, 0, 0, 0, time.UTC)},
			[]any{uint64(1), time.Date(2024, 7, 1, 12, 0, 0, 123456000, berlin), time.Date(1950, 7, 1, 0, 0, 0, 0, berlin)}},
	} {
		t.Run(tc.at, func(t *testing.T) {
			tbl, err := Resolve(TableSpec{Source: "public.visits", Target: "visits", OrderBy: []string{"id", "at", "day"},
				Columns: map[string]ColumnSpec{"at": {Type: tc.at}, "day": {Type: tc.day}}}, src, Caps{DateTime64: true, Date32: true})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tbl.KeyString(tc.read), tbl.KeyString(tc.mapped); got != want {
				t.Errorf("key read back %q, mapped %q", got, want)
			}
			if got, want := tbl.Placement(tc.read), tbl.Placement(tc.mapped); got != want {
				t.Errorf("place read back %q, mapped %q", got, want)
			}
		})
	}
}

// TestNarrow: a bigint column narrowed to Int32 (a key column ClickHouse
// cannot widen yet) writes the values that fit and refuses one that does
// not.
func TestNarrow(t *testing.T) {
	tbl, err := resolveColumn(pgInt8, ColumnSpec{}, Caps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Narrow(1, Type{Kind: KindInt32}); err != nil {
		t.Fatal(err)
	}
	dst := make([]any, 2)
	if _, err := tbl.Row([]Value{text("1"), text("2147483647")}, dst, nil); err != nil || dst[1] != int32(2147483647) {
		t.Errorf("a value that fits: %#v, %v", dst[1], err)
	}
	if _, err := tbl.Row([]Value{text("1"), text("2147483648")}, dst, nil); err == nil {
		t.Errorf("a value too large for Int32 was written: %#v", dst[1])
	}
	if err := tbl.Narrow(1, Type{Kind: KindInt64}); err == nil {
		t.Error("Narrow to a type as wide was accepted")
	}
}

// TestPlacementSeparatesValues: the compact keys of two rows are equal
// exactly when their text keys are, strings of different splits and
// negative numbers included.
func TestPlacementSeparatesValues(t *testing.T) {
	tbl, err := Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"a", "b", "n"}},
		[]SourceColumn{{Name: "a", TypeOID: pgText, Identity: true}, {Name: "b", TypeOID: pgText, Identity: true},
			{Name: "n", TypeOID: pgInt8, Identity: true}}, Caps{})
	if err != nil {
		t.Fatal(err)
	}
	rows := [][]any{
		{"a", "bc", int64(1)}, {"ab", "c", int64(1)}, {"", "abc", int64(1)}, {"abc", "", int64(1)},
		{"a", "bc", int64(-1)}, {"a", "bc", int64(0)}, {"a\x00", "bc", int64(1)}, {"a", "bc", int64(1)},
	}
	for i, r := range rows {
		for j, s := range rows {
			if same, sameText := tbl.Placement(r) == tbl.Placement(s), tbl.KeyString(r) == tbl.KeyString(s); same != sameText {
				t.Errorf("rows %d and %d: compact keys equal %v, text keys equal %v", i, j, same, sameText)
			}
		}
	}
}

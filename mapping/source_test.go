package mapping

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// numericMod is atttypmod of numeric(p, s).
func numericMod(p, s int) int32 { return int32(p<<16|s) + 4 }

func TestDefaultTypes(t *testing.T) {
	tests := []struct {
		src  Source
		caps Caps
		want string
	}{
		{Source{OID: pgNumeric, Mod: numericMod(12, 2)}, noCaps, "Decimal(12, 2)"},
		{Source{OID: pgNumeric, Mod: numericMod(38, 0)}, noCaps, "Decimal(38, 0)"},
		{Source{OID: pgNumeric, Mod: numericMod(39, 2)}, noCaps, "String"},
		{Source{OID: pgNumeric, Mod: -1}, noCaps, "String"},
		{Source{OID: pgBool}, noCaps, "UInt8"},
		{Source{OID: pgBool}, allCaps, "Bool"},
		{Source{OID: pgDate}, noCaps, "Date"},
		{Source{OID: pgDate}, allCaps, "Date32"},
		{Source{OID: 1007}, noCaps, "Array(Int32)"},
		{Source{OID: 1231, Mod: numericMod(10, 3)}, noCaps, "Array(Decimal(10, 3))"},
		{Source{OID: 1009}, noCaps, "Array(String)"},
		{Source{OID: 3807}, noCaps, "Array(String)"},
		{Source{OID: 1000}, allCaps, "Array(Bool)"},
		{Source{OID: 1185}, dt64Caps, "Array(DateTime64(6, 'UTC'))"},
		{Source{OID: 70000, Enum: true}, noCaps, "LowCardinality(String)"},
		{Source{OID: 70001, Elem: 70000, Enum: true}, noCaps, "Array(String)"},
		{Source{OID: 70002, Elem: pgInt8}, noCaps, "Array(Int64)"},
		{Source{OID: pgJSONB}, noCaps, "String"},
		{Source{OID: 1083}, noCaps, "String"}, // time
		{Source{OID: 1186}, noCaps, "String"}, // interval
		{Source{OID: 869}, noCaps, "String"},  // inet
	}
	for _, tc := range tests {
		if got := defaultType(tc.src, tc.caps).String(); got != tc.want {
			t.Errorf("defaultType(%+v, %+v) = %s, want %s", tc.src, tc.caps, got, tc.want)
		}
	}
}

func TestArrayValues(t *testing.T) {
	tests := []struct {
		src    uint32
		typ    string
		text   string
		want   any
		errHas string
	}{
		{1007, "Array(Int32)", "{}", []int32{}, ""},
		{1007, "Array(Int32)", "{1,-2,3}", []int32{1, -2, 3}, ""},
		{1007, "Array(Int32)", "{1,NULL}", []int32{1, 0}, ""},
		{1007, "Array(Nullable(Int32))", "{1,NULL}", []*int32{ptr(int32(1)), nil}, ""},
		{1007, "Array(Int32)", "[0:1]={5,6}", []int32{5, 6}, ""},
		{1007, "Array(Int32)", "{{1,2},{3,4}}", nil, "multi-dimensional"},
		{1007, "Array(Int32)", "[1:2][1:1]={{1},{2}}", nil, "multi-dimensional"},
		{1007, "Array(Int32)", "{1,x}", nil, "array element"},
		{1007, "Array(Int32)", "{1,", nil, "not an array"},
		{1007, "Array(Int32)", "{1,}", nil, "ends with ','"},
		{1009, "Array(String)", `{"a b","c\"d",NULL,"NULL","","\\"}`, []string{"a b", `c"d`, "", "NULL", "", `\`}, ""},
		{1009, "Array(String)", `{"{}",",",é}`, []string{"{}", ",", "é"}, ""},
		{1009, "Array(String)", `{"a}`, nil, "unterminated"},
		{1009, "String", `{"a b",NULL}`, `{"a b",NULL}`, ""},
		{1231, "Array(Decimal(12, 2))", "{1.50,NULL,-0.01}", []decimal.Decimal{decimal.RequireFromString("1.5"), decimal.Zero,
			decimal.RequireFromString("-0.01")}, ""},
		{1182, "Array(Date)", "{2024-02-29,NULL}", []time.Time{time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), epoch}, ""},
	}
	for _, tc := range tests {
		typ, err := ParseType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		conv, err := newConverter(Source{OID: tc.src}, typ, TransformNone, Caps{})
		if err != nil {
			t.Fatalf("%s from %d: %v", tc.typ, tc.src, err)
		}
		got, err := conv([]byte(tc.text))
		switch {
		case tc.errHas != "":
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%s %q: error %v, want one with %q", tc.typ, tc.text, err, tc.errHas)
			}
		case err != nil:
			t.Errorf("%s %q: %v", tc.typ, tc.text, err)
		case !sameDeep(got, tc.want):
			t.Errorf("%s %q = %#v, want %#v", tc.typ, tc.text, got, tc.want)
		}
	}
}

func TestDecimalValues(t *testing.T) {
	tests := []struct {
		typ, text, want, errHas string
	}{
		{"Decimal(12, 2)", "1234567890.12", "1234567890.12", ""},
		{"Decimal(12, 2)", "-0.50", "-0.5", ""},
		{"Decimal(12, 2)", "12345678901.00", "", "more than 10 digits before the point"},
		{"Decimal(12, 2)", "1.005", "", "more than 2 digits after the point"},
		{"Decimal(12, 2)", "1.500", "1.5", ""},
		{"Decimal(12, 2)", "NaN", "", "cannot be stored"},
		{"Decimal(12, 2)", "Infinity", "", "cannot be stored"},
		{"Decimal(12, 2)", "1e3x", "", "not a number"},
		{"Decimal(38, 10)", "1234567890123456789012345678.0123456789", "1234567890123456789012345678.0123456789", ""},
		{"Decimal(3, 0)", "999", "999", ""},
		{"Decimal(3, 0)", "-1000", "", "before the point"},
	}
	for _, tc := range tests {
		typ, err := ParseType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decimalConverter(typ)([]byte(tc.text))
		switch {
		case tc.errHas != "":
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%s %q: error %v, want one with %q", tc.typ, tc.text, err, tc.errHas)
			}
		case err != nil:
			t.Errorf("%s %q: %v", tc.typ, tc.text, err)
		case got.(decimal.Decimal).String() != tc.want:
			t.Errorf("%s %q = %s, want %s", tc.typ, tc.text, got, tc.want)
		}
	}
}

func TestWidensDecimal(t *testing.T) {
	for _, tc := range []struct {
		to, from string
		want     bool
	}{
		{"Decimal(14, 2)", "Decimal(12, 2)", true},
		{"Decimal(14, 4)", "Decimal(12, 2)", true},
		{"Decimal(12, 4)", "Decimal(12, 2)", false},
		{"Decimal(12, 2)", "Decimal(14, 2)", false},
		{"Array(Int64)", "Array(Int32)", true},
		{"Array(Int64)", "Int32", false},
	} {
		to, _ := ParseType(tc.to)
		from, _ := ParseType(tc.from)
		if got := to.Widens(from); got != tc.want {
			t.Errorf("%s.Widens(%s) = %v, want %v", tc.to, tc.from, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// sameDeep compares values, decimals by value.
func sameDeep(a, b any) bool {
	da, ok1 := a.([]decimal.Decimal)
	db, ok2 := b.([]decimal.Decimal)
	if ok1 && ok2 {
		if len(da) != len(db) {
			return false
		}
		for i := range da {
			if !da[i].Equal(db[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestAdoptEarlierDefault resolves columns whose default type changed: a
// target made with the earlier default (the value's text in a String)
// keeps it unless the configuration names a type.
func TestAdoptEarlierDefault(t *testing.T) {
	spec := TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
		Columns: map[string]ColumnSpec{"fixed": {Type: "Array(Int64)"}}}
	tbl, err := Resolve(spec, []SourceColumn{{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "tags", TypeOID: 1007}, {Name: "fixed", TypeOID: 1007},
		{Name: "price", TypeOID: pgNumeric, TypeMod: numericMod(12, 2)}}, noCaps)
	if err != nil {
		t.Fatal(err)
	}
	str := Type{Kind: KindString}
	if !tbl.Adopt("tags", str, noCaps) || !tbl.Adopt("price", str, noCaps) {
		t.Fatalf("earlier defaults not adopted: %v", tbl.Columns)
	}
	if tbl.Adopt("fixed", str, noCaps) || tbl.Adopt("id", str, noCaps) || tbl.Adopt("tags", Type{Kind: KindInt32}, noCaps) {
		t.Errorf("a configured type, or a type no earlier version wrote, was adopted: %v", tbl.Columns)
	}
	row := tbl.NewRow()
	if _, err := tbl.Row([]Value{text("1"), text("{1,2}"), text("{3}"), text("1.50")}, row, nil); err != nil {
		t.Fatal(err)
	}
	if row[1] != "{1,2}" || row[3] != "1.50" || !reflect.DeepEqual(row[2], []int64{3}) {
		t.Errorf("row = %#v", row[:4])
	}
}

// TestInvalidOption maps values a type cannot hold under each invalid
// option: "error" stops, "default" stores the type's default, "clamp" the
// nearest value (an error where there is none); each stored value counts.
func TestInvalidOption(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		oid     uint32
		mod     int32
		typ     string
		text    string
		policy  string
		want    any
		errHas  string
		counted bool
	}{
		{pgInt4, 0, "Int16", "40000", "", nil, "out of the range", false},
		{pgInt4, 0, "Int16", "40000", InvalidDefault, int16(0), "", true},
		{pgInt4, 0, "Int16", "40000", InvalidClamp, int16(32767), "", true},
		{pgInt4, 0, "Int16", "-40000", InvalidClamp, int16(-32768), "", true},
		{pgInt8, 0, "Int32", "-9223372036854775808", InvalidClamp, int32(-2147483648), "", true},
		{pgNumeric, 0, "Int64", "99999999999999999999", InvalidClamp, int64(9223372036854775807), "", true},
		{pgInt4, 0, "UInt8", "-5", InvalidClamp, uint8(0), "", true},
		{pgNumeric, 0, "UInt64", "18446744073709551616", InvalidClamp, uint64(18446744073709551615), "", true},
		{pgInt4, 0, "Int16", "12", InvalidClamp, int16(12), "", false},
		{pgInt4, 0, "Int16", "x", InvalidClamp, nil, "not an integer", false},
		{pgDate, 0, "Date", "1969-12-31", "", nil, "outside the range of Date", false},
		{pgDate, 0, "Date", "1969-12-31", InvalidClamp, day(1970, 1, 1), "", true},
		{pgDate, 0, "Date", "2200-01-01", InvalidClamp, day(2148, 12, 31), "", true},
		{pgDate, 0, "Date", "infinity", InvalidClamp, day(2148, 12, 31), "", true},
		{pgDate, 0, "Date", "-infinity", InvalidDefault, epoch, "", true},
		{pgDate, 0, "Date", "0044-03-15 BC", InvalidClamp, day(1970, 1, 1), "", true},
		{pgTimestamptz, 0, "DateTime('UTC')", "infinity", "", nil, "cannot be stored", false},
		{pgTimestamptz, 0, "DateTime('UTC')", "-infinity", InvalidClamp, time.Unix(0, 0).UTC(), "", true},
		{pgTimestamptz, 0, "DateTime('UTC')", "2200-01-01 00:00:00+00", InvalidClamp, time.Unix(4294967295, 0).UTC(), "", true},
		{pgTimestamptz, 0, "DateTime64(6, 'UTC')", "10000-01-01 00:00:00+00", "", nil, "outside the range of DateTime64", false},
		{pgTimestamptz, 0, "DateTime64(6, 'UTC')", "10000-01-01 00:00:00+00", InvalidClamp, time.Date(2299, 12, 31, 23, 59, 59, 0, time.UTC), "", true},
		{pgTimestamp, 0, "DateTime64(6, 'UTC')", "12345-06-07 08:09:10.5", InvalidDefault, epoch, "", true},
		{pgDate, 0, "Date", "10000-01-01", InvalidClamp, day(2148, 12, 31), "", true},
		{pgNumeric, 0, "Decimal(5, 2)", "1234.567", InvalidClamp, "999.99", "", true},
		{pgNumeric, 0, "Decimal(5, 2)", "-1234", InvalidClamp, "-999.99", "", true},
		{pgNumeric, 0, "Decimal(5, 2)", "1.004", InvalidClamp, "1", "", true},
		{pgNumeric, 0, "Decimal(5, 2)", "999.999", InvalidClamp, "999.99", "", true},
		{pgNumeric, 0, "Decimal(5, 2)", "Infinity", InvalidClamp, "999.99", "", true},
		{pgNumeric, 0, "Decimal(5, 2)", "NaN", InvalidClamp, nil, "no nearest value", false},
		{pgNumeric, 0, "Decimal(5, 2)", "NaN", InvalidDefault, "0", "", true},
		{1005, 0, "Array(Int8)", "{1,300,NULL}", InvalidClamp, []int8{1, 127, 0}, "", true},
		{1005, 0, "Array(Nullable(Int8))", "{1,-300,NULL}", InvalidDefault, []*int8{ptr(int8(1)), ptr(int8(0)), nil}, "", true},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%s %q %s", tc.typ, tc.text, tc.policy)
		spec := TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
			Columns: map[string]ColumnSpec{"c": {Type: tc.typ, Invalid: tc.policy}}}
		tbl, err := Resolve(spec, []SourceColumn{{Name: "id", TypeOID: pgInt8, Identity: true}, {Name: "c", TypeOID: tc.oid, TypeMod: tc.mod}},
			Caps{DateTime64: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		row := tbl.NewRow()
		_, err = tbl.Row([]Value{text("1"), text(tc.text)}, row, nil)
		switch {
		case tc.errHas != "":
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%s: error %v, want one with %q", name, err, tc.errHas)
			}
		case err != nil:
			t.Errorf("%s: %v", name, err)
		default:
			got := row[1]
			if d, ok := got.(decimal.Decimal); ok {
				got = d.String()
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %#v, want %#v", name, got, tc.want)
			}
		}
		if n := tbl.Invalid()["c"]; (n == 1) != tc.counted {
			t.Errorf("%s: counted %d", name, n)
		}
	}
}

// TestInvalidOptionInBlocks applies the option to binary copy values as
// the text path does.
func TestInvalidOptionInBlocks(t *testing.T) {
	for _, policy := range []string{InvalidError, InvalidDefault, InvalidClamp} {
		spec := TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"id"},
			Columns: map[string]ColumnSpec{"c": {Type: "Int8", Invalid: policy}, "d": {Invalid: policy}}}
		tbl, err := Resolve(spec, []SourceColumn{{Name: "id", TypeOID: pgInt8, Identity: true}, {Name: "c", TypeOID: pgInt4},
			{Name: "d", TypeOID: pgDate}}, noCaps)
		if err != nil {
			t.Fatal(err)
		}
		b := tbl.NewBlock()
		id := []byte{0, 0, 0, 0, 0, 0, 0, 1}
		c := []byte{0, 0, 1, 44}            // 300
		d := []byte{0xff, 0xff, 0xd8, 0x00} // 2000-01-01 minus 10240 days: 1971-12-...? below 1970 is checked below
		d = []byte{0xff, 0xff, 0x00, 0x00}  // -65536 days from 2000-01-01: before 1970
		err = b.AppendBinary([][]byte{id, c, d})
		if policy == InvalidError {
			if err == nil {
				t.Errorf("error policy: no error")
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		cols := b.Columns(1, 0)
		wantC, wantD := int8(127), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
		if policy == InvalidDefault {
			wantC = 0
		}
		if got := cols[1].([]int8)[0]; got != wantC {
			t.Errorf("%s: c = %d, want %d", policy, got, wantC)
		}
		if got := cols[2].([]time.Time)[0]; !got.Equal(wantD) {
			t.Errorf("%s: d = %s, want %s", policy, got, wantD)
		}
		if n := tbl.Invalid(); n["c"] != 1 || n["d"] != 1 {
			t.Errorf("%s: counted %v", policy, n)
		}
	}
}

// TestInvalidOptionSameInStreamAndCopy maps dates and timestamps around
// and past what every ClickHouse type holds (years past 9999, BC,
// infinity) under each invalid option both ways: the stream's text through
// Table.Row and the copy's binary field through Block. Both store the same
// value and count it, or both fail: a row the copy stored must not stop the
// stream when it is updated.
func TestInvalidOptionSameInStreamAndCopy(t *testing.T) {
	day := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	values := []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(12345, 6, 7, 8, 9, 10, 123456000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), time.Date(99999, 12, 31, 0, 0, 0, 0, time.UTC),
		time.Date(294276, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 10, 11, 12, 0, time.UTC), time.Date(1899, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-43, 3, 15, 12, 0, 0, 0, time.UTC),
		time.Date(-4712, 11, 24, 0, 0, 0, 0, time.UTC),
	}
	samples := map[uint32][]sample{pgDate: {dateSample(math.MaxInt32), dateSample(math.MinInt32)}}
	for _, oid := range []uint32{pgTimestamp, pgTimestamptz} {
		samples[oid] = []sample{timestampSample(math.MaxInt64, false, 0), timestampSample(math.MinInt64, false, 0)}
	}
	for i, v := range values {
		sec := v.Unix() - day.Unix()
		days := sec / 86400
		if sec%86400 < 0 {
			days--
		}
		samples[pgDate] = append(samples[pgDate], dateSample(int32(days)))
		us := sec*1e6 + int64(v.Nanosecond()/1000)
		samples[pgTimestamp] = append(samples[pgTimestamp], timestampSample(us, false, 0))
		samples[pgTimestamptz] = append(samples[pgTimestamptz], timestampSample(us, true, i))
	}
	compared := 0
	for oid, ss := range samples {
		for _, typ := range []string{"Date", "Date32", "DateTime('UTC')", "DateTime64(6, 'UTC')"} {
			for _, policy := range []string{InvalidError, InvalidDefault, InvalidClamp} {
				name := fmt.Sprintf("%d/%s/%s", oid, typ, policy)
				stream, err := resolveColumn(oid, ColumnSpec{Type: typ, Invalid: policy}, allCaps)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				copied, _ := resolveColumn(oid, ColumnSpec{Type: typ, Invalid: policy}, allCaps)
				// The copy reads binary fields, or the text of what it selects.
				bc := blockCase{tbl: copied, binary: copied.CopyColumns()[1] == `"c"`}
				for _, s := range ss {
					streamed, copies := stream.Invalid()["c"], copied.Invalid()["c"]
					want, werr := textRow(stream, s)
					b := copied.NewBlock()
					err := b.AppendBinary([][]byte{be64(7), bc.field(s)})
					if (err == nil) != (werr == nil) {
						t.Errorf("%s %q: copy error %v, stream error %v", name, s.text, err, werr)
						continue
					}
					if err == nil {
						if got := cell(b.Columns(0, 0)[1], 0); !sameValue(got, want) {
							t.Errorf("%s %q: copy stored %v, stream %v", name, s.text, got, want)
						}
					}
					if sn, cn := stream.Invalid()["c"]-streamed, copied.Invalid()["c"]-copies; sn != cn {
						t.Errorf("%s %q: the stream counted %d invalid values, the copy %d", name, s.text, sn, cn)
					}
					compared++
				}
			}
		}
	}
	t.Logf("%d values compared", compared)
}

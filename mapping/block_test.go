package mapping

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	chcolumn "github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/google/uuid"
)

// Test encoders of Postgres' binary COPY fields and text output, written
// independently of the package's decoders.

func be16(n int64) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
func be32(n int64) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }
func be64(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

const (
	pgChar  = 18
	pgName  = 19
	pgPoint = 600
)

// sample is one source value in both forms.
type sample struct {
	bin  []byte // binary COPY field
	text string // text output, as the stream carries it and ::text selects it
	null bool
}

func (s sample) String() string {
	if s.null {
		return "NULL"
	}
	return strconv.Quote(s.text)
}

var nullSample = sample{null: true}

var intEdges = []int64{
	math.MinInt64, math.MinInt64 + 1, math.MinInt32 - 1, math.MinInt32, math.MinInt16 - 1, math.MinInt16,
	-129, -128, -1, 0, 1, 42, 127, 128, 255, 256, 32767, 32768, 65535, 65536,
	1<<24 + 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32, math.MaxUint32 + 1,
	1<<53 + 1, 1<<62 + 1<<39 + 1, math.MaxInt64 - 1, math.MaxInt64,
}

func intSamples(size int) []sample {
	var out []sample
	for _, n := range intEdges {
		var bin []byte
		switch size {
		case 2:
			if n != int64(int16(n)) {
				continue
			}
			bin = be16(n)
		case 4:
			if n != int64(int32(n)) {
				continue
			}
			bin = be32(n)
		default:
			bin = be64(n)
		}
		out = append(out, sample{bin: bin, text: strconv.FormatInt(n, 10)})
	}
	return out
}

func oidSamples() []sample {
	var out []sample
	for _, n := range intEdges {
		if n >= 0 && n <= math.MaxUint32 {
			out = append(out, sample{bin: be32(n), text: strconv.FormatInt(n, 10)})
		}
	}
	return out
}

// pgFloatText renders a float as Postgres 12+ does (shortest exact digits,
// exponent from FLT_DIG/DBL_DIG on).
func pgFloatText(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, bits) // d.ddde±xx
	mant, exp, _ := strings.Cut(e, "e")
	x, _ := strconv.Atoi(exp)
	digits := 15
	if bits == 32 {
		digits = 6
	}
	if x < -4 || x >= digits {
		return mant + "e" + exp
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

var float8Edges = []float64{
	0, math.Copysign(0, -1), 1, -1, 1.5, -1.5, 0.1, 0.1 + 0.2, 42, -42, 255, 256, 1e15, 1e20, 1e300, -1e300,
	math.MaxFloat64, math.SmallestNonzeroFloat64, math.MaxFloat32, 3.4028236e38, 1 + 1.0/(1<<24), 1 << 53,
	math.NaN(), math.Inf(1), math.Inf(-1),
}

func float8Samples() []sample {
	var out []sample
	for _, f := range float8Edges {
		out = append(out, sample{bin: be64(int64(math.Float64bits(f))), text: pgFloatText(f, 64)})
	}
	return out
}

func float4Samples() []sample {
	var out []sample
	for _, f := range []float32{
		0, float32(math.Copysign(0, -1)), 1.5, -1.5, 0.1, 42, 255, 1 << 24, 123456, 1e6, 1e10,
		math.MaxFloat32, math.SmallestNonzeroFloat32, 3e-39, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
	} {
		out = append(out, sample{bin: be32(int64(math.Float32bits(f))), text: pgFloatText(float64(f), 32)})
	}
	return out
}

func textSamples() []sample {
	var out []sample
	for _, s := range []string{
		"", "abc", "hello, мир", "ab  ", "t", "42", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "not-a-uuid",
	} {
		out = append(out, sample{bin: []byte(s), text: s})
	}
	return out
}

func byteaSamples() []sample {
	var out []sample
	for _, b := range [][]byte{{}, {0}, {0, 0, 0}, []byte("abc"), {0xff, 0, 'a', '\n'}} {
		out = append(out, sample{bin: b, text: `\x` + hex.EncodeToString(b)})
	}
	return out
}

// civil is a wall-clock time in UTC; year 0 is 1 BC.
type civil struct {
	y, mo, d, h, mi, s, us int
}

func (c civil) time() time.Time {
	return time.Date(c.y, time.Month(c.mo), c.d, c.h, c.mi, c.s, c.us*1000, time.UTC)
}

// pgDateText renders the date part as Postgres' ISO output does.
func pgDateText(t time.Time) (string, bool) {
	y, m, d := t.Date()
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	return fmt.Sprintf("%04d-%02d-%02d", y, int(m), d), bc
}

func pgClockText(t time.Time) string {
	s := fmt.Sprintf(" %02d:%02d:%02d", t.Hour(), t.Minute(), t.Second())
	if us := t.Nanosecond() / 1000; us != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", us), "0")
	}
	return s
}

func pgOffsetText(sec int) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	s := fmt.Sprintf("%s%02d", sign, sec/3600)
	if sec%3600 != 0 {
		s += fmt.Sprintf(":%02d", sec/60%60)
	}
	if sec%60 != 0 {
		s += fmt.Sprintf(":%02d", sec%60)
	}
	return s
}

var (
	timeEdges = []civil{
		{1969, 12, 31, 23, 59, 59, 999999}, {1970, 1, 1, 0, 0, 0, 0}, {1970, 1, 1, 0, 0, 0, 1},
		{1999, 12, 31, 23, 59, 59, 999999}, {2000, 1, 1, 0, 0, 0, 0}, {2024, 2, 29, 10, 11, 12, 123456},
		{2038, 1, 19, 3, 14, 8, 0}, {2106, 2, 7, 6, 28, 15, 0}, {2106, 2, 7, 6, 28, 15, 999999},
		{2106, 2, 7, 6, 28, 16, 0}, {2148, 12, 31, 23, 59, 59, 999999}, {2149, 1, 1, 0, 0, 0, 0},
		{1900, 1, 1, 0, 0, 0, 0}, {1899, 12, 31, 23, 59, 59, 999999}, {2299, 12, 31, 23, 59, 59, 999999},
		{2300, 1, 1, 0, 0, 0, 0}, {-43, 3, 15, 12, 0, 0, 0}, {0, 12, 31, 23, 59, 59, 0}, {10000, 1, 1, 0, 0, 0, 0},
	}
	// Session time zones of the text output of timestamptz.
	textZones = []*time.Location{time.UTC, time.FixedZone("", 5*3600+1800), time.FixedZone("", -3*3600), time.FixedZone("", 19*60+32)}
)

func dateSamples() []sample {
	out := []sample{
		{bin: be32(math.MaxInt32), text: "infinity"},
		{bin: be32(math.MinInt32), text: "-infinity"},
	}
	for _, c := range timeEdges {
		t := c.time()
		days := t.Unix()/86400 - 10957
		if t.Unix()%86400 < 0 {
			days--
		}
		s, bc := pgDateText(t)
		if bc {
			s += " BC"
		}
		out = append(out, sample{bin: be32(days), text: s})
	}
	return out
}

func timestampSamples(zone bool) []sample {
	out := []sample{
		{bin: be64(math.MaxInt64), text: "infinity"},
		{bin: be64(math.MinInt64), text: "-infinity"},
	}
	for i, c := range timeEdges {
		t := c.time()
		us := (t.Unix()-946684800)*1e6 + int64(t.Nanosecond()/1000)
		var s string
		var bc bool
		if zone {
			local := t.In(textZones[i%len(textZones)])
			_, off := local.Zone()
			s, bc = pgDateText(local)
			s += pgClockText(local) + pgOffsetText(off)
		} else {
			s, bc = pgDateText(t)
			s += pgClockText(t)
		}
		if bc {
			s += " BC"
		}
		out = append(out, sample{bin: be64(us), text: s})
	}
	return out
}

func uuidSamples() []sample {
	var out []sample
	for _, u := range []uuid.UUID{sampleUUID, {}, uuid.Max} {
		out = append(out, sample{bin: u[:], text: u.String()})
	}
	return out
}

// textOnly are samples of types the block reads as text.
func textOnly(ss ...string) []sample {
	var out []sample
	for _, s := range ss {
		out = append(out, sample{text: s})
	}
	return out
}

// blockSamples holds the sample values of every source type.
func blockSamples() map[uint32][]sample {
	bools := []sample{{bin: []byte{1}, text: "t"}, {bin: []byte{0}, text: "f"}}
	return map[uint32][]sample{
		pgBool:        bools,
		pgBytea:       byteaSamples(),
		pgChar:        textOnly("a", "", `\351`, "t"),
		pgName:        textSamples(),
		pgInt8:        intSamples(8),
		pgInt2:        intSamples(2),
		pgInt4:        intSamples(4),
		pgText:        textSamples(),
		pgOID:         oidSamples(),
		pgFloat4:      float4Samples(),
		pgFloat8:      float8Samples(),
		pgBPChar:      textSamples(),
		pgVarchar:     textSamples(),
		pgDate:        dateSamples(),
		pgTimestamp:   timestampSamples(false),
		pgTimestamptz: timestampSamples(true),
		pgUUID:        uuidSamples(),
		pgNumeric: textOnly("0", "-5", "1.50", "-1.5", "255", "256", "18446744073709551615", "18446744073709551616",
			"-9223372036854775808", "1e5", "NaN", "123456789012345678901234567890.5"),
		pgJSON:  textOnly(`{"a": 1}`, "[]", `"x"`),
		pgJSONB: textOnly(`{"a": 1}`, "null", ` {"b": [1, {"c": null}]}`),
		pgPoint: textOnly("(1,2)"),
		1007:    textOnly("{}", "{1,2,3}", "{1,NULL}", "{-2147483648,2147483647}", `{"1"}`, "[0:1]={5,6}", "{{1,2},{3,4}}", "{1,x}"),
		1009:    textOnly("{}", `{"a b","c\\"d",NULL,"NULL",""}`, `{"\\\\"}`, "{unquoted,é}", `{"{}",","}`),
		1231:    textOnly("{}", "{1.50,NULL,-0.01}", "{NaN}"),
	}
}

var blockTypes = []string{
	"", "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64", "Float32", "Float64",
	"String", "LowCardinality(String)", "UUID", "Date", "DateTime", "DateTime('UTC')", "DateTime64(3)", "DateTime64(6, 'UTC')",
	"Decimal(12, 2)", "Decimal(38, 10)", "Decimal(3, 0)", "Bool", "Date32", "Array(Int32)", "Array(Nullable(Int32))",
	"Array(String)", "Array(Decimal(12, 2))", "Array(Nullable(Decimal(12, 2)))", "Array(Int64)", "JSON",
}

// blockCase is a resolved table of key "k" and column "c" in one configuration.
type blockCase struct {
	name   string
	tbl    *Table
	binary bool // CopyColumns selects c itself
}

// blockCases resolves column c of oid in every configuration the mapping allows.
func blockCases(oid uint32) []blockCase {
	var out []blockCase
	seen := map[string]bool{}
	for _, typ := range blockTypes {
		for _, tr := range []Transform{TransformNone, TransformXXHash64} {
			for _, nullable := range []bool{false, true} {
				for _, caps := range []Caps{noCaps, dt64Caps, allCaps} {
					if typ != "" && caps == noCaps && strings.HasPrefix(typ, "DateTime64") {
						continue
					}
					if typ == "" && caps == noCaps && oid != pgTimestamp && oid != pgTimestamptz {
						continue // the same as with DateTime64
					}
					if caps == allCaps && typ != "" && typ != "Bool" && typ != "Date32" {
						continue // the same as with DateTime64
					}
					if typ == "JSON" {
						caps.JSON = true
					}
					tbl, err := resolveColumn(oid, ColumnSpec{Type: typ, Transform: tr, Nullable: nullable}, caps)
					if err != nil {
						continue
					}
					expr := tbl.CopyColumns()[1]
					name := fmt.Sprintf("%d/%s/%s", oid, tbl.Columns[1].Type, expr)
					if tr != TransformNone {
						name += "/" + string(tr)
					}
					if !seen[name] {
						seen[name] = true
						out = append(out, blockCase{name: name, tbl: tbl, binary: expr == `"c"`})
					}
				}
			}
		}
	}
	return out
}

func (bc blockCase) field(s sample) []byte {
	switch {
	case s.null:
		return nil
	case bc.binary:
		return s.bin
	}
	return []byte(s.text)
}

// textRow maps a sample with Table.Row, as the stream does.
func textRow(tbl *Table, s sample) (any, error) {
	v := text(s.text)
	if s.null {
		v = nullValue
	}
	dst := make([]any, 2)
	if _, err := tbl.Row([]Value{text("7"), v}, dst, nil); err != nil {
		return nil, err
	}
	return dst[1], nil
}

// cell returns row i of a column as Columns returns it, nil for NULL.
func cell(col any, i int) any {
	v := reflect.ValueOf(col).Index(i)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	return v.Interface()
}

// sameValue compares mapped values; NaNs compare by their bits.
func sameValue(a, b any) bool {
	if _, ok := a.(int64); ok {
		if _, ok := b.(time.Time); ok {
			a, b = b, a
		}
	}
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case float32:
		y, ok := b.(float32)
		return ok && math.Float32bits(x) == math.Float32bits(y)
	case time.Time:
		if secs, ok := b.(int64); ok { // a DateTime column holds seconds
			return x.Location() == time.UTC && x.Unix() == secs
		}
		y, ok := b.(time.Time)
		return ok && x.Equal(y) && x.Location() == time.UTC && y.Location() == time.UTC
	}
	return reflect.DeepEqual(a, b)
}

// checkSame appends s to the block and maps it with Table.Row; both must
// agree on the value or on failing. It returns the value appended, and
// whether it was.
func checkSame(t *testing.T, bc blockCase, b *Block, s sample) (any, bool) {
	t.Helper()
	want, werr := textRow(bc.tbl, s)
	n := b.Len()
	err := b.AppendBinary([][]byte{be64(7), bc.field(s)})
	if (err == nil) != (werr == nil) {
		t.Fatalf("%v: AppendBinary error %v, Row error %v (value %#v)", s, err, werr, want)
	}
	if err != nil {
		var ce *ColumnError
		if !errors.As(err, &ce) || ce.Column != "c" {
			t.Fatalf("%v: error %v (%T), want a *ColumnError for c", s, err, err)
		}
		if errors.Is(err, errNegative) != errors.Is(werr, errNegative) {
			t.Fatalf("%v: AppendBinary error %q, Row error %q: errNegative differs", s, err, werr)
		}
		if b.Len() != n {
			t.Fatalf("%v: failed append changed Len from %d to %d", s, n, b.Len())
		}
		return nil, false
	}
	cols := b.Columns(0, 0)
	if got := cell(cols[1], n); !sameValue(got, want) {
		t.Fatalf("%v: AppendBinary gave %#v (%T), Row %#v (%T)", s, got, got, want, want)
	}
	return want, true
}

// TestBlockSameAsText maps every sample of every source type through every
// configuration both ways: binary (or ::text) fields into a Block, and text
// values through Table.Row.
func TestBlockSameAsText(t *testing.T) {
	total := 0
	for oid, samples := range blockSamples() {
		for _, bc := range blockCases(oid) {
			t.Run(bc.name, func(t *testing.T) {
				if bc.binary && samples[0].bin == nil {
					t.Fatalf("column decodes binary, samples have none")
				}
				b := bc.tbl.NewBlock()
				var want []any
				for _, s := range append(samples, nullSample) {
					if v, ok := checkSame(t, bc, b, s); ok {
						want = append(want, v)
					}
					total++
				}
				checkColumns(t, bc.tbl, b, want)
			})
		}
	}
	t.Logf("%d values compared", total)
}

// checkColumns checks a block's columns against the values appended, and
// that clickhouse-go's columnar Append takes each of them.
func checkColumns(t *testing.T, tbl *Table, b *Block, want []any) {
	t.Helper()
	if b.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", b.Len(), len(want))
	}
	cols := b.Columns(41, 43)
	types := []string{}
	for _, c := range tbl.Columns {
		types = append(types, c.Type.String())
	}
	types = append(types, "UInt64", "UInt8", "UInt64")
	if len(cols) != len(types) {
		t.Fatalf("Columns has %d columns, want %d", len(cols), len(types))
	}
	for i, v := range want {
		if got := cell(cols[1], i); !sameValue(got, v) {
			t.Errorf("row %d: column c = %#v, want %#v", i, got, v)
		}
		if cell(cols[0], i) != int64(7) || cell(cols[2], i) != uint64(41) || cell(cols[3], i) != uint8(0) || cell(cols[4], i) != uint64(43) {
			t.Errorf("row %d: key and meta columns = %v %v %v %v", i, cell(cols[0], i), cell(cols[2], i), cell(cols[3], i), cell(cols[4], i))
		}
	}
	for i, typ := range types {
		col, err := chcolumn.Type(typ).Column("c", &chcolumn.ServerContext{Timezone: time.UTC})
		if err != nil {
			t.Fatalf("clickhouse-go column %s: %v", typ, err)
		}
		if _, err := col.Append(cols[i]); err != nil {
			t.Fatalf("clickhouse-go %s Append(%T): %v", typ, cols[i], err)
		}
		if col.Rows() != b.Len() {
			t.Fatalf("clickhouse-go %s Append(%T) took %d rows, want %d", typ, cols[i], col.Rows(), b.Len())
		}
	}
}

func TestCopyColumns(t *testing.T) {
	tbl, err := Resolve(TableSpec{
		Source:  "public.t",
		Target:  "t",
		OrderBy: []string{"id"},
		Columns: map[string]ColumnSpec{
			"fp": {Transform: TransformXXHash64}, "n": {Type: "UInt64"}, "f": {Type: "Int64"},
			"ts": {Type: "Date"}, "i": {Type: "Float64"}, "f4": {Type: "Float64"},
		},
	}, []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: `we"ird`, TypeOID: pgText},
		{Name: "fp", TypeOID: pgBytea},
		{Name: "n", TypeOID: pgNumeric},
		{Name: "f", TypeOID: pgFloat8},
		{Name: "ts", TypeOID: pgTimestamptz},
		{Name: "i", TypeOID: pgInt4},
		{Name: "f4", TypeOID: pgFloat4},
		{Name: "j", TypeOID: pgJSONB},
		{Name: "ch", TypeOID: pgChar},
		{Name: "b", TypeOID: pgBool},
		{Name: "ip", TypeOID: 869},
		{Name: "u", TypeOID: pgUUID},
		{Name: "day", TypeOID: pgDate},
	}, dt64Caps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`"id"`, `"we""ird"`, `"fp"`, `"n"::text`, `"f"::text`, `"ts"`, `"i"`, `"f4"::text`, `"j"::text`,
		`CASE WHEN num_nulls("ch") = 0 THEN format('%s', "ch") END`, `"b"`,
		`CASE WHEN num_nulls("ip") = 0 THEN format('%s', "ip") END`, `"u"`, `"day"`,
	}
	if got := tbl.CopyColumns(); !reflect.DeepEqual(got, want) {
		t.Errorf("CopyColumns() =\n%q\nwant\n%q", got, want)
	}
}

func TestKeyOfBinary(t *testing.T) {
	tbl, err := Resolve(TableSpec{Source: "public.t", Target: "t", OrderBy: []string{"tenant", "id", "ts", "name", "n"}},
		[]SourceColumn{
			{Name: "id", TypeOID: pgInt8}, {Name: "tenant", TypeOID: pgInt4}, {Name: "ts", TypeOID: pgTimestamptz},
			{Name: "name", TypeOID: pgText}, {Name: "n", TypeOID: pgNumeric},
		}, dt64Caps)
	if err != nil {
		t.Fatal(err)
	}
	fields := [][]byte{be64(-42), nil, be64(1), []byte("ab"), []byte("1.50")}
	want := `tenant=?, id=-42, ts=2000-01-01 00:00:00.000001+00, name=ab, n=1.50`
	if got := tbl.KeyOfBinary(fields); got != want {
		t.Errorf("KeyOfBinary = %q, want %q", got, want)
	}
	vals := []Value{text("-42"), nullValue, text("2000-01-01 00:00:00.000001+00"), text("ab"), text("1.50")}
	if got := tbl.KeyOf(vals); got != want {
		t.Errorf("KeyOf = %q, want %q", got, want)
	}
	if got := tbl.KeyOfBinary(fields[:1]); got != "tenant=?, id=-42, ts=?, name=?, n=?" {
		t.Errorf("KeyOfBinary of a short row = %q", got)
	}
}

func TestBlockErrors(t *testing.T) {
	tbl := benchTable(t)
	b := tbl.NewBlock()
	row := benchRow()
	if err := b.AppendBinary(row); err != nil {
		t.Fatal(err)
	}
	bad := append([][]byte(nil), row...)
	bad[6] = be16(-1) // action into UInt8
	err := b.AppendBinary(bad)
	var ce *ColumnError
	if !errors.As(err, &ce) || ce.Column != "action" || !errors.Is(err, errNegative) {
		t.Fatalf("AppendBinary(action -1) = %v, want errNegative for column action", err)
	}
	bad[6] = be32(1) // an int4 field for an int2 column
	if err := b.AppendBinary(bad); err == nil || !strings.Contains(err.Error(), "column action: binary value has 4 bytes, want 2") {
		t.Fatalf("AppendBinary(int4 for int2) = %v", err)
	}
	if err := b.AppendBinary(row[:3]); err == nil || !strings.Contains(err.Error(), "3 fields") {
		t.Fatalf("AppendBinary(3 fields) = %v", err)
	}
	if b.Len() != 1 {
		t.Fatalf("Len = %d after failed appends, want 1", b.Len())
	}
	for i, col := range b.Columns(1, 2) {
		if n := reflect.ValueOf(col).Len(); n != 1 {
			t.Errorf("column %d has %d rows, want 1", i, n)
		}
	}
	ts := append([][]byte(nil), row...)
	ts[4] = be64(math.MaxInt64)
	if err := b.AppendBinary(ts); err == nil || !strings.Contains(err.Error(), `column created_at: value "infinity" cannot be stored`) {
		t.Fatalf("AppendBinary(infinity) = %v", err)
	}
}

func TestBlockResetAndBytes(t *testing.T) {
	tbl := benchTable(t)
	b := tbl.NewBlock()
	row := benchRow()
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Fatalf("new block: Len %d Bytes %d", b.Len(), b.Bytes())
	}
	for i := 0; i < 3; i++ {
		if err := b.AppendBinary(row); err != nil {
			t.Fatal(err)
		}
	}
	one := b.Bytes() / 3
	// Six 8-byte integers, one UInt8, two times (seconds of DateTime),
	// the LowCardinality string's header and its 5 bytes, the nullable's
	// flag and pointer, and the meta columns.
	if want := 6*8 + 1 + 2*8 + 16 + len("Issue") + 1 + 8 + 17; one != want {
		t.Errorf("Bytes per row = %d, want %d", one, want)
	}
	cols := b.Columns(5, 6)
	ids := cols[0].([]uint64)
	groups := cols[8].([]*uint64)
	if len(ids) != 3 || ids[2] != 42 || groups[0] != nil {
		t.Errorf("columns = %v %v", ids, groups)
	}
	b.Reset()
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Fatalf("after Reset: Len %d Bytes %d", b.Len(), b.Bytes())
	}
	for i, col := range b.Columns(5, 6) {
		if n := reflect.ValueOf(col).Len(); n != 0 {
			t.Errorf("column %d has %d rows after Reset", i, n)
		}
	}
	if err := b.AppendBinary(row); err != nil || b.Len() != 1 {
		t.Fatalf("append after Reset: %v, Len %d", err, b.Len())
	}
}

// FuzzBlock maps int64, float64 and timestamp values in both forms through
// a choice of configurations: Block and Table.Row must agree.
func FuzzBlock(f *testing.F) {
	f.Add(uint8(0), int64(-1), 0.1, int64(0))
	f.Add(uint8(3), int64(math.MaxUint32), math.NaN(), int64(math.MaxInt64))
	f.Add(uint8(7), int64(math.MinInt64), 1+1.0/(1<<24), int64(-946684800000000))
	f.Add(uint8(11), int64(256), 1e300, int64(4354819199999999))
	sources := []uint32{pgInt2, pgInt4, pgInt8, pgOID, pgFloat4, pgFloat8, pgDate, pgTimestamp, pgTimestamptz}
	cases := map[uint32][]blockCase{}
	for _, oid := range sources {
		cases[oid] = blockCases(oid)
	}
	f.Fuzz(func(t *testing.T, choice uint8, n int64, x float64, us int64) {
		for _, oid := range sources {
			var s sample
			switch oid {
			case pgInt2:
				s = sample{bin: be16(n), text: strconv.FormatInt(int64(int16(n)), 10)}
			case pgInt4:
				s = sample{bin: be32(n), text: strconv.FormatInt(int64(int32(n)), 10)}
			case pgInt8:
				s = sample{bin: be64(n), text: strconv.FormatInt(n, 10)}
			case pgOID:
				s = sample{bin: be32(n), text: strconv.FormatUint(uint64(uint32(n)), 10)}
			case pgFloat4:
				s = sample{bin: be32(int64(math.Float32bits(float32(x)))), text: pgFloatText(float64(float32(x)), 32)}
			case pgFloat8:
				s = sample{bin: be64(int64(math.Float64bits(x))), text: pgFloatText(x, 64)}
			case pgDate:
				d := int32(us)
				if d != math.MaxInt32 && d != math.MinInt32 && (d < -2451545 || d > 2147483493) {
					continue // outside Postgres' dates
				}
				s = dateSample(d)
			default:
				// Postgres' timestamps are 4714-11-24 BC .. 294276 AD.
				if us != math.MaxInt64 && us != math.MinInt64 && (us < -211813488000000000 || us >= 9223371331200000000) {
					continue
				}
				s = timestampSample(us, oid == pgTimestamptz, int(n))
			}
			cs := cases[oid]
			bc := cs[int(choice)%len(cs)]
			checkSame(t, bc, bc.tbl.NewBlock(), s)
		}
	})
}

func dateSample(d int32) sample {
	switch d {
	case math.MaxInt32:
		return sample{bin: be32(int64(d)), text: "infinity"}
	case math.MinInt32:
		return sample{bin: be32(int64(d)), text: "-infinity"}
	}
	t := time.Date(2000, 1, 1+int(d), 0, 0, 0, 0, time.UTC)
	s, bc := pgDateText(t)
	if bc {
		s += " BC"
	}
	return sample{bin: be32(int64(d)), text: s}
}

func timestampSample(us int64, zone bool, zoneChoice int) sample {
	switch us {
	case math.MaxInt64:
		return sample{bin: be64(us), text: "infinity"}
	case math.MinInt64:
		return sample{bin: be64(us), text: "-infinity"}
	}
	t := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(us%86400e6)*time.Microsecond).AddDate(0, 0, int(us/86400e6))
	if zone {
		t = t.In(textZones[uint(zoneChoice)%uint(len(textZones))])
	}
	s, bc := pgDateText(t)
	s += pgClockText(t)
	if zone {
		_, off := t.Zone()
		s += pgOffsetText(off)
	}
	if bc {
		s += " BC"
	}
	return sample{bin: be64(us), text: s}
}

// benchTable resolves a table like public.events.
func benchTable(tb testing.TB) *Table {
	tb.Helper()
	tbl, err := Resolve(TableSpec{
		Source:  "public.events",
		Target:  "events",
		OrderBy: []string{"project_id", "id"},
		Columns: map[string]ColumnSpec{
			"id": {Type: "UInt64"}, "project_id": {Type: "UInt64"}, "author_id": {Type: "UInt64"},
			"target_id": {Type: "UInt64"}, "action": {Type: "UInt8"}, "target_type": {Type: "LowCardinality(String)"},
			"group_id": {Type: "UInt64", Nullable: true}, "fingerprint": {Transform: TransformXXHash64},
		},
	}, []SourceColumn{
		{Name: "id", TypeOID: pgInt8, Identity: true},
		{Name: "project_id", TypeOID: pgInt4, Identity: true},
		{Name: "author_id", TypeOID: pgInt4},
		{Name: "target_id", TypeOID: pgInt4},
		{Name: "created_at", TypeOID: pgTimestamptz},
		{Name: "updated_at", TypeOID: pgTimestamptz},
		{Name: "action", TypeOID: pgInt2},
		{Name: "target_type", TypeOID: pgVarchar},
		{Name: "group_id", TypeOID: pgInt8},
		{Name: "fingerprint", TypeOID: pgBytea},
	}, noCaps)
	if err != nil {
		tb.Fatal(err)
	}
	return tbl
}

func benchRow() [][]byte {
	ts := be64(767_000_000_123_456) // 2024-04-21 07:33:20.123456 UTC
	return [][]byte{
		be64(42), be32(1234), be32(99), be32(5678), ts, ts, be16(1), []byte("Issue"), nil,
		[]byte("\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"),
	}
}

// TestBenchRow: the benchmark's row maps as its text does.
func TestBenchRow(t *testing.T) {
	tbl := benchTable(t)
	for i, expr := range tbl.CopyColumns() {
		if strings.Contains(expr, "::text") || strings.Contains(expr, "format") {
			t.Errorf("column %d is read as text: %s", i, expr)
		}
	}
	b := tbl.NewBlock()
	if err := b.AppendBinary(benchRow()); err != nil {
		t.Fatal(err)
	}
	vals := []Value{text("42"), text("1234"), text("99"), text("5678"), text("2024-04-21 07:33:20.123456+00"),
		text("2024-04-21 09:33:20.123456+02"), text("1"), text("Issue"), nullValue, text(`\x123456789abcdef00102030405060708090a0b0c`)}
	row := tbl.NewRow()
	if _, err := tbl.Row(vals, row, nil); err != nil {
		t.Fatal(err)
	}
	for i, col := range b.Columns(0, 0) {
		if i < len(tbl.Columns) && !sameValue(cell(col, 0), row[i]) {
			t.Errorf("column %s = %#v, Row %#v", tbl.Columns[i].Name, cell(col, 0), row[i])
		}
	}
}

// BenchmarkAppendBinary appends events rows; one op is one row.
func BenchmarkAppendBinary(b *testing.B) {
	tbl := benchTable(b)
	blk := tbl.NewBlock()
	row := benchRow()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%65536 == 0 {
			blk.Reset()
		}
		if err := blk.AppendBinary(row); err != nil {
			b.Fatal(err)
		}
	}
}

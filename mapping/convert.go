package mapping

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Names of the columns the replicator adds to every target table, after the
// mapped columns and in this order (the meta columns).
const (
	// VersionColumn holds the commit LSN of the change's transaction.
	VersionColumn = "_version"
	// DeletedColumn is 1 in a tombstone.
	DeletedColumn = "_deleted"
	// SeqColumn orders rows of equal version as the stream did: twice the
	// WAL position of the change, plus one for the row of its new image (so
	// that the tombstone a key or partition move writes at the old place is
	// older than the row at the new one). Copied rows have 0.
	SeqColumn = "_seq"
)

// MetaColumns are the meta column names in row order.
var MetaColumns = []string{VersionColumn, DeletedColumn, SeqColumn}

// Postgres type OIDs the mapping knows.
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

// DefaultType returns the ClickHouse type for a Postgres type when the
// configuration names none.
func DefaultType(oid uint32, caps Caps) Type {
	switch oid {
	case oidBool:
		return Type{Kind: KindUInt8}
	case oidInt2:
		return Type{Kind: KindInt16}
	case oidInt4:
		return Type{Kind: KindInt32}
	case oidInt8:
		return Type{Kind: KindInt64}
	case oidOID:
		return Type{Kind: KindUInt32}
	case oidFloat4:
		return Type{Kind: KindFloat32}
	case oidFloat8:
		return Type{Kind: KindFloat64}
	case oidUUID:
		return Type{Kind: KindUUID}
	case oidDate:
		return Type{Kind: KindDate}
	case oidTimestamp, oidTimestamptz:
		if caps.DateTime64 {
			return Type{Kind: KindDateTime64, Precision: 6, TimeZone: "UTC"}
		}
		return Type{Kind: KindDateTime, TimeZone: "UTC"}
	default:
		// text, varchar, bytea, json, numeric and every other type keep
		// their exact text (or raw bytes for bytea) in a String.
		return Type{Kind: KindString}
	}
}

func targetType(src Source, cs ColumnSpec, caps Caps) (Type, error) {
	var typ Type
	if cs.Type != "" {
		t, err := ParseType(cs.Type)
		if err != nil {
			return Type{}, err
		}
		typ = t
	} else if cs.Transform == TransformXXHash64 {
		typ = Type{Kind: KindUInt64}
	} else {
		typ = defaultType(src, caps)
	}
	if typ.IsEnum() && (typ.Labels == "" || typ.Labels == autoEnum) {
		if !src.Enum || typ.Array {
			return Type{}, fmt.Errorf("type %s is for a column of a Postgres enum type (an array of enums maps to Array(String))", typ)
		}
		auto := typ.Labels == autoEnum
		t, err := EnumOf(typ.Kind, auto, src.Labels, Type{})
		if err != nil {
			return Type{}, err
		}
		typ = t
	}
	if typ.Kind == KindMap && !src.Hstore || typ.Kind == KindJSON && src.OID != oidJSON && src.OID != oidJSONB {
		return Type{}, fmt.Errorf("type %s is for a column of type %s", typ, map[Kind]string{KindMap: "hstore", KindJSON: "json or jsonb"}[typ.Kind])
	}
	if cs.Nullable {
		switch typ.Kind {
		case KindMap:
			return Type{}, fmt.Errorf("nullable: ClickHouse has no Nullable(Map): a NULL hstore is an empty map; drop nullable " +
				"(Map(String, Nullable(String)) keeps NULL values)")
		case KindJSON:
			return Type{}, fmt.Errorf("nullable: Nullable(JSON) is not supported: a NULL json is an empty object; drop nullable")
		}
		if typ.LowCardinality {
			return Type{}, fmt.Errorf("nullable LowCardinality columns are not supported")
		}
		typ.Nullable = true
	}
	if typ.Kind == KindDateTime64 && !caps.DateTime64 {
		return Type{}, fmt.Errorf("type %s needs ClickHouse >= 20.1; use DateTime('UTC')", typ)
	}
	if typ.Kind == KindBool && !caps.Bool {
		return Type{}, fmt.Errorf("type Bool needs ClickHouse >= 21.12; use UInt8")
	}
	if typ.Kind == KindDate32 && !caps.Date32 {
		return Type{}, fmt.Errorf("type Date32 (1900..2299) needs ClickHouse >= 22.8; use Date or String")
	}
	if typ.Kind == KindMap && !caps.Map {
		return Type{}, fmt.Errorf("type %s needs ClickHouse >= 21.8 (experimental before); use String", typ)
	}
	if typ.Kind == KindJSON && !caps.JSON {
		return Type{}, fmt.Errorf("type JSON needs ClickHouse >= 25.3 (production ready there, experimental before); use String")
	}
	return typ, nil
}

type converter func(text []byte) (any, error)

// errNegative is returned for a negative value into an unsigned column.
var errNegative = errors.New("negative value into an unsigned column")

func newConverter(src Source, typ Type, tr Transform, caps Caps) (converter, error) {
	oid := src.OID
	elem, isArray := src.elem()
	if typ.Array {
		if !isArray || tr != TransformNone {
			return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
		}
		et := typ
		et.Array = false
		conv, err := newConverter(elem, et, TransformNone, caps)
		if err != nil {
			return nil, err
		}
		return arrayConverter(et, conv), nil
	}
	if isArray && typ.Kind != KindString {
		return nil, fmt.Errorf("cannot map Postgres array type %d to %s: use Array(T) or String", oid, typ)
	}
	switch tr {
	case TransformNone:
	case TransformXXHash64:
		if typ.Kind != KindUInt64 {
			return nil, fmt.Errorf("transform xxhash64 needs type UInt64, not %s", typ)
		}
		if oid == oidBytea {
			return func(b []byte) (any, error) {
				raw, err := decodeBytea(b)
				if err != nil {
					return nil, err
				}
				return xxhash.Sum64(raw), nil
			}, nil
		}
		return func(b []byte) (any, error) { return xxhash.Sum64(b), nil }, nil
	default:
		return nil, fmt.Errorf("unknown transform %q (supported: xxhash64)", tr)
	}

	switch {
	case typ.Kind == KindMap:
		if !src.Hstore {
			return nil, fmt.Errorf("type %s is for a column of type hstore", typ)
		}
		return hstoreConverter(typ, false, nil), nil
	case typ.Kind == KindJSON:
		if oid != oidJSON && oid != oidJSONB {
			return nil, fmt.Errorf("type JSON is for a column of type json or jsonb")
		}
		return jsonConverter(typ), nil
	case typ.IsEnum():
		if !src.Enum {
			return nil, fmt.Errorf("type %s is for a column of a Postgres enum type", typ)
		}
		return enumConverter(typ), nil
	case typ.Kind == KindString:
		if oid == oidBytea {
			return func(b []byte) (any, error) {
				raw, err := decodeBytea(b)
				return string(raw), err
			}, nil
		}
		return func(b []byte) (any, error) { return string(b), nil }, nil
	case typ.IsInteger():
		return integerConverter(oid, typ)
	case typ.Kind == KindDecimal:
		if !isNumeric(oid) || oid == oidFloat4 || oid == oidFloat8 {
			return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
		}
		return decimalConverter(typ), nil
	case typ.Kind == KindBool:
		if oid != oidBool {
			return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
		}
		return func(b []byte) (any, error) {
			switch string(b) {
			case "t":
				return true, nil
			case "f":
				return false, nil
			}
			return nil, fmt.Errorf("value %q is not a boolean", b)
		}, nil
	case typ.Kind == KindFloat32 || typ.Kind == KindFloat64:
		if !isNumeric(oid) {
			return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
		}
		bits := 64
		if typ.Kind == KindFloat32 {
			bits = 32
		}
		return func(b []byte) (any, error) {
			f, err := strconv.ParseFloat(string(b), bits)
			if err != nil {
				return nil, fmt.Errorf("value %q is not a number", b)
			}
			if bits == 32 {
				return float32(f), nil
			}
			return f, nil
		}, nil
	case typ.Kind == KindUUID:
		if oid != oidUUID && !isText(oid) {
			return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
		}
		return func(b []byte) (any, error) {
			u, err := parseUUID(b)
			if err != nil {
				return nil, err
			}
			return u, nil
		}, nil
	case typ.Kind == KindDate || typ.Kind == KindDate32 || typ.Kind == KindDateTime || typ.Kind == KindDateTime64:
		if oid != oidDate && oid != oidTimestamp && oid != oidTimestamptz {
			return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
		}
		return timeConverter(typ, caps), nil
	}
	return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
}

func isNumeric(oid uint32) bool {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
		return true
	}
	return false
}

func isText(oid uint32) bool {
	switch oid {
	case oidText, oidVarchar, oidBPChar, oidName, oidChar:
		return true
	}
	return false
}

func integerConverter(oid uint32, typ Type) (converter, error) {
	if oid == oidBool {
		return func(b []byte) (any, error) {
			switch string(b) {
			case "t":
				return castInt(1, typ), nil
			case "f":
				return castInt(0, typ), nil
			}
			return nil, fmt.Errorf("value %q is not a boolean", b)
		}, nil
	}
	if !isNumeric(oid) {
		return nil, fmt.Errorf("cannot map Postgres type %d to %s", oid, typ)
	}
	min, max := intRange(typ)
	if typ.IsUnsigned() {
		top := castUint(uint64(max), typ)
		if typ.Kind == KindUInt64 {
			top = uint64(math.MaxUint64)
		}
		return func(b []byte) (any, error) {
			if len(b) > 0 && b[0] == '-' {
				if string(b) == "-0" {
					return castUint(0, typ), nil
				}
				if _, err := strconv.ParseInt(string(b), 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
					return nil, outOfRange(castUint(0, typ), "value %s: %w %s", b, errNegative, typ)
				}
			}
			u, err := strconv.ParseUint(string(b), 10, 64)
			if errors.Is(err, strconv.ErrRange) {
				return nil, outOfRange(top, "value %s is out of the range of %s", b, typ)
			}
			if err != nil {
				return nil, fmt.Errorf("value %q is not an integer in the range of %s", b, typ)
			}
			if typ.Kind != KindUInt64 && u > uint64(max) {
				return nil, outOfRange(top, "value %s is out of the range of %s", b, typ)
			}
			return castUint(u, typ), nil
		}, nil
	}
	return func(b []byte) (any, error) {
		n, err := strconv.ParseInt(string(b), 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange) && len(b) > 0 && b[0] == '-', err == nil && n < min:
			return nil, outOfRange(castInt(min, typ), "value %s is out of the range of %s", b, typ)
		case errors.Is(err, strconv.ErrRange), err == nil && n > max:
			return nil, outOfRange(castInt(max, typ), "value %s is out of the range of %s", b, typ)
		case err != nil:
			return nil, fmt.Errorf("value %q is not an integer in the range of %s", b, typ)
		}
		return castInt(n, typ), nil
	}, nil
}

// intRange returns the bounds of an integer type; for UInt64 max is reported
// as MaxInt64 but is not used as a bound.
func intRange(typ Type) (int64, int64) {
	switch typ.Kind {
	case KindUInt8:
		return 0, math.MaxUint8
	case KindUInt16:
		return 0, math.MaxUint16
	case KindUInt32:
		return 0, math.MaxUint32
	case KindUInt64:
		return 0, -1 // unused: every uint64 fits
	case KindInt8:
		return math.MinInt8, math.MaxInt8
	case KindInt16:
		return math.MinInt16, math.MaxInt16
	case KindInt32:
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

func castUint(u uint64, typ Type) any {
	switch typ.Kind {
	case KindUInt8:
		return uint8(u)
	case KindUInt16:
		return uint16(u)
	case KindUInt32:
		return uint32(u)
	}
	return u
}

func castInt(n int64, typ Type) any {
	switch typ.Kind {
	case KindUInt8, KindUInt16, KindUInt32, KindUInt64:
		return castUint(uint64(n), typ)
	case KindInt8:
		return int8(n)
	case KindInt16:
		return int16(n)
	case KindInt32:
		return int32(n)
	}
	return n
}

var epoch = time.Unix(0, 0).UTC()

func zeroValue(typ Type) any {
	if typ.Array {
		// An empty array of the elements' Go type (pointers for Nullable).
		base := typ
		base.Array, base.Nullable = false, false
		goType := reflect.TypeOf(zeroValue(base))
		if typ.Nullable {
			goType = reflect.PointerTo(goType)
		}
		return reflect.MakeSlice(reflect.SliceOf(goType), 0, 0).Interface()
	}
	if typ.Nullable {
		return nil
	}
	switch typ.Kind {
	case KindDecimal:
		return decimal.Zero
	case KindBool:
		return false
	case KindDate32:
		return epoch
	case KindString, KindEnum8, KindEnum16:
		return ""
	case KindMap:
		if typ.NullableValues {
			return map[string]*string{}
		}
		return map[string]string{}
	case KindJSON:
		return "{}"
	case KindUUID:
		return uuid.UUID{}
	case KindDate, KindDateTime, KindDateTime64:
		return epoch
	case KindFloat32:
		return float32(0)
	case KindFloat64:
		return float64(0)
	}
	return castInt(0, typ)
}

// parseUUID parses a UUID's text.
func parseUUID(b []byte) (uuid.UUID, error) {
	u, err := uuid.ParseBytes(b)
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("value %q is not a UUID", b)
	}
	return u, nil
}

// timeBounds returns the first and last Unix second a DateTime or
// DateTime64 column holds on a server with caps.
func timeBounds(typ Type, caps Caps) (lo, hi int64) {
	if typ.Kind == KindDateTime64 {
		return caps.dateTime64Bounds(typ.Precision)
	}
	return 0, math.MaxUint32
}

// decodeBytea decodes Postgres' hex bytea output ("\x0aff").
func decodeBytea(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != '\\' || b[1] != 'x' {
		return nil, fmt.Errorf("bytea value is not in hex format (set bytea_output = 'hex')")
	}
	out := make([]byte, (len(b)-2)/2)
	if _, err := hex.Decode(out, b[2:]); err != nil {
		return nil, fmt.Errorf("bytea value: %w", err)
	}
	return out, nil
}

// infiniteError is a date or timestamp ±infinity, or a date BC.
type infiniteError struct {
	text     string
	negative bool
}

func (e *infiniteError) Error() string {
	return fmt.Sprintf("value %q cannot be stored in ClickHouse", e.text)
}

// timeRange returns the first and last Unix second a column of a date or
// time type holds on a server with caps, and whether it holds days.
func timeRange(typ Type, caps Caps) (lo, hi int64, date bool) {
	switch typ.Kind {
	case KindDate:
		return 0, time.Date(2148, 12, 31, 23, 59, 59, 0, time.UTC).Unix(), true
	case KindDate32:
		return time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2299, 12, 31, 23, 59, 59, 0, time.UTC).Unix(), true
	}
	lo, hi = timeBounds(typ, caps)
	return lo, hi, false
}

// timeCheck checks dates and times against the range of a type.
type timeCheck struct {
	typ    Type
	lo, hi int64
	date   bool
}

func newTimeCheck(typ Type, caps Caps) timeCheck {
	lo, hi, date := timeRange(typ, caps)
	return timeCheck{typ: typ, lo: lo, hi: hi, date: date}
}

// check checks a parsed (or infinite, err) date or time; text names the
// value in errors (called only then). A value out of range is a
// RangeError whose nearest value is the bound it passed.
func (c timeCheck) check(t time.Time, err error, text func() string) (time.Time, error) {
	if err != nil {
		var inf *infiniteError
		if !errors.As(err, &inf) {
			return time.Time{}, err
		}
		t = time.Unix(c.hi+1, 0)
		if inf.negative {
			t = time.Unix(c.lo-1, 0)
		}
		re := timeRangeError(t, c.lo, c.hi, c.date, text(), c.typ).(*RangeError)
		re.Err = inf
		return time.Time{}, re
	}
	if s := t.Unix(); s < c.lo || s > c.hi {
		return time.Time{}, timeRangeError(t, c.lo, c.hi, c.date, text(), c.typ)
	}
	if c.date {
		y, m, d := t.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
	}
	// The value ClickHouse stores: whole seconds in a DateTime, the
	// precision's digits in a DateTime64. Keys and places compare mapped
	// values with values read back (see Table.Placement).
	precision := 0
	if c.typ.Kind == KindDateTime64 {
		precision = c.typ.Precision
	}
	if precision < 9 {
		t = t.Truncate(time.Duration(math.Pow10(9 - precision)))
	}
	return t, nil
}

// timeConverter converts the text of a date, timestamp or timestamptz into
// a Date, Date32, DateTime or DateTime64 value of a server with caps.
func timeConverter(typ Type, caps Caps) converter {
	c := newTimeCheck(typ, caps)
	return func(b []byte) (any, error) {
		t, err := parseTimestamp(b)
		t, err = c.check(t, err, func() string { return string(b) })
		if err != nil {
			return nil, err
		}
		return t, nil
	}
}

// parseTimestamp parses Postgres' ISO output of date, timestamp and
// timestamptz ("2024-05-01 10:11:12.123456+00"); values without a zone are UTC.
func parseTimestamp(b []byte) (time.Time, error) {
	if t, ok := parseISOFast(b); ok {
		return t, nil
	}
	s := string(b)
	if s == "infinity" || s == "-infinity" || len(s) > 3 && s[len(s)-3:] == " BC" {
		return time.Time{}, &infiniteError{text: s, negative: s != "infinity"}
	}
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if t, ok := parseLongYear(s); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("value %q is not an ISO timestamp", s)
}

// parseLongYear parses a date or timestamp of a year past 9999, which
// Postgres prints with all its digits ("10000-01-01 00:00:00+00") and Go's
// layouts do not take. The value is then a RangeError of every ClickHouse
// type, as the binary copy's is, not a malformed one: the invalid option
// applies to both alike.
func parseLongYear(s string) (time.Time, bool) {
	i := strings.IndexByte(s, '-')
	if i < 5 || i > 7 { // Postgres' years end at 294276, 5874897 for dates
		return time.Time{}, false
	}
	year := 0
	for _, c := range s[:i] {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		year = year*10 + int(c-'0')
	}
	// A leap year stands in for the year, so that February 29 parses.
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, "2000"+s[i:]); err == nil {
			return time.Date(year, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location()).UTC(), true
		}
	}
	return time.Time{}, false
}

// parseISOFast parses the common shape of Postgres' ISO output,
// "YYYY-MM-DD HH:MM:SS[.fraction][±HH[:MM[:SS]]]", without allocating;
// ok is false for anything else (dates alone, years past 9999, BC,
// infinity, malformed text), which parseTimestamp's layouts then decide.
func parseISOFast(b []byte) (time.Time, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		}
		digits := rest[1:i]
		if len(digits) == 0 || len(digits) > 9 {
			return time.Time{}, false
		}
		nsec, _ = num(digits)
		for k := len(digits); k < 9; k++ {
			nsec *= 10
		}
		rest = rest[i:]
	}
	offset := 0
	if len(rest) > 0 {
		if rest[0] != '+' && rest[0] != '-' {
			return time.Time{}, false
		}
		sign := 1
		if rest[0] == '-' {
			sign = -1
		}
		parts := rest[1:]
		var fields [3]int
		n := 0
		for len(parts) > 0 {
			if n == 3 || len(parts) < 2 {
				return time.Time{}, false
			}
			v, ok := num(parts[:2])
			if !ok {
				return time.Time{}, false
			}
			fields[n], n = v, n+1
			parts = parts[2:]
			if len(parts) > 0 {
				if parts[0] != ':' {
					return time.Time{}, false
				}
				parts = parts[1:]
				if len(parts) == 0 {
					return time.Time{}, false
				}
			}
		}
		if n == 0 || fields[1] > 59 || fields[2] > 59 {
			return time.Time{}, false
		}
		offset = sign * (fields[0]*3600 + fields[1]*60 + fields[2])
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // e.g. February 30: the layouts report it
	}
	return t.Add(-time.Duration(offset) * time.Second), true
}

var timestampLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07:00:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

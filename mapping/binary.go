package mapping

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/google/uuid"
)

// Postgres' binary date and timestamp count from 2000-01-01 00:00:00 UTC.
const (
	pgEpochUnix = 946684800 // in Unix seconds
	pgEpochDays = 10957     // in days since 1970-01-01
)

// CopyColumns returns, per column of t in order, the SQL expression a binary
// COPY selects for it: the quoted column name where the block decodes the
// binary form, else an expression whose value is the column's text output,
// the very text the streaming path maps. That is the quoted name followed by
// ::text for the types whose cast to text is their output function (numbers,
// json, uuid, date and time types), and the output function through format
// for every other type (a domain, "char", inet, xml: their casts to text
// differ from their output), keeping NULL as NULL.
func (t *Table) CopyColumns() []string {
	out := make([]string, len(t.Columns))
	for i := range t.Columns {
		c := &t.Columns[i]
		q := quoteIdent(c.Source)
		switch {
		case decodesBinary(c):
			out[i] = q
		case castsToOutput(c.SourceOID):
			out[i] = q + "::text"
		default:
			// num_nulls tests the value, not the fields of a composite.
			out[i] = "CASE WHEN num_nulls(" + q + ") = 0 THEN format('%s', " + q + ") END"
		}
	}
	return out
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// decodesBinary reports whether the block maps c from its binary COPY form:
// only where that yields exactly what the text converter yields for the
// type's text output.
func decodesBinary(c *Column) bool {
	oid := c.SourceOID
	if c.Transform == TransformXXHash64 || c.Type.Kind == KindString {
		// A text type's binary form and bytea's raw bytes are the bytes
		// the text path stores or hashes; bool becomes "t" or "f".
		return oid == oidBytea || oid == oidBool || isRawText(oid)
	}
	switch c.Type.Kind {
	case KindUInt8, KindUInt16, KindUInt32, KindUInt64, KindInt8, KindInt16, KindInt32, KindInt64:
		return oid == oidBool || isBinaryInt(oid)
	case KindFloat32:
		return oid == oidFloat4 || isBinaryInt(oid)
	case KindFloat64:
		return oid == oidFloat8 || isBinaryInt(oid)
	case KindUUID:
		return oid == oidUUID || isRawText(oid)
	case KindDate, KindDateTime, KindDateTime64:
		return oid == oidDate || oid == oidTimestamp || oid == oidTimestamptz
	}
	return false
}

// isRawText reports whether a type's binary form is its text output.
// "char" is not: its output escapes a byte >= 0x80 and drops a zero byte.
func isRawText(oid uint32) bool {
	switch oid {
	case oidText, oidVarchar, oidBPChar, oidName:
		return true
	}
	return false
}

func isBinaryInt(oid uint32) bool {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID:
		return true
	}
	return false
}

// castsToOutput reports whether a type's cast to text is its output function
// (an I/O conversion or a binary-coercible cast). It is not for bool
// ("true"), bpchar (trims), "char", name, inet, xml, and a domain over any
// of them.
func castsToOutput(oid uint32) bool {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric, oidJSON, oidJSONB,
		oidUUID, oidDate, oidTimestamp, oidTimestamptz, oidText, oidVarchar:
		return true
	}
	return false
}

// integer constrains to the Go types of ClickHouse's integer columns.
type integer interface {
	~uint8 | ~uint16 | ~uint32 | ~uint64 | ~int8 | ~int16 | ~int32 | ~int64
}

// intDecoder decodes a binary bool, int2, int4, int8 or oid into typ, whose
// Go type is T, with the text path's range checks.
func intDecoder[T integer](oid uint32, typ Type) func([]byte) (T, error) {
	if oid == oidBool {
		return func(b []byte) (T, error) {
			v, err := readBool(b)
			if v {
				return 1, err
			}
			return 0, err
		}
	}
	lo, hi := intRange(typ)
	unsigned, any64 := typ.IsUnsigned(), typ.Kind == KindUInt64
	if oid == oidOID {
		return func(b []byte) (T, error) {
			if len(b) != 4 {
				return 0, errFieldSize(b, 4)
			}
			n := int64(binary.BigEndian.Uint32(b))
			if !any64 && n > hi {
				return 0, outOfRange(T(hi), "value %d is out of the range of %s", n, typ)
			}
			return T(n), nil
		}
	}
	size := intSize(oid)
	return func(b []byte) (T, error) {
		n, err := readInt(b, size)
		switch {
		case err != nil:
			return 0, err
		case unsigned && n < 0:
			return 0, outOfRange(T(0), "value %d: %w %s", n, errNegative, typ)
		case !any64 && n < lo:
			return 0, outOfRange(T(lo), "value %d is out of the range of %s", n, typ)
		case !any64 && n > hi:
			return 0, outOfRange(T(hi), "value %d is out of the range of %s", n, typ)
		}
		return T(n), nil
	}
}

// floatDecoder decodes a binary int2, int4, int8 or oid, or a float of T's
// width, into T. Both conversions round like the text path's ParseFloat
// does, and NaN is the NaN ParseFloat returns.
func floatDecoder[T float32 | float64](oid uint32) func([]byte) (T, error) {
	switch oid {
	case oidOID:
		return func(b []byte) (T, error) {
			if len(b) != 4 {
				return 0, errFieldSize(b, 4)
			}
			return T(binary.BigEndian.Uint32(b)), nil
		}
	case oidFloat4:
		nan := T(float32(math.NaN()))
		return func(b []byte) (T, error) {
			if len(b) != 4 {
				return 0, errFieldSize(b, 4)
			}
			f := math.Float32frombits(binary.BigEndian.Uint32(b))
			if f != f {
				return nan, nil
			}
			return T(f), nil
		}
	case oidFloat8:
		nan := T(math.NaN())
		return func(b []byte) (T, error) {
			if len(b) != 8 {
				return 0, errFieldSize(b, 8)
			}
			f := math.Float64frombits(binary.BigEndian.Uint64(b))
			if f != f {
				return nan, nil
			}
			return T(f), nil
		}
	}
	size := intSize(oid)
	return func(b []byte) (T, error) {
		n, err := readInt(b, size)
		return T(n), err
	}
}

// timeDecoder decodes a binary date, timestamp or timestamptz into a Date,
// DateTime or DateTime64 value with the text path's range checks.
func timeDecoder(oid uint32, typ Type, caps Caps) func([]byte) (time.Time, error) {
	c := newTimeCheck(typ, caps)
	return func(b []byte) (time.Time, error) {
		t, err := readTime(oid, b)
		return c.check(t, err, func() string { return binaryText(oid, b) })
	}
}

// uuidDecoder decodes a binary uuid, or parses text like the text path.
func uuidDecoder(oid uint32) func([]byte) (uuid.UUID, error) {
	if oid != oidUUID {
		return parseUUID
	}
	return func(b []byte) (uuid.UUID, error) {
		if len(b) != 16 {
			return uuid.UUID{}, errFieldSize(b, 16)
		}
		return uuid.UUID(b), nil
	}
}

// stringDecoder returns a field as a String value: the raw bytes of bytea
// and of the text types, the text of a text-form field, "t" or "f" for bool.
// With intern, repeated values share one string (for LowCardinality).
func stringDecoder(oid uint32, intern bool) func([]byte) (string, error) {
	if oid == oidBool {
		return func(b []byte) (string, error) {
			v, err := readBool(b)
			if v {
				return "t", err
			}
			return "f", err
		}
	}
	if !intern {
		return func(b []byte) (string, error) { return string(b), nil }
	}
	seen := make(map[string]string)
	return func(b []byte) (string, error) {
		if s, ok := seen[string(b)]; ok {
			return s, nil
		}
		s := string(b)
		if len(seen) < maxInterned && len(s) <= maxInternedLen {
			seen[s] = s
		}
		return s, nil
	}
}

// Bounds of the strings a LowCardinality column shares.
const (
	maxInterned    = 4096
	maxInternedLen = 256
)

// hashDecoder returns the xxHash64 of what the text path hashes: bytea's raw
// bytes, the text of the other types ("t" or "f" for bool).
func hashDecoder(oid uint32) func([]byte) (uint64, error) {
	if oid == oidBool {
		t, f := xxhash.Sum64String("t"), xxhash.Sum64String("f")
		return func(b []byte) (uint64, error) {
			v, err := readBool(b)
			if v {
				return t, err
			}
			return f, err
		}
	}
	return func(b []byte) (uint64, error) { return xxhash.Sum64(b), nil }
}

// textDecoder maps a text-form field with the streaming path's converter.
func textDecoder[T any](c *Column) func([]byte) (T, error) {
	conv := c.conv
	return func(b []byte) (T, error) {
		v, err := conv(b)
		if err != nil {
			var zero T
			return zero, err
		}
		return v.(T), nil
	}
}

func intSize(oid uint32) int {
	switch oid {
	case oidInt2:
		return 2
	case oidInt4:
		return 4
	}
	return 8
}

func errFieldSize(b []byte, want int) error {
	return fmt.Errorf("binary value has %d bytes, want %d", len(b), want)
}

func readBool(b []byte) (bool, error) {
	if len(b) != 1 || b[0] > 1 {
		return false, fmt.Errorf("binary value %x is not a boolean", b)
	}
	return b[0] == 1, nil
}

// readInt reads a big-endian signed integer of size bytes.
func readInt(b []byte, size int) (int64, error) {
	if len(b) != size {
		return 0, errFieldSize(b, size)
	}
	switch size {
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// readTime reads a binary date (days) or timestamp (microseconds) as the UTC
// time the text path parses from its output. Infinity cannot be stored.
func readTime(oid uint32, b []byte) (time.Time, error) {
	if oid == oidDate {
		if len(b) != 4 {
			return time.Time{}, errFieldSize(b, 4)
		}
		d := int32(binary.BigEndian.Uint32(b))
		if d == math.MaxInt32 || d == math.MinInt32 {
			return time.Time{}, &infiniteError{text: binaryText(oid, b), negative: d == math.MinInt32}
		}
		return time.Unix((int64(d)+pgEpochDays)*86400, 0).UTC(), nil
	}
	if len(b) != 8 {
		return time.Time{}, errFieldSize(b, 8)
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, &infiniteError{text: binaryText(oid, b), negative: us == math.MinInt64}
	}
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	return time.Unix(sec+pgEpochUnix, frac*1000).UTC(), nil
}

// KeyOfBinary renders the sorting key of a binary COPY row (fields as
// CopyColumns selected them) like KeyOf does for text values ("id=42"), for
// error messages about rows that could not be mapped.
func (t *Table) KeyOfBinary(fields [][]byte) string {
	var b strings.Builder
	for n, i := range t.Key {
		if n > 0 {
			b.WriteString(", ")
		}
		c := &t.Columns[i]
		b.WriteString(c.Name)
		b.WriteByte('=')
		switch {
		case i >= len(fields) || fields[i] == nil:
			b.WriteString("?")
		case decodesBinary(c):
			b.WriteString(binaryText(c.SourceOID, fields[i]))
		default:
			b.Write(fields[i])
		}
	}
	return b.String()
}

// binaryText renders a binary field like Postgres' text output (ISO dates,
// UTC timestamps), for keys and error messages; a field it cannot read is
// shown in hex.
func binaryText(oid uint32, b []byte) string {
	switch {
	case isRawText(oid):
		return string(b)
	case oid == oidBool && len(b) == 1 && b[0] <= 1:
		if b[0] == 1 {
			return "t"
		}
		return "f"
	case oid == oidBytea:
		return `\x` + hex.EncodeToString(b)
	case oid == oidOID && len(b) == 4:
		return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b)), 10)
	case oid == oidInt2 || oid == oidInt4 || oid == oidInt8:
		if n, err := readInt(b, intSize(oid)); err == nil {
			return strconv.FormatInt(n, 10)
		}
	case oid == oidFloat4 && len(b) == 4:
		return formatFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(b))), 32)
	case oid == oidFloat8 && len(b) == 8:
		return formatFloat(math.Float64frombits(binary.BigEndian.Uint64(b)), 64)
	case oid == oidUUID && len(b) == 16:
		return uuid.UUID(b).String()
	case oid == oidDate && len(b) == 4:
		switch d := int32(binary.BigEndian.Uint32(b)); d {
		case math.MaxInt32:
			return "infinity"
		case math.MinInt32:
			return "-infinity"
		}
		t, _ := readTime(oid, b)
		return formatTime(t, false, false)
	case (oid == oidTimestamp || oid == oidTimestamptz) && len(b) == 8:
		switch us := int64(binary.BigEndian.Uint64(b)); us {
		case math.MaxInt64:
			return "infinity"
		case math.MinInt64:
			return "-infinity"
		}
		t, _ := readTime(oid, b)
		return formatTime(t, true, oid == oidTimestamptz)
	}
	return `\x` + hex.EncodeToString(b)
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// formatTime renders a UTC time in Postgres' ISO style, years before 1 AD
// with " BC".
func formatTime(t time.Time, clock, zone bool) string {
	y, m, d := t.Date()
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	s := fmt.Sprintf("%04d-%02d-%02d", y, int(m), d)
	if clock {
		s += fmt.Sprintf(" %02d:%02d:%02d", t.Hour(), t.Minute(), t.Second())
		if us := t.Nanosecond() / 1000; us != 0 {
			s += strings.TrimRight(fmt.Sprintf(".%06d", us), "0")
		}
	}
	if zone {
		s += "+00"
	}
	if bc {
		s += " BC"
	}
	return s
}

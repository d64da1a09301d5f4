package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the base ClickHouse type of a column.
type Kind int

// The ClickHouse base types the replicator writes.
const (
	KindInvalid Kind = iota
	KindUInt8
	KindUInt16
	KindUInt32
	KindUInt64
	KindInt8
	KindInt16
	KindInt32
	KindInt64
	KindFloat32
	KindFloat64
	KindString
	KindUUID
	KindDate
	KindDateTime
	KindDateTime64
	KindDecimal
	KindBool
	KindDate32
	// KindEnum8 and KindEnum16 hold a Postgres enum's labels (see Labels).
	KindEnum8
	KindEnum16
	// KindMap is Map(String, String), or Map(String, Nullable(String))
	// with NullableValues: an hstore's pairs.
	KindMap
	// KindJSON is ClickHouse's JSON: a json or jsonb object.
	KindJSON
)

var kindNames = map[Kind]string{
	KindUInt8: "UInt8", KindUInt16: "UInt16", KindUInt32: "UInt32", KindUInt64: "UInt64",
	KindInt8: "Int8", KindInt16: "Int16", KindInt32: "Int32", KindInt64: "Int64",
	KindFloat32: "Float32", KindFloat64: "Float64", KindString: "String", KindUUID: "UUID",
	KindDate: "Date", KindDateTime: "DateTime", KindDateTime64: "DateTime64", KindDecimal: "Decimal",
	KindBool: "Bool", KindDate32: "Date32", KindEnum8: "Enum8", KindEnum16: "Enum16",
	KindMap: "Map", KindJSON: "JSON",
}

// Type is a ClickHouse column type as the replicator understands it.
type Type struct {
	Kind           Kind
	Nullable       bool
	LowCardinality bool
	// Precision is the sub-second digits of a DateTime64, or the digits of
	// a Decimal, whose Scale digits are after the point.
	Precision int
	Scale     int
	// Array makes the type Array(T), T being the type the other fields
	// describe (Nullable: the elements are).
	Array bool
	// TimeZone of a DateTime or DateTime64; empty means the server's.
	TimeZone string
	// Labels are an Enum's elements in ClickHouse syntax ("'' = 0, 'a' =
	// 1"), ordered by value (see EnumOf): a string keeps Type comparable.
	// Empty in an Enum a configuration names: the labels are Postgres'.
	Labels string
	// NullableValues makes a Map Map(String, Nullable(String)).
	NullableValues bool
}

// IsInteger reports whether the type is one of the integer kinds.
func (t Type) IsInteger() bool { return t.Kind >= KindUInt8 && t.Kind <= KindInt64 }

// IsUnsigned reports whether the type is an unsigned integer.
func (t Type) IsUnsigned() bool { return t.Kind >= KindUInt8 && t.Kind <= KindUInt64 }

// String returns the type in ClickHouse syntax.
func (t Type) String() string {
	var s string
	switch t.Kind {
	case KindDateTime:
		s = "DateTime"
		if t.TimeZone != "" {
			s += "('" + t.TimeZone + "')"
		}
	case KindDateTime64:
		s = "DateTime64(" + strconv.Itoa(t.Precision)
		if t.TimeZone != "" {
			s += ", '" + t.TimeZone + "'"
		}
		s += ")"
	case KindDecimal:
		s = "Decimal(" + strconv.Itoa(t.Precision) + ", " + strconv.Itoa(t.Scale) + ")"
	case KindEnum8, KindEnum16:
		switch t.Labels {
		case autoEnum:
			s = "Enum"
		case "":
			s = kindNames[t.Kind]
		default:
			s = kindNames[t.Kind] + "(" + t.Labels + ")"
		}
	case KindMap:
		s = "Map(String, String)"
		if t.NullableValues {
			s = "Map(String, Nullable(String))"
		}
	default:
		s = kindNames[t.Kind]
	}
	if t.Nullable {
		s = "Nullable(" + s + ")"
	}
	if t.LowCardinality {
		s = "LowCardinality(" + s + ")"
	}
	if t.Array {
		s = "Array(" + s + ")"
	}
	return s
}

// ParseType parses a ClickHouse type name such as "UInt64",
// "LowCardinality(String)" or "DateTime64(6, 'UTC')". Only the types the
// replicator can write are accepted.
func ParseType(s string) (Type, error) {
	t, err := parseType(strings.TrimSpace(s), 0)
	if err == nil && t.Kind == KindDecimal && (t.Precision < 1 || t.Precision > 38 || t.Scale < 0 || t.Scale > t.Precision) {
		err = fmt.Errorf("Decimal(P, S) needs 1 <= P <= 38 and 0 <= S <= P")
	}
	if err != nil {
		return Type{}, fmt.Errorf("type %q: %w", s, err)
	}
	return t, nil
}

func parseType(s string, depth int) (Type, error) {
	if depth > 2 {
		return Type{}, fmt.Errorf("too deeply nested")
	}
	name, args, hasArgs, err := splitType(s)
	if err != nil {
		return Type{}, err
	}
	switch name {
	case "Array":
		if !hasArgs || len(args) != 1 {
			return Type{}, fmt.Errorf("Array takes one type argument")
		}
		if depth > 0 {
			return Type{}, fmt.Errorf("Array must be the outermost type (multi-dimensional arrays are stored as String)")
		}
		inner, err := parseType(args[0], depth+1)
		if err != nil {
			return Type{}, err
		}
		if inner.Array {
			return Type{}, fmt.Errorf("multi-dimensional arrays are not supported (store them as String)")
		}
		if inner.Kind == KindMap || inner.Kind == KindJSON {
			return Type{}, fmt.Errorf("arrays of %s are not supported (store them as String)", kindNames[inner.Kind])
		}
		inner.Array = true
		return inner, nil
	case "Decimal":
		if !hasArgs || len(args) != 2 {
			return Type{}, fmt.Errorf("Decimal takes a precision and a scale")
		}
		p, err1 := strconv.Atoi(strings.TrimSpace(args[0]))
		sc, err2 := strconv.Atoi(strings.TrimSpace(args[1]))
		if err1 != nil || err2 != nil {
			return Type{}, fmt.Errorf("Decimal(P, S) takes two integers")
		}
		return Type{Kind: KindDecimal, Precision: p, Scale: sc}, nil
	case "Nullable", "LowCardinality":
		if !hasArgs || len(args) != 1 {
			return Type{}, fmt.Errorf("%s takes one type argument", name)
		}
		inner, err := parseType(args[0], depth+1)
		if err != nil {
			return Type{}, err
		}
		if name == "Nullable" {
			if inner.Kind == KindMap {
				return Type{}, fmt.Errorf("ClickHouse has no Nullable(Map): a NULL hstore is an empty map (Map(String, Nullable(String)) keeps NULL values)")
			}
			if inner.Kind == KindJSON {
				return Type{}, fmt.Errorf("Nullable(JSON) is not supported: a NULL json is an empty object")
			}
			if inner.Nullable || inner.LowCardinality {
				return Type{}, fmt.Errorf("Nullable must wrap a plain type")
			}
			inner.Nullable = true
			return inner, nil
		}
		if inner.LowCardinality || inner.Kind != KindString {
			return Type{}, fmt.Errorf("LowCardinality is supported for String and Nullable(String) only")
		}
		inner.LowCardinality = true
		return inner, nil
	case "Enum8", "Enum16", "Enum":
		switch {
		case !hasArgs && name == "Enum":
			// A configuration's: Enum8 or Enum16, as the labels need.
			return Type{Kind: KindEnum8, Labels: autoEnum}, nil
		case !hasArgs:
			// A configuration's: the labels are the Postgres enum's.
			return Type{Kind: kindOf(name)}, nil
		case name == "Enum":
			return Type{}, fmt.Errorf("Enum takes no labels (they are the Postgres enum's)")
		}
		return parseEnum(kindOf(name), args)
	case "Map":
		errMap := fmt.Errorf("Map is supported as Map(String, String) and Map(String, Nullable(String)), for hstore")
		if !hasArgs || len(args) != 2 {
			return Type{}, errMap
		}
		key, err1 := parseType(args[0], depth+1)
		val, err2 := parseType(args[1], depth+1)
		str := Type{Kind: KindString}
		if err1 != nil || err2 != nil || key != str || val != str && val != (Type{Kind: KindString, Nullable: true}) {
			return Type{}, errMap
		}
		// (Array, Nullable and LowCardinality refuse a Map inside.)
		return Type{Kind: KindMap, NullableValues: val.Nullable}, nil
	case "JSON":
		if hasArgs {
			return Type{}, fmt.Errorf("JSON takes no arguments here (type hints and SKIP are not supported)")
		}
		return Type{Kind: KindJSON}, nil
	case "DateTime":
		t := Type{Kind: KindDateTime}
		if hasArgs {
			if len(args) != 1 {
				return Type{}, fmt.Errorf("DateTime takes at most a time zone")
			}
			tz, err := unquote(args[0])
			if err != nil {
				return Type{}, err
			}
			t.TimeZone = tz
		}
		return t, nil
	case "DateTime64":
		if !hasArgs || len(args) < 1 || len(args) > 2 {
			return Type{}, fmt.Errorf("DateTime64 takes a precision and an optional time zone")
		}
		p, err := strconv.Atoi(strings.TrimSpace(args[0]))
		if err != nil || p < 0 || p > 9 {
			return Type{}, fmt.Errorf("DateTime64 precision must be 0..9")
		}
		t := Type{Kind: KindDateTime64, Precision: p}
		if len(args) == 2 {
			tz, err := unquote(args[1])
			if err != nil {
				return Type{}, err
			}
			t.TimeZone = tz
		}
		return t, nil
	}
	if hasArgs {
		return Type{}, fmt.Errorf("unsupported type")
	}
	for k, n := range kindNames {
		if n == name && k != KindDateTime && k != KindDateTime64 && k != KindDecimal && k != KindMap {
			return Type{Kind: k}, nil
		}
	}
	return Type{}, fmt.Errorf("unsupported type (supported: UInt8..UInt64, Int8..Int64, Float32, Float64, Decimal(P, S), Bool, " +
		"String, UUID, Date, Date32, DateTime, DateTime64, Enum (Enum8, Enum16), " +
		"Map(String, String), Map(String, Nullable(String)), JSON, Nullable(T), LowCardinality(String), Array(T))")
}

// splitType splits "Name(a, b)" into its name and top-level arguments.
func splitType(s string) (name string, args []string, hasArgs bool, err error) {
	open := strings.IndexByte(s, '(')
	if open < 0 {
		return s, nil, false, nil
	}
	if !strings.HasSuffix(s, ")") {
		return "", nil, false, fmt.Errorf("unbalanced parentheses")
	}
	name = strings.TrimSpace(s[:open])
	body := s[open+1 : len(s)-1]
	depth, start := 0, 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\'':
			// A quoted string (an Enum's label) with backslash escapes.
			for i++; i < len(body) && body[i] != '\''; i++ {
				if body[i] == '\\' {
					i++
				}
			}
			if i >= len(body) {
				return "", nil, false, fmt.Errorf("unterminated quoted string")
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return "", nil, false, fmt.Errorf("unbalanced parentheses")
			}
		case ',':
			if depth == 0 {
				args = append(args, strings.TrimSpace(body[start:i]))
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return "", nil, false, fmt.Errorf("unbalanced parentheses")
	}
	args = append(args, strings.TrimSpace(body[start:]))
	return name, args, true, nil
}

func unquote(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", fmt.Errorf("time zone must be a quoted string such as 'UTC'")
	}
	tz := s[1 : len(s)-1]
	if tz == "" || strings.ContainsAny(tz, "'\\") {
		return "", fmt.Errorf("invalid time zone %q", tz)
	}
	return tz, nil
}

// Widens reports whether a column of type from can be changed to t without
// losing a value: a larger integer of the same signedness (or a signed one
// larger than an unsigned from), Float32 to Float64, a Decimal with as
// many digits before and after the point, arrays of such, or the same type.
func (t Type) Widens(from Type) bool {
	if t.Nullable != from.Nullable || t.LowCardinality != from.LowCardinality {
		return false
	}
	if t == from {
		return true
	}
	if t.Array != from.Array {
		return false
	}
	switch {
	case t.Kind == KindDecimal && from.Kind == KindDecimal:
		return t.Scale >= from.Scale && t.Precision-t.Scale >= from.Precision-from.Scale
	case t.IsInteger() && from.IsInteger():
		return intBits(t) > intBits(from) && (t.IsUnsigned() == from.IsUnsigned() || !t.IsUnsigned())
	case t.Kind == KindFloat64 && from.Kind == KindFloat32:
		return true
	case t.IsEnum() && from.IsEnum():
		return enumWidens(t, from)
	}
	return false
}

// intBits is the size of an integer kind.
func intBits(t Type) int {
	switch t.Kind {
	case KindUInt8, KindInt8:
		return 8
	case KindUInt16, KindInt16:
		return 16
	case KindUInt32, KindInt32:
		return 32
	}
	return 64
}

// DefaultOf maps the text of a column's value (a Postgres default) to its
// ClickHouse value, by the column's conversion.
func (c *Column) DefaultOf(text []byte) (any, error) {
	return c.conv(text)
}

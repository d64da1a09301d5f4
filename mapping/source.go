package mapping

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/shopspring/decimal"
)

// Source is what the mapping knows of a column's Postgres type: its OID
// and type modifier (atttypmod: a numeric's precision and scale), and, as
// the catalog tells, the element type of an array and whether the type (or
// the element) is an enum, with an enum's labels in sort order, or an
// hstore (an extension's type, of no fixed OID). A domain is described by
// its base type.
type Source struct {
	OID    uint32
	Mod    int32
	Elem   uint32
	Enum   bool
	Labels []string
	Hstore bool
}

// FirstUserOID is the first OID of an object a user created
// (FirstNormalObjectId): types below it are built in, and the mapping
// knows the element of each built-in array type.
const FirstUserOID = 16384

// builtinArrays maps the built-in array types to their element types.
var builtinArrays = map[uint32]uint32{
	1000: oidBool, 1001: oidBytea, 1002: oidChar, 1003: oidName, 1005: oidInt2, 1007: oidInt4, 1009: oidText,
	1014: oidBPChar, 1015: oidVarchar, 1016: oidInt8, 1021: oidFloat4, 1022: oidFloat8, 1028: oidOID,
	1182: oidDate, 1115: oidTimestamp, 1185: oidTimestamptz, 1231: oidNumeric, 2951: oidUUID, 199: oidJSON,
	3807: oidJSONB, 1183: 1083, 1270: 1266, 1187: 1186, 1041: 869, 651: 650, 1040: 829,
}

// elem returns the element type of an array source, and false when it is
// not an array.
func (s Source) elem() (Source, bool) {
	e := s.Elem
	if e == 0 {
		e = builtinArrays[s.OID]
	}
	if e == 0 {
		return Source{}, false
	}
	return Source{OID: e, Mod: s.Mod, Enum: s.Enum, Labels: s.Labels, Hstore: s.Hstore}, true
}

// numeric returns the precision and scale of a numeric(p,s) source, and
// false for an unconstrained numeric.
func (s Source) numeric() (precision, scale int, ok bool) {
	if s.OID != oidNumeric || s.Mod < 4 {
		return 0, 0, false
	}
	m := s.Mod - 4
	return int(m>>16) & 0xffff, int(m & 0xffff), true
}

// defaultType returns the ClickHouse type of a Postgres type when the
// configuration names none (see the type table of docs/types.md).
func defaultType(s Source, caps Caps) Type {
	if e, ok := s.elem(); ok {
		t := defaultType(e, caps)
		if t.Array || t.LowCardinality {
			// An array of arrays has no own type; LowCardinality
			// inside Array is left out for the older servers.
			return Type{Kind: KindString, Array: true}
		}
		t.Array = true
		return t
	}
	if s.Enum {
		return Type{Kind: KindString, LowCardinality: true}
	}
	switch s.OID {
	case oidBool:
		if caps.Bool {
			return Type{Kind: KindBool}
		}
		return Type{Kind: KindUInt8}
	case oidNumeric:
		if p, sc, ok := s.numeric(); ok && p >= 1 && p <= 38 {
			return Type{Kind: KindDecimal, Precision: p, Scale: sc}
		}
		// Unconstrained: any number of digits, NaN and ±Infinity; the
		// exact text is kept (or configure type = "Decimal(P, S)").
		return Type{Kind: KindString}
	case oidDate:
		if caps.Date32 {
			return Type{Kind: KindDate32}
		}
	}
	return DefaultType(s.OID, caps)
}

// arrayConverter converts Postgres' text of a one-dimensional array by
// converting each element with conv, into a []T of the element type's Go
// type (T is a pointer for Nullable elements, nil for NULL).
func arrayConverter(elemType Type, conv converter) converter {
	base := elemType
	base.Nullable, base.Array = false, false
	zero := zeroValue(base)
	goType := reflect.TypeOf(zero)
	sliceType := reflect.SliceOf(goType)
	if elemType.Nullable {
		sliceType = reflect.SliceOf(reflect.PointerTo(goType))
	}
	return func(b []byte) (any, error) {
		elems, err := parseArray(b)
		if err != nil {
			return nil, err
		}
		out := reflect.MakeSlice(sliceType, 0, len(elems))
		for _, e := range elems {
			var v any = zero
			if e != nil {
				if v, err = conv(e); err != nil {
					return nil, fmt.Errorf("array element: %w", err)
				}
			}
			rv := reflect.ValueOf(v)
			if elemType.Nullable {
				if e == nil {
					rv = reflect.Zero(sliceType.Elem())
				} else {
					p := reflect.New(goType)
					p.Elem().Set(rv)
					rv = p
				}
			}
			out = reflect.Append(out, rv)
		}
		return out.Interface(), nil
	}
}

// parseArray splits Postgres' text of a one-dimensional array ("{1,NULL}",
// `{"a b","c\"d"}`, "[0:1]={1,2}") into its elements, nil for NULL.
func parseArray(b []byte) ([][]byte, error) {
	s := b
	if len(s) > 0 && s[0] == '[' {
		// Explicit bounds: "[lo:hi]={...}".
		i := strings.Index(string(s), "=")
		if i < 0 {
			return nil, fmt.Errorf("array %q: bounds without '='", b)
		}
		if strings.Contains(string(s[:i]), "][") {
			return nil, fmt.Errorf("array %q is multi-dimensional: configure its column as type = \"String\"", b)
		}
		s = s[i+1:]
	}
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, fmt.Errorf("value %q is not an array", b)
	}
	body := s[1 : len(s)-1]
	if len(body) == 0 {
		return [][]byte{}, nil
	}
	if body[0] == '{' {
		return nil, fmt.Errorf("array %q is multi-dimensional: configure its column as type = \"String\"", b)
	}
	var out [][]byte
	for i := 0; ; {
		var elem []byte
		if body[i] == '"' {
			elem = []byte{}
			i++
			for ; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					i++
					if i == len(body) {
						break
					}
				}
				elem = append(elem, body[i])
			}
			if i >= len(body) {
				return nil, fmt.Errorf("array %q: unterminated quoted element", b)
			}
			i++ // the closing quote
		} else {
			j := i
			for j < len(body) && body[j] != ',' {
				j++
			}
			raw := strings.TrimSpace(string(body[i:j]))
			if raw == "NULL" {
				elem = nil
			} else {
				elem = []byte(raw)
			}
			i = j
		}
		out = append(out, elem)
		if i == len(body) {
			return out, nil
		}
		if body[i] != ',' {
			return nil, fmt.Errorf("array %q: expected ',' after an element", b)
		}
		i++
		if i == len(body) {
			return nil, fmt.Errorf("array %q ends with ','", b)
		}
	}
}

// decimalConverter converts a numeric's text into a Decimal(P, S) value.
// A value with more digits than the type holds, before or after the point,
// and NaN or ±Infinity are RangeErrors; the nearest value is the largest
// of the type's sign, or the value rounded to the type's scale.
func decimalConverter(typ Type) converter {
	limit := decimal.New(1, int32(typ.Precision-typ.Scale))
	largest := limit.Sub(decimal.New(1, -int32(typ.Scale)))
	return func(b []byte) (any, error) {
		switch string(b) {
		case "NaN":
			return nil, outOfRange(nil, "value NaN cannot be stored in %s", typ)
		case "Infinity":
			return nil, outOfRange(largest, "value Infinity cannot be stored in %s", typ)
		case "-Infinity":
			return nil, outOfRange(largest.Neg(), "value -Infinity cannot be stored in %s", typ)
		}
		d, err := decimal.NewFromString(string(b))
		if err != nil {
			return nil, fmt.Errorf("value %q is not a number %s can hold", b, typ)
		}
		if d.Abs().GreaterThanOrEqual(limit) {
			near := largest
			if d.Sign() < 0 {
				near = largest.Neg()
			}
			return nil, outOfRange(near, "value %s has more than %d digits before the point, which %s holds",
				b, typ.Precision-typ.Scale, typ)
		}
		if -d.Exponent() > int32(typ.Scale) {
			if r := d.Truncate(int32(typ.Scale)); !d.Equal(r) {
				near := d.Round(int32(typ.Scale))
				if near.Abs().GreaterThan(largest) {
					near = largest.Mul(decimal.New(int64(d.Sign()), 0))
				}
				return nil, outOfRange(near, "value %s has more than %d digits after the point, which %s holds",
					b, typ.Scale, typ)
			}
			d = d.Truncate(int32(typ.Scale))
		}
		return d, nil
	}
}

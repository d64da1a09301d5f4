package mapping

import (
	"fmt"
	"sync/atomic"
)

// An hstore column maps to Map(String, String) or Map(String,
// Nullable(String)), configured; a json or jsonb column to JSON. Both
// are opt-in (type = "..."): by default they keep their text in a String.

// ParseHstore parses hstore's text output (`"a"=>"1", "b"=>NULL`; keys
// and values double-quoted, `"` and `\` escaped by a backslash; the empty
// hstore is empty text) into its pairs, a nil value for NULL. A key
// repeated is an error (hstore keeps one of each).
func ParseHstore(b []byte) (map[string]*string, error) {
	out := make(map[string]*string)
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	quoted := func(what string) (string, error) {
		if i >= len(b) || b[i] != '"' {
			return "", fmt.Errorf("hstore %q: expected a quoted %s at byte %d", b, what, i)
		}
		i++
		var s []byte
		start := i
		for ; i < len(b) && b[i] != '"'; i++ {
			if b[i] == '\\' {
				if s == nil {
					s = make([]byte, 0, len(b)-start)
				}
				s = append(s, b[start:i]...)
				i++
				if i == len(b) {
					break
				}
				start = i
			}
		}
		if i >= len(b) {
			return "", fmt.Errorf("hstore %q: unterminated quoted %s", b, what)
		}
		var v string
		if s != nil {
			v = string(append(s, b[start:i]...))
		} else {
			v = string(b[start:i])
		}
		i++ // the closing quote
		return v, nil
	}
	skip()
	if i == len(b) {
		return out, nil
	}
	for {
		key, err := quoted("key")
		if err != nil {
			return nil, err
		}
		skip()
		if i+1 >= len(b) || b[i] != '=' || b[i+1] != '>' {
			return nil, fmt.Errorf("hstore %q: expected => after key %q", b, key)
		}
		i += 2
		skip()
		var val *string
		if i+4 <= len(b) && string(b[i:i+4]) == "NULL" {
			i += 4
		} else {
			v, err := quoted("value")
			if err != nil {
				return nil, err
			}
			val = &v
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("hstore %q: key %q repeats", b, key)
		}
		out[key] = val
		skip()
		if i == len(b) {
			return out, nil
		}
		if b[i] != ',' {
			return nil, fmt.Errorf("hstore %q: expected ',' after the value of key %q", b, key)
		}
		i++
		skip()
	}
}

// NullValueError is an hstore value NULL in a Map(String, String) column,
// which has no NULL and would store it as an empty string.
type NullValueError struct {
	Key  string
	Type Type
}

func (e *NullValueError) Error() string {
	return fmt.Sprintf("hstore key %q has a NULL value, which %s cannot hold (use Map(String, Nullable(String)), "+
		"or invalid = \"default\" to store it as '')", e.Key, e.Type)
}

// hstoreConverter maps an hstore's text to a map[string]string
// (Map(String, String)) or map[string]*string (Map(String,
// Nullable(String))), the Go types clickhouse-go takes for them. A NULL
// value into Map(String, String) is a NullValueError, or an empty string when
// nullAsEmpty (the invalid option "default"), counted in count.
func hstoreConverter(typ Type, nullAsEmpty bool, count *atomic.Uint64) converter {
	if typ.NullableValues {
		return func(b []byte) (any, error) { return ParseHstore(b) }
	}
	return func(b []byte) (any, error) {
		pairs, err := ParseHstore(b)
		if err != nil {
			return nil, err
		}
		out := make(map[string]string, len(pairs))
		nulls := false
		for k, v := range pairs {
			if v == nil {
				if !nullAsEmpty {
					return nil, &NullValueError{Key: k, Type: typ}
				}
				nulls = true
				out[k] = ""
				continue
			}
			out[k] = *v
		}
		if nulls && count != nil {
			count.Add(1)
		}
		return out, nil
	}
}

// jsonConverter keeps a json or jsonb value's text, as Postgres prints
// it, for a JSON column (clickhouse-go sends strings in its string
// serialization, which the server parses). ClickHouse's JSON holds an
// object: any other JSON value (an array, a scalar, null) is a RangeError
// without a nearest value, which invalid = "default" stores as {}.
func jsonConverter(typ Type) converter {
	return func(b []byte) (any, error) {
		i := 0
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
		if i < len(b) && b[i] == '{' {
			return string(b), nil
		}
		return nil, outOfRange(nil, "value %.40q is not a JSON object, which %s holds only", b, typ)
	}
}

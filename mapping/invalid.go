package mapping

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// The values of a column's `invalid` option: what a value the column's
// ClickHouse type cannot hold becomes.
const (
	// InvalidError stops with an error naming table, column, key and LSN.
	InvalidError = "error"
	// InvalidDefault stores the type's default (what NULL becomes).
	InvalidDefault = "default"
	// InvalidClamp stores the value of the type nearest to it: the bound
	// of an integer, date, timestamp or decimal range, or a decimal
	// rounded to the type's scale.
	InvalidClamp = "clamp"
)

// RangeError is a value of the right kind that the column's type cannot
// hold (out of range, infinite, too many digits). Nearest is the value of
// the type nearest to it, nil when there is none (NaN).
type RangeError struct {
	Err     error
	Nearest any
}

func (e *RangeError) Error() string { return e.Err.Error() }
func (e *RangeError) Unwrap() error { return e.Err }

func outOfRange(nearest any, format string, args ...any) error {
	return &RangeError{Err: fmt.Errorf(format, args...), Nearest: nearest}
}

// invalidCount counts the values a column stored by its invalid option.
type invalidCount = atomic.Uint64

// withPolicy applies the column's invalid option to the errors of decode:
// a RangeError becomes zero (default) or its nearest value (clamp), and
// is counted.
func withPolicy[T any](policy string, zero T, count *invalidCount, decode func([]byte) (T, error)) func([]byte) (T, error) {
	if policy == "" || policy == InvalidError {
		return decode
	}
	return func(b []byte) (T, error) {
		v, err := decode(b)
		var re *RangeError
		if err == nil || !errors.As(err, &re) {
			return v, err
		}
		switch {
		case policy == InvalidDefault:
			v = zero
		case re.Nearest == nil:
			return v, fmt.Errorf("%w (no nearest value to clamp to)", err)
		default:
			n, ok := re.Nearest.(T)
			if !ok {
				return v, err
			}
			v = n
		}
		count.Add(1)
		return v, nil
	}
}

// newPolicyConverter is newConverter with a column's invalid option
// applied: to each element of an array, else to the value.
func newPolicyConverter(src Source, typ Type, tr Transform, policy string, count *invalidCount, caps Caps) (converter, error) {
	if policy == "" || policy == InvalidError {
		return newConverter(src, typ, tr, caps)
	}
	if policy != InvalidDefault && policy != InvalidClamp {
		return nil, fmt.Errorf("invalid = %q: want %q, %q or %q", policy, InvalidError, InvalidDefault, InvalidClamp)
	}
	if typ.Kind == KindMap {
		// A Map's values are Strings: only a NULL value is out of its
		// reach, which "default" stores as ''.
		if policy != InvalidDefault || typ.NullableValues {
			return nil, fmt.Errorf("invalid = %q does not apply to %s (%q stores a NULL value of Map(String, String) as '')",
				policy, typ, InvalidDefault)
		}
		if !src.Hstore {
			return newConverter(src, typ, tr, caps)
		}
		return hstoreConverter(typ, true, count), nil
	}
	if typ.Array {
		elem, ok := src.elem()
		if !ok || tr != TransformNone {
			return newConverter(src, typ, tr, caps)
		}
		et := typ
		et.Array = false
		conv, err := newConverter(elem, et, TransformNone, caps)
		if err != nil {
			return nil, err
		}
		base := et
		base.Nullable = false
		return arrayConverter(et, withPolicy(policy, zeroValue(base), count, conv)), nil
	}
	conv, err := newConverter(src, typ, tr, caps)
	if err != nil {
		return nil, err
	}
	return withPolicy(policy, zeroValue(typ), count, conv), nil
}

// Policy returns the column's invalid option ("" for the default, error).
func (c *Column) Policy() string { return c.spec.Invalid }

// Invalid returns, per column, how many values its invalid option stored
// instead of stopping.
func (t *Table) Invalid() map[string]uint64 {
	var out map[string]uint64 // nil, without an allocation, in the usual case
	for i := range t.Columns {
		if c := &t.Columns[i]; c.invalid != nil {
			if n := c.invalid.Load(); n > 0 {
				if out == nil {
					out = map[string]uint64{}
				}
				out[c.Name] = n
			}
		}
	}
	return out
}

// timeRangeError is the error of a time outside [lo, hi] (Unix seconds):
// its nearest value is the bound it passed, at the type's day for dates.
func timeRangeError(t time.Time, lo, hi int64, date bool, text string, typ Type) error {
	near := time.Unix(hi, 0).UTC()
	if t.Unix() < lo {
		near = time.Unix(lo, 0).UTC()
	}
	if date {
		near = time.Date(near.Year(), near.Month(), near.Day(), 0, 0, 0, 0, time.UTC)
	}
	return outOfRange(near, "value %q is outside the range of %s", text, typ)
}

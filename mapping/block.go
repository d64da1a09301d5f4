package mapping

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Block holds rows of one table column by column, in the Go types
// clickhouse-go's columnar Append takes. The initial copy fills it from
// binary COPY rows; every value maps exactly as Table.Row maps the value's
// text output (same value, same default for NULL, same range errors), so a
// copied row and a streamed row of the same tuple are the same row.
//
// A Block is not safe for concurrent use.
type Block struct {
	t    *Table
	cols []blockColumn
	// strs holds the indexes of the String columns, whose bytes Bytes adds.
	strs []int
	// width is the fixed size of a row's values, meta columns included.
	width    int
	rows     int
	strBytes int
	version  []uint64
	deleted  []uint8
	seq      []uint64
}

// blockColumn is one column of a Block.
type blockColumn interface {
	// append decodes a field (nil for NULL) and appends its value.
	append(field []byte) error
	// truncate drops the rows from n on.
	truncate(n int)
	// values returns the column for clickhouse-go's columnar Append.
	values() any
	reset()
}

// NewBlock returns an empty block for rows of t.
func (t *Table) NewBlock() *Block {
	b := &Block{t: t, width: 8 + 1 + 8} // _version, _deleted, _seq
	for i := range t.Columns {
		c := &t.Columns[i]
		b.cols = append(b.cols, newBlockColumn(c))
		b.width += valueSize(c.Type)
		if c.Type.Kind == KindString || c.Type.Kind == KindJSON || c.Type.Kind == KindMap || c.Type.Array {
			// An array's or an hstore's text approximates the memory of
			// its values.
			b.strs = append(b.strs, i)
		}
	}
	return b
}

// AppendBinary appends one row given as binary COPY fields (nil is SQL
// NULL) in t.Columns order, each in the form CopyColumns selected. On error
// nothing is appended; a value that cannot be mapped is a *ColumnError.
func (b *Block) AppendBinary(fields [][]byte) error {
	if len(fields) != len(b.cols) {
		return fmt.Errorf("row has %d fields, table %s has %d columns", len(fields), b.t.Source, len(b.cols))
	}
	for i, c := range b.cols {
		if err := c.append(fields[i]); err != nil {
			for _, done := range b.cols[:i] {
				done.truncate(b.rows)
			}
			return &ColumnError{Column: b.t.Columns[i].Name, Err: err}
		}
	}
	for _, i := range b.strs {
		b.strBytes += len(fields[i])
	}
	b.rows++
	return nil
}

// Len returns the number of rows in the block.
func (b *Block) Len() int { return b.rows }

// Bytes estimates the memory the block's rows hold.
func (b *Block) Bytes() int { return b.rows*b.width + b.strBytes }

// Reset empties the block and keeps its capacity.
func (b *Block) Reset() {
	for _, c := range b.cols {
		c.reset()
	}
	b.rows, b.strBytes = 0, 0
}

// Columns returns the block's columns followed by the meta columns
// (_version = version, _deleted = 0, _seq = seq for every row), each as the
// slice clickhouse-go's columnar Append takes for the column's type:
// []uint8 ... []int64, []float32, []float64, []string (String and
// LowCardinality(String)), []int64 of seconds (DateTime), []time.Time
// (Date, DateTime64),
// []uuid.UUID, []map[string]string or []map[string]*string (Map), []string
// (JSON: its text), and for Nullable(T) a []*T whose pointers point into one
// backing array, nil for NULL. The slices stay valid until Reset or the
// next call of Columns.
func (b *Block) Columns(version, seq uint64) []any {
	out := make([]any, 0, len(b.cols)+len(MetaColumns))
	for _, c := range b.cols {
		out = append(out, c.values())
	}
	b.version = fill(b.version, version, b.rows)
	b.deleted = fill(b.deleted, 0, b.rows)
	b.seq = fill(b.seq, seq, b.rows)
	return append(out, b.version, b.deleted, b.seq)
}

func fill[T any](s []T, v T, n int) []T {
	if cap(s) < n {
		s = make([]T, n)
	}
	s = s[:n]
	for i := range s {
		s[i] = v
	}
	return s
}

// newBlockColumn returns the column of a Block for c, decoding each field in
// the form CopyColumns selects for c.
func newBlockColumn(c *Column) blockColumn {
	oid, typ := c.SourceOID, c.Type
	if c.Transform == TransformXXHash64 {
		return newColumn(c, hashDecoder(oid))
	}
	if typ.Array {
		// Typed slices ([]T, []*T for Nullable elements) behind any; the
		// column itself is never NULL.
		return &column[any]{zero: zeroValue(typ), decode: textDecoder[any](c)}
	}
	switch typ.Kind {
	case KindDecimal:
		return newColumn(c, textDecoder[decimal.Decimal](c))
	case KindBool:
		return newColumn(c, textDecoder[bool](c))
	case KindDate32:
		return newColumn(c, textDecoder[time.Time](c))
	case KindUInt8:
		return newColumn(c, integerDecoder[uint8](c))
	case KindUInt16:
		return newColumn(c, integerDecoder[uint16](c))
	case KindUInt32:
		return newColumn(c, integerDecoder[uint32](c))
	case KindUInt64:
		return newColumn(c, integerDecoder[uint64](c))
	case KindInt8:
		return newColumn(c, integerDecoder[int8](c))
	case KindInt16:
		return newColumn(c, integerDecoder[int16](c))
	case KindInt32:
		return newColumn(c, integerDecoder[int32](c))
	case KindInt64:
		return newColumn(c, integerDecoder[int64](c))
	case KindFloat32:
		return newColumn(c, floatingDecoder[float32](c))
	case KindFloat64:
		return newColumn(c, floatingDecoder[float64](c))
	case KindString:
		return newColumn(c, stringDecoder(oid, typ.LowCardinality))
	case KindEnum8, KindEnum16, KindJSON:
		return newColumn(c, textDecoder[string](c))
	case KindMap:
		if typ.NullableValues {
			return newColumn(c, textDecoder[map[string]*string](c))
		}
		return newColumn(c, textDecoder[map[string]string](c))
	case KindUUID:
		return newColumn(c, uuidDecoder(oid))
	}
	if typ.Kind == KindDateTime {
		// Seconds, which clickhouse-go takes for DateTime: a column without
		// pointers is not scanned by the garbage collector.
		decode := withPolicy(c.spec.Invalid, epoch, c.invalid, timeDecoder(oid, typ, c.caps))
		return &column[int64]{nullable: typ.Nullable, decode: func(b []byte) (int64, error) {
			t, err := decode(b)
			return t.Unix(), err
		}}
	}
	return newColumn(c, timeDecoder(oid, typ, c.caps))
}

func integerDecoder[T integer](c *Column) func([]byte) (T, error) {
	if decodesBinary(c) {
		return intDecoder[T](c.SourceOID, c.Type)
	}
	return textDecoder[T](c)
}

func floatingDecoder[T float32 | float64](c *Column) func([]byte) (T, error) {
	if decodesBinary(c) {
		return floatDecoder[T](c.SourceOID)
	}
	return textDecoder[T](c)
}

// valueSize is the bytes a value of typ takes in a Block.
func valueSize(typ Type) int {
	n := 8
	switch typ.Kind {
	case KindUInt8, KindInt8:
		n = 1
	case KindUInt16, KindInt16:
		n = 2
	case KindUInt32, KindInt32, KindFloat32:
		n = 4
	case KindString, KindUUID, KindEnum8, KindEnum16, KindJSON:
		n = 16
	case KindMap:
		n = 8 // the map's pointer (its pairs: see NewBlock)
	case KindDate, KindDate32, KindDateTime64, KindDecimal:
		n = 24
	case KindBool:
		n = 1
	}
	if typ.Array {
		n = 16 + 24 // the interface and the slice header
	}
	if typ.Nullable {
		n += 1 + 8 // the NULL flag and the pointer
	}
	return n
}

// column is a blockColumn of values of Go type T.
type column[T any] struct {
	vals     []T
	nullable bool
	null     []bool // per row, for a nullable column
	ptrs     []*T
	zero     T // the value of a NULL in a column that is not nullable
	decode   func([]byte) (T, error)
}

func newColumn[T any](c *Column, decode func([]byte) (T, error)) *column[T] {
	base := c.Type
	base.Nullable = false
	zero := zeroValue(base).(T)
	return &column[T]{nullable: c.Type.Nullable, zero: zero, decode: withPolicy(c.spec.Invalid, zero, c.invalid, decode)}
}

func (c *column[T]) append(field []byte) error {
	v, isNull := c.zero, field == nil
	if !isNull {
		var err error
		if v, err = c.decode(field); err != nil {
			return err
		}
	}
	c.vals = append(c.vals, v)
	if c.nullable {
		c.null = append(c.null, isNull)
	}
	return nil
}

func (c *column[T]) truncate(n int) {
	c.vals = c.vals[:n]
	if c.nullable {
		c.null = c.null[:n]
	}
}

func (c *column[T]) values() any {
	if !c.nullable {
		return c.vals
	}
	c.ptrs = c.ptrs[:0]
	for i := range c.vals {
		if c.null[i] {
			c.ptrs = append(c.ptrs, nil)
		} else {
			c.ptrs = append(c.ptrs, &c.vals[i])
		}
	}
	return c.ptrs
}

func (c *column[T]) reset() {
	clear(c.vals) // let go of strings
	clear(c.ptrs)
	c.vals, c.null, c.ptrs = c.vals[:0], c.null[:0], c.ptrs[:0]
}

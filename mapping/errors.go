package mapping

import (
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// ColumnError is a value that cannot be mapped.
type ColumnError struct {
	Column string
	Err    error
}

func (e *ColumnError) Error() string { return "column " + e.Column + ": " + e.Err.Error() }
func (e *ColumnError) Unwrap() error { return e.Err }

// RowError is a change (or a copied row) that cannot be written to
// ClickHouse. It names the table, column, key and LSN; the replicator stops
// on it and acknowledges nothing at or after it.
type RowError struct {
	Table  string
	Column string
	Key    string
	LSN    pglogrepl.LSN
	Err    error
	// Copied marks a row of a copy; LSN is then the consistent point of
	// the copy's snapshot.
	Copied bool
}

// NewRowError describes a tuple of t that failed to map in the transaction
// (or copy) at lsn, naming the column when the mapping did.
func NewRowError(t *Table, vals []Value, lsn pglogrepl.LSN, err error) *RowError {
	return newRowError(&RowError{Table: t.Source, Key: t.KeyOf(vals), LSN: lsn}, err)
}

// NewCopyRowError describes a row of t, as binary COPY fields, that failed
// to map in a copy whose snapshot has consistent point lsn.
func NewCopyRowError(t *Table, fields [][]byte, lsn pglogrepl.LSN, err error) *RowError {
	return newRowError(&RowError{Table: t.Source, Key: t.KeyOfBinary(fields), LSN: lsn, Copied: true}, err)
}

// newRowError completes re with err, naming the column when the mapping did.
func newRowError(re *RowError, err error) *RowError {
	re.Err = err
	var ce *ColumnError
	if errors.As(err, &ce) {
		re.Column, re.Err = ce.Column, ce.Err
	}
	return re
}

func (e *RowError) Error() string {
	what, where := "change", "in transaction"
	if e.Copied {
		what, where = "copied row", "in the snapshot at"
	}
	s := "cannot map " + what + " of table " + e.Table
	if e.Column != "" {
		s += " column " + e.Column
	}
	return fmt.Sprintf("%s key %s %s %s: %v", s, e.Key, where, e.LSN, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

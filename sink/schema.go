package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/replicator/replicator/mapping"
)

// Schema is the column list of a ClickHouse table, as DESCRIBE shows it.
type Schema struct {
	Names, Types []string
}

// Exists reports whether the table exists (a table has columns).
func (s Schema) Exists() bool { return len(s.Names) > 0 }

// Schema reads the columns of a table of the target database; the zero
// Schema when the table does not exist.
func (c *Client) Schema(ctx context.Context, table string) (Schema, error) {
	exists, err := c.Query(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", c.database, table)
	if err != nil {
		return Schema{}, err
	}
	if len(exists) == 0 || exists[0][0].(uint64) == 0 {
		return Schema{}, nil
	}
	rows, err := c.Query(ctx, "DESCRIBE TABLE "+c.DB().Table(table))
	if err != nil {
		return Schema{}, err
	}
	var s Schema
	for _, r := range rows {
		s.Names = append(s.Names, r[0].(string))
		s.Types = append(s.Types, r[1].(string))
	}
	return s, nil
}

// metaTypes are the types of the meta columns.
var metaTypes = map[string]string{mapping.VersionColumn: "UInt64", mapping.DeletedColumn: "UInt8", mapping.SeqColumn: "UInt64"}

// ErrNoSeq marks a target created by an earlier version of the replicator,
// before the _seq column existed: `replicator setup` adds it.
var ErrNoSeq = errors.New("no column " + mapping.SeqColumn)

// Check verifies that the table has exactly the columns, in order and with
// the types, that the mapping t writes. A target that lacks only _seq is an
// error that wraps ErrNoSeq.
func (s Schema) Check(t *mapping.Table) error {
	want := t.ColumnNames()
	if len(s.Names) == len(want)-1 && slices.Equal(s.Names, want[:len(want)-1]) && s.Names[len(s.Names)-1] == mapping.DeletedColumn {
		return fmt.Errorf("ClickHouse table %s was created by an earlier version and has %w: run `replicator setup`, which adds it", t.Target, ErrNoSeq)
	}
	if len(s.Names) != len(want) {
		return fmt.Errorf("ClickHouse table %s has columns %v, the mapping writes %v", t.Target, s.Names, want)
	}
	for i, name := range want {
		if s.Names[i] != name {
			return fmt.Errorf("ClickHouse table %s has columns %v, the mapping writes %v", t.Target, s.Names, want)
		}
		typ := metaTypes[name]
		if i < len(t.Columns) {
			typ = t.Columns[i].Type.String()
		}
		if i < len(s.Types) && s.Types[i] != typ {
			return fmt.Errorf("ClickHouse column %s.%s is %s, the mapping writes %s", t.Target, name, s.Types[i], typ)
		}
	}
	return nil
}

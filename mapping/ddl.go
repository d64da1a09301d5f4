package mapping

import (
	"fmt"
	"strings"
)

// Quote quotes a ClickHouse identifier.
func Quote(name string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// ColumnNames returns the target column names, followed by _version and _deleted.
func (t *Table) ColumnNames() []string {
	names := make([]string, 0, len(t.Columns)+2)
	for _, c := range t.Columns {
		names = append(names, c.Name)
	}
	return append(names, VersionColumn, DeletedColumn)
}

// CreateTable returns the DDL of the target ReplacingMergeTree table.
func (t *Table) CreateTable(database string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s\n(\n", Quote(database), Quote(t.Target))
	for _, c := range t.Columns {
		fmt.Fprintf(&b, "    %s %s%s,\n", Quote(c.Name), c.Type, defaultClause(c.Type))
	}
	fmt.Fprintf(&b, "    %s UInt64,\n", Quote(VersionColumn))
	fmt.Fprintf(&b, "    %s UInt8 DEFAULT 0\n", Quote(DeletedColumn))
	fmt.Fprintf(&b, ")\nENGINE = ReplacingMergeTree(%s)\n", VersionColumn)
	if t.PartitionBy != "" {
		fmt.Fprintf(&b, "PARTITION BY %s\n", t.PartitionBy)
	}
	keys := make([]string, len(t.OrderBy))
	for i, k := range t.OrderBy {
		keys[i] = Quote(k)
	}
	fmt.Fprintf(&b, "ORDER BY (%s)\n", strings.Join(keys, ", "))
	return b.String()
}

func defaultClause(t Type) string {
	if t.Nullable {
		return ""
	}
	switch {
	case t.IsInteger(), t.Kind == KindFloat32, t.Kind == KindFloat64:
		return " DEFAULT 0"
	case t.Kind == KindString:
		return " DEFAULT ''"
	}
	return ""
}

// ViewName is the name of the live view of a target table.
func (t *Table) ViewName() string { return t.Target + "_live" }

// CreateView returns the DDL of the view that shows one live row per key:
// the newest version of each key, without deleted rows.
func (t *Table) CreateView(database string) string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = Quote(c.Name)
	}
	return fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s.%s AS\nSELECT %s\nFROM %s.%s FINAL\nWHERE %s = 0\n",
		Quote(database), Quote(t.ViewName()), strings.Join(cols, ", "),
		Quote(database), Quote(t.Target), DeletedColumn)
}

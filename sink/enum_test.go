package sink

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/replicator/replicator/mapping"
)

// TestEnumLabelsReadByDriver: clickhouse-go builds the Enum column of an
// INSERT (and of a SELECT: the images of TOAST and placed rows) from the
// type's text as ClickHouse sends it, which the mapping renders the same.
// Every label the mapping accepts maps to its own value there; labels that
// ClickHouse writes escaped, which clickhouse-go v2.50 reads wrong (a
// panic, an unknown element or another label's value: its issue 1839),
// are refused by the mapping.
func TestEnumLabelsReadByDriver(t *testing.T) {
	for _, labels := range [][]string{
		{"ok", "a,b (c)", "x = y", "abcd", "abd"},
		{"Ünïcödé ☃", "  spaced  ", "=", ",", ")", "("},
		{"a", "b"},
	} {
		typ, err := mapping.EnumOf(mapping.KindEnum8, true, labels, mapping.Type{})
		if err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: clickhouse-go panics: %v", typ, p)
				}
			}()
			col, err := column.Type(typ.String()).Column("m", nil)
			if err != nil {
				t.Errorf("%s: %v", typ, err)
				return
			}
			for _, l := range append([]string{""}, labels...) {
				if err := col.AppendRow(l); err != nil {
					t.Errorf("%s: label %q: %v", typ, l, err)
					continue
				}
				if got := fmt.Sprint(col.Row(col.Rows()-1, false)); got != l {
					t.Errorf("%s: label %q is written as %q", typ, l, got)
				}
			}
		}()
	}
	for _, labels := range [][]string{{"it's", "ok"}, {`back\slash`}, {"line\nbreak"}, {"tab\there"}} {
		if typ, err := mapping.EnumOf(mapping.KindEnum8, true, labels, mapping.Type{}); err == nil ||
			!strings.Contains(err.Error(), "map the column as String") {
			t.Errorf("labels %q: %s, %v; want a refusal", labels, typ, err)
		}
	}
}

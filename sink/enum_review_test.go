package sink

import (
	"fmt"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/replicator/replicator/mapping"
)

// TestEnumReviewDriverReadsLabels: clickhouse-go builds the Enum column of
// an INSERT (and of a SELECT: the images of TOAST and placed rows) from
// the type's text, which ClickHouse sends as mapping renders it. Each
// label must map to its own value. clickhouse-go v2.50.0 drops bytes of
// every label after one with an escape, and reads "\n" as "n"
// (clickhouse-go#1839, PR #1844): a panic, an unknown element, or another
// label's value.
func TestEnumReviewDriverReadsLabels(t *testing.T) {
	for _, labels := range [][]string{
		{"it's", "ok"},
		{"it's", "abcd", "abd"},
		{"rock 'n' roll", "x"},
		{`back\slash`, "plain"},
		{"line\nbreak"},
		{"tab\there", "Ünïcödé ☃"},
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
			for _, l := range labels {
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
}

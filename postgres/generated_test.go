package postgres

import (
	"reflect"
	"strings"
	"testing"

	"github.com/replicator/replicator/mapping"
)

// TestPublishedColumns: the columns a copy reads are those pgoutput
// sends: a stored generated column only when the publication publishes
// generated columns (18), a virtual one never; a replica identity with a
// generated column the stream lacks is refused with what to run.
func TestPublishedColumns(t *testing.T) {
	col := func(name, generated string, identity bool) CatalogColumn {
		return CatalogColumn{SourceColumn: mapping.SourceColumn{Name: name, TypeOID: 20, TypeMod: -1, Identity: identity}, Generated: generated}
	}
	// t (id bigint PRIMARY KEY, a bigint, s GENERATED ... STORED,
	// v GENERATED ... VIRTUAL, b bigint)
	table := []CatalogColumn{col("id", "", true), col("a", "", false), col("s", "s", false), col("v", "v", false), col("b", "", false)}
	tests := []struct {
		name   string
		cols   []CatalogColumn
		stored bool
		want   []string
		err    []string
	}{
		{name: "generated columns not published", cols: table, want: []string{"id", "a", "b"}},
		{name: "stored ones published", cols: table, stored: true, want: []string{"id", "a", "s", "b"}},
		{name: "key with an unpublished stored column", cols: []CatalogColumn{col("id", "", true), col("s", "s", true)},
			err: []string{"column s of the replica identity", "publish_generated_columns = stored", "resync --config FILE --table public.t",
				"REPLICA IDENTITY USING INDEX"}},
		{name: "key with a published stored column", cols: []CatalogColumn{col("id", "", true), col("s", "s", true)}, stored: true,
			want: []string{"id", "s"}},
		{name: "key with a virtual column", cols: []CatalogColumn{col("id", "", true), col("v", "v", true)}, stored: true,
			err: []string{"column v of the replica identity", "never published; make it STORED"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PublishedColumns("public.t", "pub", tc.cols, tc.stored)
			if len(tc.err) > 0 {
				if err == nil {
					t.Fatalf("no error, columns %v", got)
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range got {
				names = append(names, c.Name)
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("columns = %v, want %v", names, tc.want)
			}
		})
	}
}

package verify

import (
	"testing"

	"github.com/replicator/replicator/mapping"
)

// TestDecimalChecksumText checks the Postgres text of decimals against
// the server's toString: with the scale's trailing zeros where the server
// prints them (18.16: "1.50"), without where it trims them (21.9 and
// later: "1.5", "2", "0"), for a column and for an array's elements, so
// that equal ranges agree by checksum.
func TestDecimalChecksumText(t *testing.T) {
	src := []mapping.SourceColumn{
		{Name: "id", TypeOID: 20, Identity: true},
		{Name: "n", TypeOID: 1700, TypeMod: 10<<16 | 2 + 4},
		{Name: "an", TypeOID: 1231, TypeMod: 8<<16 | 3 + 4},
	}
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.d", Target: "d", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"an": {Nullable: true}}}, src, mapping.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		column  int
		trimmed bool
		pg, ch  string
	}{
		{"decimal, zeros kept", 1, false, `COALESCE(round("n", 2)::text, round(0, 2)::text)`, "toString(`n`)"},
		{"decimal, zeros trimmed", 1, true, `COALESCE(trim_scale(round("n", 2))::text, trim_scale(round(0, 2))::text)`, "toString(`n`)"},
		{"array, zeros kept", 2, false,
			`COALESCE('[' || array_to_string(ARRAY(SELECT COALESCE(round(e, 3)::text, 'NULL') FROM unnest("an") WITH ORDINALITY AS u(e, n) ORDER BY n), ',') || ']', '[]')`,
			"concat('[', arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), `an`), ','), ']')"},
		{"array, zeros trimmed", 2, true,
			`COALESCE('[' || array_to_string(ARRAY(SELECT COALESCE(trim_scale(round(e, 3))::text, 'NULL') FROM unnest("an") WITH ORDINALITY AS u(e, n) ORDER BY n), ',') || ']', '[]')`,
			"concat('[', arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), `an`), ','), ']')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg, ch, ok := checksumExprs(tbl.Columns[tc.column], tc.trimmed)
			if !ok || pg != tc.pg || ch != tc.ch {
				t.Errorf("checksumExprs = %v\n%s\n%s\nwant\n%s\n%s", ok, pg, ch, tc.pg, tc.ch)
			}
		})
	}
}

package verify

import (
	"testing"

	"github.com/replicator/replicator/mapping"
)

// TestMapJSONRowByRow checks that Map and JSON columns are left out of the
// checksums and compared row by row: pair by pair, and JSON as values.
func TestMapJSONRowByRow(t *testing.T) {
	src := []mapping.SourceColumn{
		{Name: "id", TypeOID: 20, Identity: true},
		{Name: "h", TypeOID: 16400, Hstore: true},
		{Name: "hn", TypeOID: 16400, Hstore: true},
		{Name: "j", TypeOID: 3802},
	}
	caps := mapping.Caps{DateTime64: true, Bool: true, Date32: true, Map: true, JSON: true}
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.d", Target: "d", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"h": {Type: "Map(String, String)"}, "hn": {Type: "Map(String, Nullable(String))"},
			"j": {Type: "JSON"}}}, src, caps)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tbl.Columns[1:] {
		if _, _, ok := checksumExprs(c, true); ok {
			t.Errorf("column %s (%s) has a checksum", c.Name, c.Type)
		}
	}
	s := func(v string) *string { return &v }
	h, hn, j := tbl.Columns[1].Type, tbl.Columns[2].Type, tbl.Columns[3].Type
	for _, tc := range []struct {
		name  string
		typ   mapping.Type
		a, b  any
		equal bool
	}{
		{"same pairs", h, map[string]string{"a": "1", "b": ""}, map[string]string{"b": "", "a": "1"}, true},
		{"value differs", h, map[string]string{"a": "1"}, map[string]string{"a": "2"}, false},
		{"key missing", h, map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1"}, false},
		{"key differs", h, map[string]string{"a": "1"}, map[string]string{"b": "1"}, false},
		{"both empty", h, map[string]string{}, map[string]string{}, true},
		{"nullable values", hn, map[string]*string{"a": s("1"), "b": nil}, map[string]*string{"b": nil, "a": s("1")}, true},
		{"NULL against ''", hn, map[string]*string{"b": nil}, map[string]*string{"b": s("")}, false},
		{"'' against NULL", hn, map[string]*string{"b": s("")}, map[string]*string{"b": nil}, false},
		{"map against string", h, map[string]string{}, "{}", false},
		{"JSON as values", j, `{"a": 1, "b": [1, 2.50], "c": {"d": "x"}}`, `{"c":{"d":"x"},"a":1,"b":[1,2.5]}`, true},
		{"JSON nulls ClickHouse drops", j, `{"a": 1, "n": null, "e": {"f": null}}`, `{"a":1}`, true},
		{"JSON value differs", j, `{"a": 1}`, `{"a":2}`, false},
		{"JSON string against number", j, `{"a": "1"}`, `{"a":1}`, false},
		{"JSON member missing", j, `{"a": 1, "b": 2}`, `{"a":1}`, false},
		{"JSON array order", j, `{"a": [1, 2]}`, `{"a":[2,1]}`, false},
	} {
		if got := equalValue(tc.typ, tc.a, tc.b); got != tc.equal {
			t.Errorf("%s: equalValue = %v, want %v", tc.name, got, tc.equal)
		}
	}
}

package sink

import (
	"strings"
	"testing"

	"github.com/replicator/replicator/mapping"
)

func eventsTable(t *testing.T) *mapping.Table {
	t.Helper()
	tbl, err := mapping.Resolve(mapping.TableSpec{
		Source: "public.events", Target: "events", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}},
	}, []mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "note", TypeOID: 25}}, mapping.Caps{})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return tbl
}

func TestSchemaExists(t *testing.T) {
	for _, tc := range []struct {
		name   string
		schema Schema
		want   bool
	}{
		{name: "zero", schema: Schema{}, want: false},
		{name: "empty lists", schema: Schema{Names: []string{}, Types: []string{}}, want: false},
		{name: "one column", schema: Schema{Names: []string{"id"}, Types: []string{"UInt64"}}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.schema.Exists(); got != tc.want {
				t.Errorf("Exists() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSchemaCheck(t *testing.T) {
	tbl := eventsTable(t)
	names := []string{"id", "note", mapping.VersionColumn, mapping.DeletedColumn, mapping.SeqColumn}
	types := []string{"UInt64", "String", "UInt64", "UInt8", "UInt64"}
	for _, tc := range []struct {
		name         string
		names, types []string
		want         []string // substrings of the error; nil: no error
	}{
		{name: "exact match", names: names, types: types},
		{name: "created before _seq", names: names[:4], types: types[:4], want: []string{"events", "earlier version", "replicator setup"}},
		{name: "empty table", names: nil, types: nil, want: []string{"events"}},
		{name: "missing column", names: []string{"id", mapping.VersionColumn, mapping.DeletedColumn},
			types: []string{"UInt64", "UInt64", "UInt8"}, want: []string{"events", "note"}},
		{name: "missing _deleted", names: names[:3], types: types[:3], want: []string{"events", mapping.DeletedColumn}},
		// A column dropped in Postgres stays in ClickHouse, which fills it.
		{name: "extra column", names: []string{"id", "note", "extra", mapping.VersionColumn, mapping.DeletedColumn, mapping.SeqColumn},
			types: []string{"UInt64", "String", "String", "UInt64", "UInt8", "UInt64"}},
		// INSERTs name their columns: the order does not matter.
		{name: "different order", names: []string{"note", "id", mapping.VersionColumn, mapping.DeletedColumn, mapping.SeqColumn},
			types: []string{"String", "UInt64", "UInt64", "UInt8", "UInt64"}},
		{name: "renamed column", names: []string{"id", "comment", mapping.VersionColumn, mapping.DeletedColumn},
			types: types, want: []string{"events", "comment", "note"}},
		{name: "different type", names: names, types: []string{"UInt64", "Nullable(String)", "UInt64", "UInt8", "UInt64"},
			want: []string{"events.note", "Nullable(String)", "is Nullable(String), the mapping writes String"}},
		{name: "different key type", names: names, types: []string{"Int64", "String", "UInt64", "UInt8", "UInt64"},
			want: []string{"events.id", "is Int64, the mapping writes UInt64"}},
		{name: "type case differs", names: names, types: []string{"UInt64", "string", "UInt64", "UInt8", "UInt64"},
			want: []string{"events.note", "string", "String"}},
		{name: "meta column type", names: names, types: []string{"UInt64", "String", "UInt64", "UInt8", "String"},
			want: []string{"events._seq", "is String, the mapping writes UInt64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Schema{Names: tc.names, Types: tc.types}.Check(tbl)
			if tc.want == nil {
				if err != nil {
					t.Errorf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = nil, want an error containing %q", tc.want)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Check = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestCheckKeys(t *testing.T) {
	spec := mapping.TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"author_id", "created_at", "id"}, PartitionBy: "toYYYYMM(created_at)"}
	for _, tc := range []struct {
		name       string
		sort, part string
		ok         bool
	}{
		{"same", "author_id, created_at, id", "toYYYYMM(created_at)", true},
		{"quoted and spaced otherwise", "`author_id`, `created_at`, id", "toYYYYMM( created_at )", true},
		{"unknown (a view)", "", "", true},
		{"other sorting key", "id", "toYYYYMM(created_at)", false},
		{"other order", "created_at, author_id, id", "toYYYYMM(created_at)", false},
		{"no partition", "author_id, created_at, id", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Schema{Names: []string{"id"}, SortingKey: tc.sort, PartitionKey: tc.part}.CheckKeys(spec)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckKeys = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "replicator resync --config FILE --table public.events") {
				t.Errorf("error %q does not name the resync", err)
			}
		})
	}
}

func TestKeyColumn(t *testing.T) {
	s := Schema{SortingKey: "author_id, created_at, id", PartitionKey: "toYYYYMM(created_at)"}
	for col, want := range map[string]bool{"id": true, "author_id": true, "created_at": true, "author": false, "d": false, "project_id": false} {
		if got := s.KeyColumn(col); got != want {
			t.Errorf("KeyColumn(%q) = %v, want %v", col, got, want)
		}
	}
}

func TestEngineDeletes(t *testing.T) {
	for in, want := range map[string]bool{
		"ReplacingMergeTree(_version) ORDER BY k SETTINGS index_granularity = 8192":                           false,
		"ReplacingMergeTree(_version, _deleted) PARTITION BY toYYYYMM(c) ORDER BY id":                         true,
		"ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', _version, _deleted) ..": true,
		"ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', _version) ORDER BY id":  false,
		"SharedReplacingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}', _version, _deleted)":      true,
		"MergeTree ORDER BY id":          false,
		"ReplacingMergeTree ORDER BY id": false,
	} {
		if got := engineDeletes(in); got != want {
			t.Errorf("engineDeletes(%q) = %v, want %v", in, got, want)
		}
	}
}

package sql

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

var update = flag.Bool("update", false, "rewrite the golden DDL files")

// eventsColumns is public.events as the Postgres catalog describes it, in
// attnum order, with the primary key as replica identity.
var eventsColumns = []mapping.SourceColumn{
	{Name: "id", TypeOID: 20, Identity: true},
	{Name: "project_id", TypeOID: 23},
	{Name: "author_id", TypeOID: 23},
	{Name: "target_id", TypeOID: 23},
	{Name: "created_at", TypeOID: 1184},
	{Name: "updated_at", TypeOID: 1184},
	{Name: "action", TypeOID: 21},
	{Name: "target_type", TypeOID: 1043},
	{Name: "group_id", TypeOID: 20},
	{Name: "fingerprint", TypeOID: 17},
}

// allTypesColumns is a table with a column of every kind of type the
// type table of docs/types.md names (test/types_test.go creates it), as the stream
// and the catalog describe it.
var allTypesColumns = []mapping.SourceColumn{
	{Name: "id", TypeOID: 20, Identity: true}, {Name: "b", TypeOID: 16}, {Name: "i2", TypeOID: 21},
	{Name: "i4", TypeOID: 23}, {Name: "i8", TypeOID: 20}, {Name: "n", TypeOID: 1700, TypeMod: 12<<16 | 2 + 4},
	{Name: "nu", TypeOID: 1700, TypeMod: -1}, {Name: "f4", TypeOID: 700}, {Name: "f8", TypeOID: 701},
	{Name: "t", TypeOID: 25}, {Name: "vc", TypeOID: 1043, TypeMod: 14}, {Name: "ch", TypeOID: 1042, TypeMod: 7},
	{Name: "by", TypeOID: 17}, {Name: "u", TypeOID: 2950}, {Name: "d", TypeOID: 1082}, {Name: "ts", TypeOID: 1114},
	{Name: "tstz", TypeOID: 1184}, {Name: "tm", TypeOID: 1083}, {Name: "iv", TypeOID: 1186}, {Name: "j", TypeOID: 114},
	{Name: "jb", TypeOID: 3802}, {Name: "ai", TypeOID: 1007}, {Name: "at", TypeOID: 1009},
	{Name: "an", TypeOID: 1231, TypeMod: 8<<16 | 3 + 4}, {Name: "ad", TypeOID: 1182},
	{Name: "e", TypeOID: 16390, Enum: true}, {Name: "ae", TypeOID: 16389, Elem: 16390, Enum: true},
	{Name: "dom", TypeOID: 23}, {Name: "dp", TypeOID: 1700, TypeMod: 10<<16 | 2 + 4}, {Name: "ip", TypeOID: 869},
	{Name: "mac", TypeOID: 829}, {Name: "r", TypeOID: 3904}, {Name: "pt", TypeOID: 600},
}

// TestTypesDDL renders the target of every type for ClickHouse 18.16 and
// for a current ClickHouse, which has DateTime64, Bool and Date32.
func TestTypesDDL(t *testing.T) {
	spec := mapping.TableSpec{Source: "public.alltypes", Target: "alltypes", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"an": {Nullable: true}}}
	db := ddl.Database{Name: "replicator"}
	for _, tc := range []struct {
		file string
		caps mapping.Caps
	}{
		{"clickhouse/alltypes_18.16.sql", mapping.Caps{}},
		{"clickhouse/alltypes_current.sql", mapping.Caps{DateTime64: true, Bool: true, Date32: true}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			tbl, err := mapping.Resolve(spec, allTypesColumns, tc.caps)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, strings.TrimSpace(db.CreateTable(tbl))+";\n")
		})
	}
}

func TestGeneratedDDL(t *testing.T) {
	cfg, err := config.Load("../config.example.hcl", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	spec := cfg.Tables[0].Spec()
	db := ddl.Database{Name: cfg.ClickHouse.Database}
	for _, tc := range []struct {
		file string
		caps mapping.Caps
	}{
		{"clickhouse/events.sql", mapping.Caps{}},
		{"clickhouse/events_datetime64.sql", mapping.Caps{DateTime64: true}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			tbl, err := mapping.Resolve(spec, eventsColumns, tc.caps)
			if err != nil {
				t.Fatal(err)
			}
			if err := tbl.CheckIdentity(); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, stmt := range append([]string{db.CreateTable(tbl)}, db.CreateViews(tbl, cfg.Postgres.Slot)...) {
				b.WriteString(strings.TrimSpace(stmt) + ";\n\n")
			}
			golden(t, tc.file, strings.TrimSpace(b.String())+"\n")
		})
	}
	t.Run("clickhouse/events_cluster.sql", func(t *testing.T) {
		tbl, err := mapping.Resolve(spec, eventsColumns, mapping.Caps{})
		if err != nil {
			t.Fatal(err)
		}
		cdb := ddl.Database{Name: cfg.ClickHouse.Database, Cluster: "analytics", ZKPath: ddl.DefaultZKPath}
		var b strings.Builder
		stmts := append(cdb.CreateTarget(tbl), cdb.CreateViews(tbl, cfg.Postgres.Slot)...)
		for _, stmt := range append(stmts, cdb.CreateCheckpointTable(), cdb.Truncate(tbl.Target)) {
			b.WriteString(strings.TrimSpace(stmt) + ";\n\n")
		}
		golden(t, "clickhouse/events_cluster.sql", strings.TrimSpace(b.String())+"\n")
	})
	t.Run("clickhouse/events_gitlab_current.sql", func(t *testing.T) {
		// The seed's design on a current ClickHouse: sorted by author and
		// time, partitioned by month, a minmax index on project_id, a
		// projection sorted by project, a year of history.
		gs := spec
		gs.OrderBy, gs.PartitionBy = []string{"author_id", "created_at", "id"}, "toYYYYMM(created_at)"
		gs.Storage = mapping.Storage{
			Indexes:     []mapping.Index{{Name: "project_id_index", Expression: "project_id", Type: "minmax", Granularity: 10}},
			Projections: []mapping.Projection{{Name: "events_by_project", Query: "SELECT * ORDER BY project_id, created_at"}},
			TTL:         "toDateTime(created_at) + INTERVAL 1 YEAR",
		}
		tbl, err := mapping.Resolve(gs, eventsColumns, mapping.Caps{DateTime64: true, Bool: true, Date32: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := tbl.CheckIdentity(); err != nil || !tbl.Placed() {
			t.Fatalf("CheckIdentity: %v, Placed %v", err, tbl.Placed())
		}
		current := ddl.Database{Name: cfg.ClickHouse.Database, Server: [2]int{24, 8}}
		if err := current.CheckStorage(tbl); err != nil {
			t.Fatal(err)
		}
		old := ddl.Database{Name: cfg.ClickHouse.Database, Server: [2]int{18, 16}}
		if err := old.CheckStorage(tbl); err == nil || !strings.Contains(err.Error(), "need ClickHouse 20.1 or later; the server is 18.16") {
			t.Errorf("CheckStorage on 18.16: %v", err)
		}
		var b strings.Builder
		for _, stmt := range append(append([]string{current.CreateTable(tbl)}, current.CreateViews(tbl, cfg.Postgres.Slot)...), current.AlterStorage(tbl)...) {
			b.WriteString(strings.TrimSpace(stmt) + ";\n\n")
		}
		golden(t, "clickhouse/events_gitlab_current.sql", strings.TrimSpace(b.String())+"\n")
	})
	t.Run("checkpoints", func(t *testing.T) {
		golden(t, "clickhouse/replicator_checkpoints.sql", strings.TrimSpace(db.CreateCheckpointTable())+";\n\n"+
			strings.TrimSpace(db.CreateProgressTable())+";\n")
	})
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.FromSlash(name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./sql -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the generated DDL (run go test ./sql -update after reviewing)\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}

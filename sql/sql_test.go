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
			golden(t, tc.file, strings.TrimSpace(db.CreateTable(tbl))+";\n\n"+strings.TrimSpace(db.CreateView(tbl))+";\n")
		})
	}
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

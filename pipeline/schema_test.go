package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// clickhouse is a targets fake that records statements and serves a
// schema.
type clickhouse struct {
	stmts  []string
	schema sink.Schema
}

func (c *clickhouse) Exec(_ context.Context, sql string, _ ...any) error {
	c.stmts = append(c.stmts, sql)
	return nil
}

func (c *clickhouse) Schema(context.Context, string) (sink.Schema, error) { return c.schema, nil }

func (c *clickhouse) DB() ddl.Database { return ddl.Database{Name: "db"} }

// defaults is a catalog fake: the added default of each column.
type defaults map[string]postgres.AddedDefault

func (d defaults) Ancestor(context.Context, uint32, []uint32) (uint32, bool, error) {
	return 0, false, nil
}

func (d defaults) DescribeTypes(context.Context, []mapping.SourceColumn) error { return nil }

func (d defaults) AddedDefault(_ context.Context, _ uint32, column string) (postgres.AddedDefault, error) {
	return d[column], nil
}

// Storage serves the storage of events now: its one file is 2.
func (d defaults) Storage(context.Context, string) (postgres.Storage, error) {
	return postgres.Storage{Files: map[uint32]uint32{7: 2}}, nil
}

// records is a storageLoader fake.
type records map[string]postgres.Storage

func (r records) LoadStorage(context.Context) (map[string]postgres.Storage, error) { return r, nil }

// views returns the statements that make the views of events again with
// columns.
func views(columns ...string) []string {
	return ddl.Database{Name: "db"}.ReplaceView(&mapping.Table{Target: "events", OrderBy: []string{"id"}}, columns, "")
}

func TestSchemaChanges(t *testing.T) {
	seven := "7"
	col := func(name string, oid uint32) mapping.SourceColumn {
		return mapping.SourceColumn{Name: name, TypeOID: oid, Identity: name == "id"}
	}
	base := []mapping.SourceColumn{col("id", 20), col("action", 21)}
	target := sink.Schema{Names: []string{"id", "action", "_version", "_deleted", "_seq"},
		Types: []string{"UInt64", "Int16", "UInt64", "UInt8", "UInt64"}}
	tests := []struct {
		name     string
		cols     []mapping.SourceColumn
		policy   string
		defaults defaults
		stmts    []string
		wantErr  []string
		// prev is the previous Relation message's columns (default: id,
		// action) and target the ClickHouse table (default: target).
		prev   []string
		target sink.Schema
		// wantType is the type the mapping writes action in.
		wantType string
		// records are the storage records; recopied the tables whose
		// re-copy is asked for (noRecopy: none can be).
		records  records
		recopied []string
		noRecopy bool
	}{
		{name: "unchanged", cols: base},
		{name: "dropped column", cols: base[:1]},
		{name: "added with a constant default", cols: append(base, col("flag", 23)),
			defaults: defaults{"flag": {Missing: true, Value: &seven}},
			stmts:    append([]string{"ALTER TABLE `db`.`events` ADD COLUMN `flag` Int32 DEFAULT 7 AFTER `action`"}, views("id", "action", "flag")...)},
		{name: "added without a default", cols: append(base, col("note", 25), col("n", 20)),
			stmts: append([]string{"ALTER TABLE `db`.`events` ADD COLUMN `note` String AFTER `action`",
				"ALTER TABLE `db`.`events` ADD COLUMN `n` Int64 AFTER `note`"}, views("id", "action", "note", "n")...)},
		// Without a value kept for the older rows, and no rewrite since
		// the record: they read NULL, whatever the default is now (SET
		// DEFAULT after ADD COLUMN).
		{name: "added without a default, not rewritten", cols: append(base, col("at", 1184)),
			defaults: defaults{"at": {}}, records: records{"public.events": {Files: map[uint32]uint32{7: 2}}},
			stmts: append([]string{"ALTER TABLE `db`.`events` ADD COLUMN `at` DateTime('UTC') AFTER `action`"}, views("id", "action", "at")...)},
		// A rewrite since the record (ADD COLUMN DEFAULT 5, SET DEFAULT
		// 6, VACUUM FULL; or a volatile default) stored each row's value:
		// the table is copied again instead of guessed.
		{name: "added before a rewrite", cols: append(base, col("at", 1184)),
			defaults: defaults{"at": {}}, records: records{"public.events": {Files: map[uint32]uint32{7: 1}}},
			stmts:    append([]string{"ALTER TABLE `db`.`events` ADD COLUMN `at` DateTime('UTC') AFTER `action`"}, views("id", "action", "at")...),
			recopied: []string{"public.events"}},
		{name: "added before a rewrite, no re-copy", cols: append(base, col("at", 1184)), noRecopy: true,
			defaults: defaults{"at": {}}, records: records{"public.events": {Files: map[uint32]uint32{7: 1}}},
			wantErr: []string{"column at was added before a rewrite", "replicator resync --config FILE --table public.events"}},
		// Added, then dropped before the daemon saw the Relation message:
		// the rows that carry it carry its values.
		{name: "added and gone since", cols: append(base, col("tmp", 23)),
			defaults: defaults{"tmp": {Gone: true}}, records: records{"public.events": {Files: map[uint32]uint32{7: 1}}},
			stmts: append([]string{"ALTER TABLE `db`.`events` ADD COLUMN `tmp` Int32 AFTER `action`"}, views("id", "action", "tmp")...)},
		{name: "widened", cols: []mapping.SourceColumn{col("id", 20), col("action", 23)},
			stmts: []string{"ALTER TABLE `db`.`events` MODIFY COLUMN `action` Int32"}},
		// A transaction replayed after a crash that followed the widening
		// of its column: the target is wider than its Relation.
		{name: "replayed before a widening", cols: base,
			target: sink.Schema{Names: []string{"id", "action", "_version", "_deleted", "_seq"},
				Types: []string{"UInt64", "Int64", "UInt64", "UInt8", "UInt64"}},
			wantType: "Int64"},
		// A target made when arrays were stored as their text keeps it.
		{name: "an earlier default kept", cols: append(base, col("tags", 1007)),
			target: sink.Schema{Names: []string{"id", "action", "tags", "_version", "_deleted", "_seq"},
				Types: []string{"UInt64", "Int16", "String", "UInt64", "UInt8", "UInt64"}}},
		{name: "narrowed", cols: []mapping.SourceColumn{col("id", 20), col("action", 25)},
			wantErr: []string{"column action", "ClickHouse has Int16", "maps to String", "MODIFY COLUMN `action` String"}},
		{name: "renamed", cols: []mapping.SourceColumn{col("id", 20), col("kind", 21)},
			wantErr: []string{"columns action are gone and kind appeared", "a rename?"}},
		// A column dropped before (still in ClickHouse) is no rename of a
		// column added now.
		{name: "added after an older drop", cols: append(base, col("flag", 23)),
			target: sink.Schema{Names: []string{"id", "action", "old", "_version", "_deleted", "_seq"},
				Types: []string{"UInt64", "Int16", "String", "UInt64", "UInt8", "UInt64"}},
			stmts: append([]string{"ALTER TABLE `db`.`events` ADD COLUMN `flag` Int32 AFTER `old`"}, views("id", "action", "old", "flag")...)},
		{name: "stop", cols: append(base, col("flag", 23)), policy: "stop",
			wantErr: []string{`schema_changes is "stop"`, "ADD COLUMN `flag` Int32 AFTER `action`"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy := tc.policy
			if policy == "" {
				policy = "apply"
			}
			tables := []config.Table{{Name: "public.events", Target: "events", OrderBy: []string{"id"},
				Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}}, SchemaChanges: policy}}
			reg := newRegistry(tables, []sink.Schema{target}, mapping.Caps{})
			ch := &clickhouse{schema: target}
			reg.ch = ch
			reg.setOIDs(map[string]uint32{"public.events": 7}, tc.defaults)
			var recopied []string
			if tc.records != nil {
				reg.records = tc.records
			}
			if !tc.noRecopy {
				reg.recopy = func(source, _ string) { recopied = append(recopied, source) }
			}
			reg.columns[0] = tc.prev
			if tc.prev == nil {
				reg.columns[0] = []string{"id", "action"}
			}
			if tc.target.Names != nil {
				reg.targets[0] = tc.target
				ch.schema = tc.target
			}
			rel := &replication.Relation{ID: 7, Namespace: "public", Name: "events", Columns: tc.cols}
			if err := reg.bind(context.Background(), rel); err != nil {
				t.Fatal(err)
			}
			_, mt, _, err := reg.table(context.Background(), 7)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("table() = nil, want an error; statements %q", ch.stmts)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if len(ch.stmts) > 0 {
					t.Errorf("statements run before the error: %q", ch.stmts)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if i := mt.ColumnIndex("action"); tc.wantType != "" && (i < 0 || mt.Columns[i].Type.String() != tc.wantType) {
				t.Errorf("action is written as %v, want %s", mt.Columns, tc.wantType)
			}
			if strings.Join(recopied, ",") != strings.Join(tc.recopied, ",") {
				t.Errorf("re-copies asked for %q, want %q", recopied, tc.recopied)
			}
			if strings.Join(ch.stmts, "\n") != strings.Join(tc.stmts, "\n") {
				t.Errorf("statements\n  %s\nwant\n  %s", strings.Join(ch.stmts, "\n  "), strings.Join(tc.stmts, "\n  "))
			}
		})
	}
}

package ddl

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/replicator/replicator/mapping"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "events", want: "`events`"},
		{in: "", want: "``"},
		{in: "my table", want: "`my table`"},
		{in: "a.b", want: "`a.b`"},
		{in: "we`ird", want: "`we\\`ird`"},
		{in: `back\slash`, want: "`back\\\\slash`"},
		{in: "\\`", want: "`\\\\\\``"},
		{in: `say "hi"`, want: "`say \"hi\"`"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := Quote(tc.in); got != tc.want {
				t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestDatabaseStatements(t *testing.T) {
	db := Database{Name: "analytics"}
	odd := Database{Name: "my`db"}
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{name: "Table", got: db.Table("events"), want: "`analytics`.`events`"},
		{name: "Table quotes both parts", got: odd.Table("ev`ents"), want: "`my\\`db`.`ev\\`ents`"},
		{name: "Create", got: db.Create(), want: "CREATE DATABASE IF NOT EXISTS `analytics`"},
		{name: "Create quotes", got: odd.Create(), want: "CREATE DATABASE IF NOT EXISTS `my\\`db`"},
		{name: "Insert", got: db.Insert("events", []string{"id", "note", "_version", "_deleted"}),
			want: "INSERT INTO `analytics`.`events` (`id`, `note`, `_version`, `_deleted`)"},
		{name: "Insert keeps order and quotes", got: db.Insert("events", []string{"z", "a`b", "m"}),
			want: "INSERT INTO `analytics`.`events` (`z`, `a\\`b`, `m`)"},
		{name: "Insert one column", got: db.Insert("t", []string{"x"}), want: "INSERT INTO `analytics`.`t` (`x`)"},
		{name: "Truncate", got: db.Truncate("events"), want: "TRUNCATE TABLE `analytics`.`events`"},
		{name: "Truncate quotes", got: odd.Truncate("e`v"), want: "TRUNCATE TABLE `my\\`db`.`e\\`v`"},
		{name: "DeleteCheckpoints", got: db.DeleteCheckpoints(),
			want: "ALTER TABLE `analytics`.`replicator_checkpoints` DELETE WHERE slot = ?"},
		{name: "DeleteCheckpoints quotes", got: odd.DeleteCheckpoints(),
			want: "ALTER TABLE `my\\`db`.`replicator_checkpoints` DELETE WHERE slot = ?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("%s = %s, want %s", tc.name, tc.got, tc.want)
			}
		})
	}
}

func TestPartitionedViewPicksByVersionAndSeq(t *testing.T) {
	tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.regions", Target: "regions", OrderBy: []string{"id"}, PartitionBy: "region"},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "region", TypeOID: 21, Identity: true}, {Name: "note", TypeOID: 25}},
		mapping.Caps{})
	if err != nil {
		t.Fatal(err)
	}
	got := Database{Name: "db"}.CreateView(tbl)
	want := "CREATE VIEW IF NOT EXISTS `db`.`regions_live` AS\n" +
		"SELECT `id`, `region`, `note`\nFROM\n(\n" +
		"    SELECT `id`,\n" +
		"           argMax(`region`, (`_version`, `_seq`)) AS `region`,\n" +
		"           argMax(`note`, (`_version`, `_seq`)) AS `note`,\n" +
		"           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`\n" +
		"    FROM (SELECT *, region AS _replicator_partition FROM `db`.`regions`)\n    GROUP BY `id`, _replicator_partition\n)\n" +
		"WHERE `_deleted_latest` = 0\n"
	if got != want {
		t.Errorf("CreateView =\n%s\nwant\n%s", got, want)
	}
}

func ptr[T any](v T) *T { return &v }

func TestLiteral(t *testing.T) {
	mustType := func(s string) mapping.Type {
		typ, err := mapping.ParseType(s)
		if err != nil {
			t.Fatal(err)
		}
		return typ
	}
	at := time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC)
	for _, tc := range []struct {
		v    any
		typ  string
		want string
	}{
		{int32(42), "Int32", "42"},
		{uint64(7), "UInt64", "7"},
		{"it's a \\ test", "String", `'it\'s a \\ test'`},
		{nil, "Nullable(String)", "NULL"},
		{at, "DateTime('UTC')", "toDateTime('2024-05-01 10:11:12', 'UTC')"},
		{at, "DateTime64(6, 'UTC')", "toDateTime64('2024-05-01 10:11:12.123456', 6, 'UTC')"},
		{at, "Date", "toDate('2024-05-01')"},
		{1.5, "Float64", "1.5"},
		{math.Inf(-1), "Float64", "-inf"},
		{float32(math.NaN()), "Float32", "nan"},
		{uuid.MustParse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "UUID", "toUUID('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')"},
		{decimal.RequireFromString("-12.50"), "Decimal(12, 2)", "CAST('-12.5' AS Decimal(12, 2))"},
		{true, "Bool", "true"},
		{at, "Date32", "toDate32('2024-05-01')"},
		{[]int32{1, -2}, "Array(Int32)", "CAST([1, -2] AS Array(Int32))"},
		{[]string{}, "Array(String)", "CAST([] AS Array(String))"},
		{[]*int64{nil, ptr(int64(3))}, "Array(Nullable(Int64))", "CAST([NULL, 3] AS Array(Nullable(Int64)))"},
		{[]string{"a'b"}, "Array(String)", `CAST(['a\'b'] AS Array(String))`},
		{map[string]string{"b": "2", "a'": "1"}, "Map(String, String)", `CAST((['a\'', 'b'], ['1', '2']) AS Map(String, String))`},
		{map[string]string{}, "Map(String, String)", "CAST(([], []) AS Map(String, String))"},
		{map[string]*string{"k": nil, "j": ptr("v")}, "Map(String, Nullable(String))",
			"CAST((['j', 'k'], ['v', NULL]) AS Map(String, Nullable(String)))"},
		{`{"a": "it's"}`, "JSON", `CAST('{"a": "it\'s"}' AS JSON)`},
	} {
		if got := Literal(tc.v, mustType(tc.typ)); got != tc.want {
			t.Errorf("Literal(%#v, %s) = %s, want %s", tc.v, tc.typ, got, tc.want)
		}
	}
}

// TestShadowsOnACluster checks the statements that make a shadow and put it
// in place: the shadow's local tables are replicated under a ZooKeeper path
// of their own, which they keep in the target's place, so a later shadow of
// the same target does not meet it; the swap renames local tables on the
// cluster and makes the Distributed table again over them.
func TestShadowsOnACluster(t *testing.T) {
	db := Database{Name: "a", Cluster: "c", ZKPath: DefaultZKPath}
	events := &mapping.Table{Target: "events", OrderBy: []string{"id"},
		Columns: []mapping.Column{{Name: "id", Type: mapping.Type{Kind: mapping.KindInt64}}}}
	first, second := db.CreateShadow(events, "k1"), db.CreateShadow(events, "k2")
	if len(first) != 2 || !strings.Contains(first[0], "CREATE TABLE IF NOT EXISTS `a`.`events_resync_local` ON CLUSTER `c`") ||
		!strings.Contains(first[0], "'/clickhouse/tables/{shard}/a/events_resync_k1'") ||
		!strings.Contains(second[0], "'/clickhouse/tables/{shard}/a/events_resync_k2'") ||
		!strings.Contains(first[1], "Distributed(`c`, `a`, `events_resync_local`, sipHash64(`id`))") {
		t.Errorf("CreateShadow:\n%s\n%s", strings.Join(first, "\n"), strings.Join(second, "\n"))
	}
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{name: "SwapIn", got: []string{db.SwapIn("events")}, want: []string{
			"RENAME TABLE `a`.`events_local` TO `a`.`events_replaced_local`, `a`.`events_resync_local` TO `a`.`events_local` ON CLUSTER `c`"}},
		{name: "PutIn", got: []string{db.PutIn("events")}, want: []string{
			"RENAME TABLE `a`.`events_resync_local` TO `a`.`events_local` ON CLUSTER `c`"}},
		{name: "AfterSwap", got: db.AfterSwap(events), want: []string{
			"DROP TABLE IF EXISTS `a`.`events_resync` ON CLUSTER `c`",
			"DROP TABLE IF EXISTS `a`.`events` ON CLUSTER `c`",
			"CREATE TABLE IF NOT EXISTS `a`.`events` ON CLUSTER `c` AS `a`.`events_local`\nENGINE = Distributed(`c`, `a`, `events_local`, sipHash64(`id`))\n"}},
		{name: "DropTarget", got: db.DropTarget("events_replaced"), want: []string{
			"DROP TABLE IF EXISTS `a`.`events_replaced` ON CLUSTER `c`", "DROP TABLE IF EXISTS `a`.`events_replaced_local` ON CLUSTER `c`"}},
		{name: "RenameTarget", got: db.RenameTarget(events, "events_replaced", "events_before_epoch2"), want: []string{
			"RENAME TABLE `a`.`events_replaced_local` TO `a`.`events_before_epoch2_local` ON CLUSTER `c`",
			"DROP TABLE IF EXISTS `a`.`events_replaced` ON CLUSTER `c`",
			"CREATE TABLE IF NOT EXISTS `a`.`events_before_epoch2` ON CLUSTER `c` AS `a`.`events_before_epoch2_local`\nENGINE = Distributed(`c`, `a`, `events_before_epoch2_local`, sipHash64(`id`))\n"}},
		{name: "SwapIn on one server", got: []string{Database{Name: "a"}.SwapIn("events")}, want: []string{
			"RENAME TABLE `a`.`events` TO `a`.`events_replaced`, `a`.`events_resync` TO `a`.`events`"}},
		{name: "AfterSwap on one server", got: Database{Name: "a"}.AfterSwap(events), want: nil},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
}

// TestSwapForm: where the database has EXCHANGE TABLES a shadow made with
// a token is exchanged in, and after a crash between the EXCHANGE and its
// RENAME the newer token under the target's name says the EXCHANGE ran
// (another would put the old rows back); anything without tokens, or an
// Ordinary database, renames.
func TestSwapForm(t *testing.T) {
	atomic := Database{Name: "a", Engine: EngineAtomic, Comments: true}
	old, shadow := ShadowComment(NewToken(time.Unix(1700000000, 0))), ShadowComment(NewToken(time.Unix(1800000000, 0)))
	for _, tc := range []struct {
		name           string
		db             Database
		shadow, target string
		want           SwapForm
	}{
		{"a new shadow over a target setup made", atomic, shadow, "", SwapExchange},
		{"a new shadow over an earlier copy", atomic, shadow, old, SwapExchange},
		{"exchanged, the RENAME not run", atomic, "", shadow, SwapExchanged},
		{"exchanged over an earlier copy", atomic, old, shadow, SwapExchanged},
		{"a shadow without a token", atomic, "", "", SwapRename},
		{"a user's comments", atomic, "events", "copy", SwapRename},
		{"no comments on the server", Database{Name: "a", Engine: EngineAtomic}, shadow, "", SwapRename},
		{"Ordinary", Database{Name: "a", Engine: EngineOrdinary, Comments: true}, shadow, "", SwapRename},
		{"Replicated", Database{Name: "a", Engine: EngineReplicated, Comments: true}, shadow, old, SwapExchange},
		{"Shared", Database{Name: "a", Engine: EngineShared, Comments: true}, old, shadow, SwapExchanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.db.Swap(tc.shadow, tc.target); got != tc.want {
				t.Errorf("Swap(%q, %q) = %v, want %v", tc.shadow, tc.target, got, tc.want)
			}
		})
	}
	if got := atomic.CreateShadow(&mapping.Table{Target: "events", OrderBy: []string{"id"}}, "k1"); !strings.HasSuffix(got[0], "COMMENT 'replicator copy k1'\n") {
		t.Errorf("CreateShadow on Atomic:\n%s", got[0])
	}
	if got := (Database{Name: "a", Engine: EngineOrdinary}).CreateShadow(&mapping.Table{Target: "events", OrderBy: []string{"id"}}, "k1"); strings.Contains(got[0], "COMMENT") {
		t.Errorf("CreateShadow on Ordinary:\n%s", got[0])
	}
}

// TestDatabaseEngines: ON CLUSTER and ZooKeeper arguments only where the
// database does not replicate DDL itself, SYNC on every DROP of an Atomic
// kind of database, none on Ordinary.
func TestDatabaseEngines(t *testing.T) {
	target := &mapping.Table{Target: "events", OrderBy: []string{"id"}}
	for _, tc := range []struct {
		name         string
		db           Database
		create, drop string
		own          string
	}{
		{"Ordinary", Database{Name: "a", Engine: EngineOrdinary},
			"CREATE TABLE IF NOT EXISTS `a`.`events`\n", "DROP TABLE IF EXISTS `a`.`x`", "ReplacingMergeTree(lsn)"},
		{"Ordinary on a cluster", Database{Name: "a", Engine: EngineOrdinary, Cluster: "c", ZKPath: DefaultZKPath},
			"CREATE TABLE IF NOT EXISTS `a`.`events_local` ON CLUSTER `c`\n", "DROP TABLE IF EXISTS `a`.`x` ON CLUSTER `c`",
			"ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/a/replicator_checkpoints', '{shard}-{replica}', lsn)"},
		{"Atomic on a cluster", Database{Name: "a", Engine: EngineAtomic, Cluster: "c", ZKPath: DefaultZKPath},
			"CREATE TABLE IF NOT EXISTS `a`.`events_local` ON CLUSTER `c`\n", "DROP TABLE IF EXISTS `a`.`x` ON CLUSTER `c` SYNC",
			"ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/a/replicator_checkpoints', '{shard}-{replica}', lsn)"},
		{"Replicated", Database{Name: "a", Engine: EngineReplicated},
			"CREATE TABLE IF NOT EXISTS `a`.`events`\n", "DROP TABLE IF EXISTS `a`.`x` SYNC", "ReplicatedReplacingMergeTree(lsn)"},
		{"Replicated on a cluster", Database{Name: "a", Engine: EngineReplicated, Cluster: "c", ZKPath: DefaultZKPath},
			"CREATE TABLE IF NOT EXISTS `a`.`events_local`\n", "DROP TABLE IF EXISTS `a`.`x` SYNC",
			"ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/a/replicator_checkpoints', '{shard}-{replica}', lsn)"},
		{"Shared", Database{Name: "a", Engine: EngineShared, Cloud: true},
			"CREATE TABLE IF NOT EXISTS `a`.`events`\n", "DROP TABLE IF EXISTS `a`.`x` SYNC", "ReplacingMergeTree(lsn)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			create := tc.db.CreateTable(target)
			if !strings.HasPrefix(create, tc.create) {
				t.Errorf("CreateTable:\n%s", create)
			}
			wantEngine := "ReplacingMergeTree(_version)"
			switch {
			case tc.db.Engine == EngineReplicated:
				wantEngine = "ReplicatedReplacingMergeTree(_version)"
			case tc.db.Cluster != "":
				wantEngine = "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/a/events', '{replica}', _version)"
			}
			if !strings.Contains(create, "ENGINE = "+wantEngine+"\n") {
				t.Errorf("CreateTable, want ENGINE = %s:\n%s", wantEngine, create)
			}
			if got := tc.db.Drop("x"); got != tc.drop {
				t.Errorf("Drop = %s, want %s", got, tc.drop)
			}
			if got := tc.db.CreateCheckpointTable(); !strings.Contains(got, "ENGINE = "+tc.own+"\n") {
				t.Errorf("CreateCheckpointTable, want ENGINE = %s:\n%s", tc.own, got)
			}
			if tc.db.replicatesDDL() && strings.Contains(strings.Join(slices.Concat(tc.db.CreateTarget(target), tc.db.Exchange("events"),
				tc.db.AddColumn("events", mapping.Column{Name: "c", Type: mapping.Type{Kind: mapping.KindInt64}}, "", "id"),
				[]string{tc.db.Truncate("events"), tc.db.Create()}), "\n"), "ON CLUSTER") {
				t.Errorf("ON CLUSTER in a %s database", tc.db.Engine)
			}
		})
	}
}

package sink

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

var update = flag.Bool("update", false, "write the golden files of TestGolden")

// classic are the settings of guards and cutShort that every family has,
// 18.16 included, with the values of a default profile (probed on 18.16;
// TestServerProbe checks them against the live server).
var classic = map[string]string{"skip_unavailable_shards": "0", "extremes": "0", "empty_result_for_aggregation_by_empty_set": "0",
	"distributed_group_by_no_merge": "0", "result_overflow_mode": "throw", "max_result_rows": "0", "max_result_bytes": "0",
	"read_overflow_mode": "throw", "max_rows_to_read": "0", "max_bytes_to_read": "0",
	"group_by_overflow_mode": "throw", "max_rows_to_group_by": "0",
	"sort_overflow_mode": "throw", "max_rows_to_sort": "0", "max_bytes_to_sort": "0",
	"set_overflow_mode": "throw", "max_rows_in_set": "0", "max_bytes_in_set": "0",
	"join_overflow_mode": "throw", "max_rows_in_join": "0", "max_bytes_in_join": "0",
	"distinct_overflow_mode": "throw", "max_rows_in_distinct": "0", "max_bytes_in_distinct": "0",
	"transfer_overflow_mode": "throw", "max_rows_to_transfer": "0", "max_bytes_to_transfer": "0",
	"timeout_overflow_mode": "throw", "max_execution_time": "0"}

// leaf are the limits of the leaves of a distributed query (22.x,
// unverified release), in the families from 23.8, as are the session
// settings limit and offset (22.x, unverified release) in modernGuards.
var leaf = map[string]string{"read_overflow_mode_leaf": "throw", "max_rows_to_read_leaf": "0", "max_bytes_to_read_leaf": "0"}

// modernGuards are the guards (pins) a server from 23.8 on has, with the
// values of a default profile (docs: settings reference of each).
var modernGuards = with(merged(classic, leaf), "limit", "0", "offset", "0", "aggregate_functions_null_for_empty", "0",
	"allow_nondeterministic_mutations", "0", "async_insert", "0", "wait_for_async_insert", "1", "final", "0",
	"optimize_move_to_prewhere_if_final", "0", "do_not_merge_across_partitions_select_final", "0")

func merged(a, b map[string]string) map[string]string {
	out := with(a)
	for k, v := range b {
		out[k] = v
	}
	return out
}

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// families describe each server family as Open would probe it: its
// version, the settings of probedSettings and the guards it has (with a
// default profile's values), its database engine and table comments.
// Where each fact comes from:
//   - 18.16: probed on the server the end-to-end tests run
//     (TestFamily1816IsTheServer checks it against a live one).
//   - insert_quorum_parallel: PR #17567 (21.1). do_not_merge_across_partitions_select_final:
//     PR #15938 (20.11). optimize_move_to_prewhere_if_final: PR #25940 (21.8, unverified release).
//     async_insert, wait_for_async_insert: 21.11 (unverified release). final: 22.11 (unverified release).
//     distributed_foreground_insert: 23.11 (PR #55978). max_table_size_to_drop per query: 23.12 (PR #57452).
//     database_replicated_allow_replicated_engine_arguments: 1 up to 24.8, 0 from 24.9 (docs settings
//     version history). cloud_mode: 1 on ClickHouse Cloud (docs session settings cloud_mode; open-source
//     servers that have it say 0, which renders as its absence, so it is left out of them).
//   - Table comments (system.tables.comment): 21.6 (PR #23548).
//   - Database engines: Ordinary before 20.10, Atomic the default from 20.10 (issue #19568); Replicated
//     made by the user; Shared on Cloud (docs database engines).
var families = []struct {
	name    string
	server  Server
	cluster bool // a 2x2 cluster variant applies
}{
	{"18.16-ordinary", Server{Version: [2]int{18, 16}, Settings: classic, Readonly: "0", Engine: ddl.EngineOrdinary}, true},
	{"21.8-ordinary", Server{Version: [2]int{21, 8}, Settings: with(classic, "insert_quorum_parallel", "1",
		"do_not_merge_across_partitions_select_final", "0", "optimize_move_to_prewhere_if_final", "0"),
		Readonly: "0", Engine: ddl.EngineOrdinary, Comments: true}, false},
	{"21.8-atomic", Server{Version: [2]int{21, 8}, Settings: with(classic, "insert_quorum_parallel", "1",
		"do_not_merge_across_partitions_select_final", "0", "optimize_move_to_prewhere_if_final", "0"),
		Readonly: "0", Engine: ddl.EngineAtomic, Comments: true}, true},
	{"23.8-atomic", Server{Version: [2]int{23, 8}, Settings: with(modernGuards, "insert_quorum_parallel", "1"),
		Readonly: "0", Engine: ddl.EngineAtomic, Comments: true}, true},
	{"24.8-atomic", Server{Version: [2]int{24, 8}, Settings: with(modernGuards, "insert_quorum_parallel", "1",
		"distributed_foreground_insert", "0", "max_table_size_to_drop", "50000000000",
		"database_replicated_allow_replicated_engine_arguments", "1"),
		Readonly: "0", Engine: ddl.EngineAtomic, Comments: true}, true},
	{"24.8-replicated", Server{Version: [2]int{24, 8}, Settings: with(modernGuards, "insert_quorum_parallel", "1",
		"distributed_foreground_insert", "0", "max_table_size_to_drop", "50000000000",
		"database_replicated_allow_replicated_engine_arguments", "1"),
		Readonly: "0", Engine: ddl.EngineReplicated, Comments: true}, true},
	{"25.8-atomic", Server{Version: [2]int{25, 8}, Settings: with(modernGuards, "insert_quorum_parallel", "1",
		"distributed_foreground_insert", "0", "max_table_size_to_drop", "50000000000",
		"database_replicated_allow_replicated_engine_arguments", "0"),
		Readonly: "0", Engine: ddl.EngineAtomic, Comments: true}, true},
	{"cloud-shared", Server{Version: [2]int{25, 10}, Settings: with(modernGuards, "insert_quorum_parallel", "1",
		"distributed_foreground_insert", "1", "max_table_size_to_drop", "1000000000000",
		"database_replicated_allow_replicated_engine_arguments", "0", "cloud_mode", "1"),
		Readonly: "0", Engine: ddl.EngineShared, Comments: true}, false},
}

// TestGolden renders, for each server family, the statements the daemon
// runs (setup, a resync's shadow, swap and drop, schema changes, TRUNCATE
// and DROP) and the session settings Open pins, through the same methods,
// and compares them with testdata/golden/<family>.sql (go test -update
// writes them). Only 18.16 runs against a live server here: the others
// are checked by these files alone.
func TestGolden(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			var b strings.Builder
			fmt.Fprintf(&b, "-- ClickHouse %d.%d, database engine %s, table comments %v, cloud %v\n",
				f.server.Version[0], f.server.Version[1], f.server.Engine, f.server.Comments, f.server.Cloud())
			render(t, &b, f.server, "")
			if f.cluster {
				render(t, &b, f.server, "c")
			} else {
				err := checkPlacement(f.server, config.ClickHouse{Database: "analytics", Cluster: "c"})
				fmt.Fprintf(&b, "\n-- ===== on cluster c =====\n-- refused: %v\n", err)
			}
			path := filepath.Join("testdata", "golden", f.name+".sql")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./sink -run TestGolden -update writes it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("%s differs from what the code renders (go test ./sink -run TestGolden -update, and review the diff):\n%s",
					path, firstDiff(string(want), got))
			}
		})
	}
}

// render writes the session settings and the statements of one family on
// cluster (empty: one server).
func render(t *testing.T, b *strings.Builder, s Server, cluster string) {
	t.Helper()
	if cluster == "" {
		b.WriteString("\n-- ===== one server =====\n")
	} else {
		fmt.Fprintf(b, "\n-- ===== on cluster %s (2 shards x 2 replicas) =====\n", cluster)
	}
	if err := checkPlacement(s, config.ClickHouse{Database: "analytics", Cluster: cluster}); err != nil {
		fmt.Fprintf(b, "-- refused: %v\n", err)
		return
	}
	db := s.DB("analytics", cluster, ddl.DefaultZKPath)
	replicas := uint64(0)
	if cluster != "" {
		replicas = 2
	}
	settings, err := sessionSettings(s, db, replicas)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	slices.Sort(names)
	b.WriteString("\n-- session settings\n")
	for _, k := range names {
		fmt.Fprintf(b, "SET %s = %v;\n", k, settings[k])
	}
	_, dropAny := s.Settings["max_table_size_to_drop"]
	fmt.Fprintf(b, "-- DROP and TRUNCATE add SETTINGS max_table_size_to_drop = 0: %v\n", dropAny)

	caps := s.Caps()
	events, err := mapping.Resolve(mapping.TableSpec{Source: "public.events", Target: "events", OrderBy: []string{"id"},
		PartitionBy: "toYYYYMM(created)"},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "created", TypeOID: 1184, Identity: true},
			{Name: "note", TypeOID: 25}, {Name: "done", TypeOID: 16}}, caps)
	if err != nil {
		t.Fatal(err)
	}
	users, err := mapping.Resolve(mapping.TableSpec{Source: "public.users", Target: "users", OrderBy: []string{"id"}},
		[]mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "name", TypeOID: 25}}, caps)
	if err != nil {
		t.Fatal(err)
	}
	section := func(title string, stmts ...string) {
		fmt.Fprintf(b, "\n-- %s\n", title)
		for _, s := range stmts {
			b.WriteString(strings.TrimRight(s, "\n") + ";\n")
		}
	}
	section("setup: database and own tables", append([]string{db.Create()}, db.CreateOwnTables()...)...)
	section("setup: target with a partition key, and its views", append(db.CreateTarget(events), db.CreateViews(events, "slot")...)...)
	section("setup: target without one, and its views", append(db.CreateTarget(users), db.CreateViews(users, "slot")...)...)
	// The opt-in types: a Map of an hstore, and JSON of a jsonb, where
	// the server has them.
	for _, opt := range []struct{ source, typ string }{{"attrs", "Map(String, Nullable(String))"}, {"doc", "JSON"}, {"state", "Enum"}} {
		cols := []mapping.SourceColumn{{Name: "id", TypeOID: 20, Identity: true}, {Name: "attrs", TypeOID: 16400, Hstore: true},
			{Name: "doc", TypeOID: 3802}, {Name: "state", TypeOID: 16410, Enum: true, Labels: []string{"draft", "is open, (x = 1)"}}}
		tbl, err := mapping.Resolve(mapping.TableSpec{Source: "public.docs", Target: "docs", OrderBy: []string{"id"},
			Columns: map[string]mapping.ColumnSpec{opt.source: {Type: opt.typ}}}, cols, caps)
		if err != nil {
			fmt.Fprintf(b, "\n-- setup: a target with a %s column: refused: %v\n", opt.typ, err)
			continue
		}
		section(fmt.Sprintf("setup: a target with a %s column, and its views", opt.typ),
			append(db.CreateTarget(tbl), db.CreateViews(tbl, "slot")...)...)
		if opt.typ == "Enum" {
			// ALTER TYPE ... ADD VALUE 'closed' BEFORE 'draft'.
			i := tbl.ColumnIndex("state")
			have := tbl.Columns[i].Type
			cols[3].Labels = []string{"closed", "draft", "is open, (x = 1)"}
			grown, err := mapping.Resolve(mapping.TableSpec{Source: "public.docs", Target: "docs", OrderBy: []string{"id"},
				Columns: map[string]mapping.ColumnSpec{opt.source: {Type: opt.typ}}}, cols, caps)
			if err != nil {
				t.Fatal(err)
			}
			grown.Adopt("state", have, caps)
			section("schema change: a label added to an enum", db.ModifyColumn(grown.Target, grown.Columns[i])...)
		}
	}
	modern := *users
	modern.Storage.EngineDeletes = true
	if err := db.CheckStorage(&modern); err != nil {
		fmt.Fprintf(b, "\n-- setup: a target with engine_is_deleted = true: refused: %v\n", err)
	} else {
		section("setup: a target with engine_is_deleted = true", db.CreateTarget(&modern)...)
	}

	shadow := ddl.ShadowName(users.Target)
	token := "mk2f5c1a0"
	section("resync: the shadow", append(db.DropTarget(shadow), db.CreateShadow(users, token)...)...)
	shadowComment, targetComment := "", ""
	if db.Exchanges() {
		shadowComment = ddl.ShadowComment(token)
	}
	var swap []string
	switch form := db.Swap(shadowComment, targetComment); form {
	case ddl.SwapExchange:
		swap = db.Exchange(users.Target)
		// After a crash between the two, the target has the newer token.
		if db.Swap(targetComment, shadowComment) != ddl.SwapExchanged {
			t.Errorf("a crash after the EXCHANGE is not told from one before it")
		}
	case ddl.SwapRename:
		swap = []string{db.SwapIn(users.Target)}
	default:
		t.Fatalf("a new shadow's swap is %v", form)
	}
	same := swap
	if cluster != "" {
		same = append(slices.Clone(swap), db.Drop(shadow)) // the shadow's Distributed table
	}
	section("resync: swap (same shape), then drop the replaced copy", append(same, db.DropTarget(ddl.ReplacedName(users.Target))...)...)
	section("resync: swap of a new shape", slices.Concat(db.DropViews(users.Target), swap, db.AfterSwap(users))...)

	note := mapping.Column{Name: "extra", Type: mapping.Type{Kind: mapping.KindInt64}}
	section("schema change: ADD COLUMN", slices.Concat(db.AddColumn(events.Target, note, "0", "done"),
		db.RecreateDistributed(events.Target, events.OrderBy), db.ReplaceView(events, append(events.MappedNames(), "extra"), "slot"))...)
	wide := mapping.Column{Name: "note", Type: mapping.Type{Kind: mapping.KindString, Nullable: true}}
	section("schema change: MODIFY COLUMN", slices.Concat(db.ModifyColumn(events.Target, wide),
		db.RecreateDistributed(events.Target, events.OrderBy))...)
	key := ddl.KeyText("id", "toYYYYMM(created_at)")
	section("compaction", db.CreateCompactionTable("replicator_compact_slot_1"),
		db.FindCompaction("replicator_compact_slot_1", events.Target, key, 1000),
		db.Compact(events.Target, key, "replicator_compact_slot_1", "_deleted = 0 AND "+db.CompactionGuard("slot", 1, 1000)),
		db.Compact(events.Target, key, "replicator_compact_slot_1", "1 AND "+db.CompactionGuard("slot", 1, 1000)),
		db.Drop("replicator_compact_slot_1"))
	section("TRUNCATE", db.Truncate(events.Target))
	section("DROP", slices.Concat(db.DropViews(events.Target), db.DropTarget(events.Target))...)
}

// firstDiff shows the first line where got differs from want.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n want %q\n  got %q", i+1, wl, gl)
		}
	}
	return ""
}

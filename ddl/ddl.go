package ddl

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/replicator/replicator/mapping"
)

// Tables of the replicator's own, in the target database.
const (
	// CheckpointTable holds the replication position of each slot.
	CheckpointTable = "replicator_checkpoints"
	// TruncationTable holds, per slot and source table, the position of
	// the newest TRUNCATE applied: a replay skips the table's older changes.
	TruncationTable = "replicator_truncations"
	// ProgressTable holds the running daemon's report of what it received
	// and has not stored yet, which `replicator status` reads.
	ProgressTable = "replicator_progress"
	// ChunkTable holds the state of every chunk of a table copy: its page
	// range, whether and in which snapshot it was copied.
	ChunkTable = "replicator_copy_chunks"
	// ColumnTable holds, per slot and source table, the columns of the
	// newest Relation message the daemon wrote rows with: a column gone
	// from the next one was dropped or renamed.
	ColumnTable = "replicator_columns"
	// StorageTable holds, per slot and source table, the storage of the
	// table (attribute numbers, types, file nodes) that the ClickHouse
	// rows are known to agree with: a rewrite changes it.
	StorageTable = "replicator_storage"
	// RecoveryTable holds, per slot and history epoch, the state of the
	// recovery that copies every table again for that epoch.
	RecoveryTable = "replicator_recoveries"
)

// Quote quotes a ClickHouse identifier.
func Quote(name string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// Database renders statements for one ClickHouse database.
type Database struct {
	Name string
	// Cluster, when set, makes targets ReplicatedReplacingMergeTree local
	// tables (LocalName) under Distributed tables of the target's name,
	// sharded by a hash of the sorting key; the replicator's own tables
	// are replicated on every node; and every DDL runs ON CLUSTER.
	Cluster string
	// ZKPath is the ZooKeeper path of a target's local table: {database}
	// and {table} are filled in here, {shard} is the server's macro.
	ZKPath string
	// Server is the version of the ClickHouse server (major, minor),
	// which decides the storage features a target may use.
	Server [2]int
	// Engine is the engine of the database as the server reports it
	// (system.databases.engine; see the Engine constants). A database
	// not made yet has none: what CREATE DATABASE gives it is read
	// once it exists, and until then only Create is rendered for it.
	Engine string
	// Cloud says the server is ClickHouse Cloud (its session setting
	// cloud_mode is 1): whatever MergeTree engine a DDL names, the
	// table is a SharedMergeTree one, with no ZooKeeper path of its own.
	Cloud bool
	// Comments says the server keeps a comment per table (system.tables
	// has a comment column: 21.6 and later). A swap by EXCHANGE TABLES
	// marks each new copy with one (see SwapIn).
	Comments bool
}

// Database engines whose DDL differs (system.databases.engine).
const (
	// EngineOrdinary is the only engine before 20.10: RENAME moves
	// files, a DROP is done when it returns.
	EngineOrdinary = "Ordinary"
	// EngineAtomic is the default from 20.10: tables have UUIDs,
	// EXCHANGE TABLES swaps two names at once, and a DROP frees the
	// table (and a replicated table's ZooKeeper path) 480 s later unless
	// it says SYNC.
	EngineAtomic = "Atomic"
	// EngineReplicated is an Atomic database that runs each DDL on every
	// replica of its own (which refuse ON CLUSTER), whose replicated
	// tables take their ZooKeeper paths from the server's
	// default_replica_path (explicit ones are refused from 24.9).
	EngineReplicated = "Replicated"
	// EngineShared is the database engine of ClickHouse Cloud: DDL
	// reaches every replica by itself, tables are SharedMergeTree.
	EngineShared = "Shared"
)

// atomic reports whether the database frees a dropped table late (unless
// the DROP says SYNC) and has EXCHANGE TABLES: every engine but Ordinary
// of those the replicator knows.
func (d Database) atomic() bool {
	return d.Engine == EngineAtomic || d.Engine == EngineReplicated || d.Engine == EngineShared
}

// replicatesDDL reports whether the database runs each DDL on every
// replica by itself: it refuses ON CLUSTER, and its tables take no
// ZooKeeper path from the DDL.
func (d Database) replicatesDDL() bool {
	return d.Engine == EngineReplicated || d.Engine == EngineShared || d.Cloud
}

// Exchanges reports whether SwapIn swaps by EXCHANGE TABLES (an Atomic,
// Replicated or Shared database on a server with table comments), not by
// RENAME.
func (d Database) Exchanges() bool { return d.atomic() && d.Comments }

// ExplicitPaths reports whether the replicator's own tables name their
// ZooKeeper path in a database that gives its tables paths of its own (a
// Replicated database on a cluster): a session needs
// database_replicated_allow_replicated_engine_arguments = 1 there, where
// the server has that setting.
func (d Database) ExplicitPaths() bool {
	return d.Engine == EngineReplicated && !d.Cloud && d.Cluster != ""
}

// The first ClickHouse versions with each storage feature of a target
// (mapping.Storage): data skipping indexes without an experimental
// setting, table TTLs, projections, and the setting that keeps
// projections of a ReplacingMergeTree correct when merges replace rows
// (from which on a projection needs it).
var (
	minIndexes        = [2]int{20, 1}
	minTTL            = [2]int{19, 6}
	minProjections    = [2]int{22, 3}
	minProjectionMode = [2]int{24, 8}
	// ADD COLUMN IF NOT EXISTS came with 19.1 (PR #3900), and up to 19.3
	// still failed on an existing column (issue #4565): 20.1 is the first
	// release known to have it right.
	minAddIfNotExists = [2]int{20, 1}
	// ReplacingMergeTree's is_deleted argument came with 23.2.
	minEngineDeletes = [2]int{23, 2}
)

func (d Database) atLeast(v [2]int) bool {
	return d.Server[0] > v[0] || d.Server[0] == v[0] && d.Server[1] >= v[1]
}

// CheckStorage says which storage feature of t the server lacks, naming
// the first version that has it.
func (d Database) CheckStorage(t *mapping.Table) error {
	need := func(what string, v [2]int) error {
		return fmt.Errorf("table %s: %s need ClickHouse %d.%d or later; the server is %d.%d: remove them from the configuration",
			t.Source, what, v[0], v[1], d.Server[0], d.Server[1])
	}
	switch st := t.Storage; {
	case len(st.Indexes) > 0 && !d.atLeast(minIndexes):
		return need("data skipping indexes (index blocks)", minIndexes)
	case len(st.Projections) > 0 && !d.atLeast(minProjections):
		return need("projections (projection blocks)", minProjections)
	case st.TTL != "" && !d.atLeast(minTTL):
		return need("TTLs (ttl)", minTTL)
	case st.EngineDeletes && !d.atLeast(minEngineDeletes):
		return need("tombstones kept by the engine (engine_is_deleted)", minEngineDeletes)
	}
	return nil
}

// DefaultZKPath is the default of Database.ZKPath.
const DefaultZKPath = "/clickhouse/tables/{shard}/{database}/{table}"

// LocalName names the local (sharded, replicated) table of a target on a
// cluster.
func LocalName(target string) string { return target + "_local" }

// on is the ON CLUSTER clause of a DDL, empty without a cluster and in a
// database that runs each DDL on its replicas itself.
func (d Database) on() string {
	if d.Cluster == "" || d.replicatesDDL() {
		return ""
	}
	return " ON CLUSTER " + Quote(d.Cluster)
}

// engine returns the ReplacingMergeTree engine of a table keeping the
// highest version (without one, the last inserted of equal rows): on a
// cluster replicated, per shard for a target, across every node for one of
// the replicator's own tables (shared). On ClickHouse Cloud it names no
// replication (the server makes every table SharedMergeTree); in a
// Replicated database no ZooKeeper path (the database's
// default_replica_path, with the table's UUID, is used), except an own
// table's on a cluster (see ExplicitPaths): the default path is per
// shard, and the checkpoints must be the same on every node.
func (d Database) engine(version, table string, shared bool) string {
	switch {
	case d.Cloud || d.Engine == EngineShared:
		return "ReplacingMergeTree(" + version + ")"
	case d.Engine == EngineReplicated && !(shared && d.Cluster != ""):
		return "ReplicatedReplacingMergeTree(" + version + ")"
	case d.Cluster == "":
		return "ReplacingMergeTree(" + version + ")"
	}
	path, replica := strings.NewReplacer("{database}", d.Name, "{table}", table).Replace(d.ZKPath), "{replica}"
	if shared {
		path, replica = "/clickhouse/tables/replicator/"+d.Name+"/"+table, "{shard}-{replica}"
	}
	str := func(s string) string { return Literal(s, mapping.Type{Kind: mapping.KindString}) }
	if version == "" {
		return fmt.Sprintf("ReplicatedReplacingMergeTree(%s, %s)", str(path), str(replica))
	}
	return fmt.Sprintf("ReplicatedReplacingMergeTree(%s, %s, %s)", str(path), str(replica), version)
}

// Table returns the quoted, database-qualified name of a table.
func (d Database) Table(name string) string { return Quote(d.Name) + "." + Quote(name) }

// Create returns the statement that creates the database.
func (d Database) Create() string { return "CREATE DATABASE IF NOT EXISTS " + Quote(d.Name) + d.on() }

// Insert returns the head of an INSERT into table that names its columns
// (ClickHouse 18.16 needs the names).
func (d Database) Insert(table string, columns []string) string {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = Quote(c)
	}
	return fmt.Sprintf("INSERT INTO %s (%s)", d.Table(table), strings.Join(quoted, ", "))
}

// Truncate returns the statement that empties a table.
func (d Database) Truncate(table string) string {
	if d.Cluster != "" {
		return "TRUNCATE TABLE " + d.Table(LocalName(table)) + d.on()
	}
	return "TRUNCATE TABLE " + d.Table(table)
}

// CreateTable returns the DDL of the ReplacingMergeTree target of t.
func (d Database) CreateTable(t *mapping.Table) string { return d.createTable(t, t.Target, "") }

// createTable returns the DDL of t's target, whose local tables on a
// cluster are replicated under the ZooKeeper path of zkName ({table} of
// Database.ZKPath), with comment when not empty.
func (d Database) createTable(t *mapping.Table, zkName, comment string) string {
	var b strings.Builder
	name := t.Target
	if d.Cluster != "" {
		name = LocalName(t.Target)
	}
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s%s\n(\n", d.Table(name), d.on())
	for _, c := range t.Columns {
		fmt.Fprintf(&b, "    %s %s%s,\n", Quote(c.Name), c.Type, defaultClause(c.Type))
	}
	fmt.Fprintf(&b, "    %s UInt64,\n", Quote(mapping.VersionColumn))
	fmt.Fprintf(&b, "    %s UInt8 DEFAULT 0,\n", Quote(mapping.DeletedColumn))
	fmt.Fprintf(&b, "    %s UInt64 DEFAULT 0", Quote(mapping.SeqColumn))
	version, keys := mapping.VersionColumn, make([]string, len(t.OrderBy))
	for i, k := range t.OrderBy {
		keys[i] = Quote(k)
	}
	if t.History {
		// Every change is a row of its own, kept under its (_version,
		// _seq); the engine only folds a change written twice (a replay).
		fmt.Fprintf(&b, ",\n    %s %s DEFAULT 'snapshot'", Quote(mapping.OpColumn), OpType)
		version, keys = "", append(keys, Quote(mapping.VersionColumn), Quote(mapping.SeqColumn))
	}
	for _, ix := range t.Storage.Indexes {
		fmt.Fprintf(&b, ",\n    INDEX %s %s TYPE %s GRANULARITY %d", Quote(ix.Name), ix.Expression, ix.Type, ix.Granularity)
	}
	for _, p := range t.Storage.Projections {
		fmt.Fprintf(&b, ",\n    PROJECTION %s (%s)", Quote(p.Name), p.Query)
	}
	if t.Storage.EngineDeletes && version != "" {
		// The engine knows the tombstones: FINAL leaves them out. (Merges
		// keep them: no CLEANUP is ever asked for.)
		version += ", " + mapping.DeletedColumn
	}
	fmt.Fprintf(&b, "\n)\nENGINE = %s\n", d.engine(version, zkName, false))
	if t.PartitionBy != "" {
		fmt.Fprintf(&b, "PARTITION BY %s\n", t.PartitionBy)
	}
	fmt.Fprintf(&b, "ORDER BY (%s)\n", strings.Join(keys, ", "))
	if t.Storage.TTL != "" {
		fmt.Fprintf(&b, "TTL %s\n", t.Storage.TTL)
	}
	if len(t.Storage.Projections) > 0 && d.atLeast(minProjectionMode) {
		// Merges replace rows: rebuild the projections' parts from the
		// merged rows instead of refusing the projection.
		b.WriteString("SETTINGS deduplicate_merge_projection_mode = 'rebuild'\n")
	}
	if comment != "" {
		fmt.Fprintf(&b, "COMMENT %s\n", Literal(comment, mapping.Type{Kind: mapping.KindString}))
	}
	return b.String()
}

// AlterStorage returns the statements that give an existing target t's
// indexes, projections and TTL: each added when missing and built for the
// parts written before (a mutation that ClickHouse runs in the
// background), the TTL set. Indexes and projections already there under
// the same name are kept as they are.
func (d Database) AlterStorage(t *mapping.Table) []string {
	name := t.Target
	if d.Cluster != "" {
		name = LocalName(t.Target)
	}
	alter := "ALTER TABLE " + d.Table(name) + d.on()
	var out []string
	for _, ix := range t.Storage.Indexes {
		out = append(out, fmt.Sprintf("%s ADD INDEX IF NOT EXISTS %s %s TYPE %s GRANULARITY %d", alter, Quote(ix.Name), ix.Expression, ix.Type, ix.Granularity),
			fmt.Sprintf("%s MATERIALIZE INDEX %s", alter, Quote(ix.Name)))
	}
	if len(t.Storage.Projections) > 0 && d.atLeast(minProjectionMode) {
		out = append(out, alter+" MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'")
	}
	for _, p := range t.Storage.Projections {
		out = append(out, fmt.Sprintf("%s ADD PROJECTION IF NOT EXISTS %s (%s)", alter, Quote(p.Name), p.Query),
			fmt.Sprintf("%s MATERIALIZE PROJECTION %s", alter, Quote(p.Name)))
	}
	if t.Storage.TTL != "" {
		out = append(out, fmt.Sprintf("%s MODIFY TTL %s", alter, t.Storage.TTL))
	}
	return out
}

// OpType is the type of a history table's OpColumn.
const OpType = "Enum8('snapshot' = 0, 'insert' = 1, 'update' = 2, 'delete' = 3)"

// CreateDistributed returns the DDL of the Distributed table that readers
// and the replicator use on a cluster, over the target's local tables,
// sharded by a hash of the sorting key (every version of a key on one
// shard); empty without a cluster.
func (d Database) CreateDistributed(t *mapping.Table) string {
	if d.Cluster == "" {
		return ""
	}
	keys := make([]string, len(t.OrderBy))
	for i, k := range t.OrderBy {
		keys[i] = Quote(k)
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s AS %s\nENGINE = Distributed(%s, %s, %s, sipHash64(%s))\n",
		d.Table(t.Target), d.on(), d.Table(LocalName(t.Target)), Quote(d.Cluster), Quote(d.Name), Quote(LocalName(t.Target)),
		strings.Join(keys, ", "))
}

// CreateTarget returns the statements that create t's target: the table,
// and on a cluster the Distributed table over it.
func (d Database) CreateTarget(t *mapping.Table) []string {
	if d.Cluster == "" {
		return []string{d.CreateTable(t)}
	}
	return []string{d.CreateTable(t), d.CreateDistributed(t)}
}

func defaultClause(t mapping.Type) string {
	if t.Nullable || t.Array {
		return ""
	}
	switch {
	case t.IsInteger(), t.Kind == mapping.KindFloat32, t.Kind == mapping.KindFloat64:
		return " DEFAULT 0"
	case t.Kind == mapping.KindString:
		return " DEFAULT ''"
	}
	return ""
}

// AddSeqColumn returns the statement that adds the _seq column to a target
// created before it existed; its rows read as 0, like copied rows.
func (d Database) AddSeqColumn(target string) string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s UInt64 DEFAULT 0", d.Table(target), Quote(mapping.SeqColumn))
}

// ViewName returns the name of the live view of t's target.
func ViewName(t *mapping.Table) string { return ViewOf(t.Target) }

// ViewOf names the live view of target.
func ViewOf(target string) string { return target + "_live" }

// ShadowName names the table a resync copies target into; ReplacedName
// names target while the copy is swapped in, until it is dropped.
func ShadowName(target string) string   { return target + "_resync" }
func ReplacedName(target string) string { return target + "_replaced" }

// IsShadow reports whether name is a ShadowName.
func IsShadow(name string) bool { return strings.HasSuffix(name, "_resync") }

// Storage names the table that holds the rows of the target-shaped table
// name (a target, its shadow, its replaced copy): name itself, or on a
// cluster its local tables.
func (d Database) Storage(name string) string {
	if d.Cluster == "" {
		return name
	}
	return LocalName(name)
}

// CreateShadow returns the statements that create the shadow of t
// (ShadowName), the new table that a copy of t fills before it takes the
// target's place. On a cluster its local tables are replicated under a
// ZooKeeper path of their own, named with token (unique to this shadow),
// which they keep once in the target's place: the path of a shadow's name
// would then be in use, and the next shadow of t would meet it. token is
// a time in base 36 (see NewToken): where the swap is an EXCHANGE
// (Exchanges), the shadow's comment carries it (ShadowComment), and a
// later copy's is greater.
func (d Database) CreateShadow(t *mapping.Table, token string) []string {
	shadow := *t
	shadow.Target = ShadowName(t.Target)
	comment := ""
	if d.Exchanges() {
		comment = ShadowComment(token)
	}
	create := d.createTable(&shadow, shadow.Target+"_"+token, comment)
	if d.Cluster == "" {
		return []string{create}
	}
	return []string{create, d.CreateDistributed(&shadow)}
}

// DropTarget returns the statements that drop the target-shaped table name
// if it exists, and on a cluster its local tables.
func (d Database) DropTarget(name string) []string {
	if d.Cluster == "" {
		return []string{d.Drop(name)}
	}
	return []string{d.Drop(name), d.Drop(LocalName(name))}
}

// NewToken returns the token of a new shadow (see CreateShadow): the
// time in nanoseconds since 1970, in base 36.
func NewToken(now time.Time) string { return strconv.FormatInt(now.UnixNano(), 36) }

// shadowMark begins the comment of a shadow made for an EXCHANGE.
const shadowMark = "replicator copy "

// ShadowComment returns the comment of a shadow made with token: it
// stays with the table's rows, under whichever name they are.
func ShadowComment(token string) string { return shadowMark + token }

// CopyToken returns the time of the token in a ShadowComment, 0 for a
// table without one (a target made by setup, or a shadow made where the
// swap was a RENAME).
func CopyToken(comment string) int64 {
	token, ok := strings.CutPrefix(comment, shadowMark)
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(token, 36, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// SwapForm is how a shadow takes the target's place.
type SwapForm int

const (
	// SwapRename renames the target away (ReplacedName) and the shadow in
	// with one RENAME (SwapIn). Its steps show in the names: a crash
	// between them leaves a shadow and a replaced table without a target
	// (PutIn finishes it).
	SwapRename SwapForm = iota
	// SwapExchange exchanges the two names at once (Exchange): no reader
	// ever misses the target. The names then say nothing of the step
	// reached, so the comments do: the shadow carries a token newer than
	// the target's.
	SwapExchange
	// SwapExchanged is an EXCHANGE done and its RENAME of the old rows,
	// now under the shadow's name, to ReplacedName not (AfterExchange).
	SwapExchanged
)

// Swap decides, from the comments of the tables under the shadow's and
// the target's names (on a cluster the local tables'), how the shadow
// takes the target's place, or whether an EXCHANGE already put it there:
// the newer copy (the greater CopyToken) under the target's name is the
// shadow's rows swapped in. A shadow without a token (made by a
// replicator or on a server without comments, or where the database has
// no EXCHANGE) is renamed in: an EXCHANGE of it could not be told from
// none after a crash.
func (d Database) Swap(shadowComment, targetComment string) SwapForm {
	shadow, target := CopyToken(shadowComment), CopyToken(targetComment)
	switch {
	case !d.Exchanges():
		return SwapRename
	case target > shadow:
		return SwapExchanged
	case shadow > target:
		return SwapExchange
	}
	return SwapRename
}

// Exchange returns the statements that put the shadow of target in its
// place by EXCHANGE TABLES (see SwapExchange; on a cluster the local
// tables), then rename the old rows, which the EXCHANGE left under the
// shadow's name, to ReplacedName (AfterExchange): as after SwapIn. On a
// cluster AfterSwap must follow.
func (d Database) Exchange(target string) []string {
	return []string{fmt.Sprintf("EXCHANGE TABLES %s AND %s%s", d.Table(d.Storage(target)), d.Table(d.Storage(ShadowName(target))), d.on()),
		d.AfterExchange(target)}
}

// AfterExchange returns the statement that renames the old rows of
// target, under the shadow's name after an EXCHANGE, to ReplacedName.
func (d Database) AfterExchange(target string) string {
	return d.RenameStorage(ShadowName(target), ReplacedName(target))
}

// SwapIn returns the statement that puts the shadow of target in its
// place (on a cluster, the shadow's local tables in place of the
// target's) by RENAME (SwapRename); the old target is left under
// ReplacedName. An Ordinary database (every one before 20.10) has no
// EXCHANGE TABLES: the RENAME, run as one statement, leaves no moment
// without a target between its two steps other than ClickHouse's own. On
// a cluster AfterSwap must follow.
func (d Database) SwapIn(target string) string {
	return fmt.Sprintf("RENAME TABLE %s TO %s, %s TO %s%s", d.Table(d.Storage(target)), d.Table(d.Storage(ReplacedName(target))),
		d.Table(d.Storage(ShadowName(target))), d.Table(d.Storage(target)), d.on())
}

// PutIn returns the statement that puts the shadow of target in its place
// where there is no target (SwapIn otherwise). On a cluster AfterSwap
// must follow.
func (d Database) PutIn(target string) string {
	return fmt.Sprintf("RENAME TABLE %s TO %s%s", d.Table(d.Storage(ShadowName(target))), d.Table(d.Storage(target)), d.on())
}

// AfterSwap returns the statements that complete SwapIn or PutIn of t's
// shadow on a cluster: the shadow's Distributed table is dropped and the
// target's made again over the local tables now in place (their columns
// may differ from the old ones'), for a moment missing. Each can be run
// again. Empty without a cluster.
func (d Database) AfterSwap(t *mapping.Table) []string {
	if d.Cluster == "" {
		return nil
	}
	return append([]string{d.Drop(ShadowName(t.Target))}, d.RecreateDistributed(t.Target, t.OrderBy)...)
}

// RenameTarget returns the statements that rename the target-shaped table
// from (of t) to to: on a cluster its local tables, under a Distributed
// table of the new name.
func (d Database) RenameTarget(t *mapping.Table, from, to string) []string {
	if d.Cluster == "" {
		return []string{d.Rename(from, to)}
	}
	renamed := *t
	renamed.Target = to
	return []string{fmt.Sprintf("RENAME TABLE %s TO %s%s", d.Table(LocalName(from)), d.Table(LocalName(to)), d.on()),
		d.Drop(from), d.CreateDistributed(&renamed)}
}

// RenameStorage returns the statement that renames the rows' table of the
// target-shaped table from (on a cluster its local tables) to to's.
func (d Database) RenameStorage(from, to string) string {
	return fmt.Sprintf("RENAME TABLE %s TO %s%s", d.Table(d.Storage(from)), d.Table(d.Storage(to)), d.on())
}

// Rename returns the statement that renames table from to to.
func (d Database) Rename(from, to string) string {
	return fmt.Sprintf("RENAME TABLE %s TO %s", d.Table(from), d.Table(to))
}

// Drop returns the statement that drops a table or view if it exists. In
// an Atomic (or Replicated, Shared) database it says SYNC: the table, its
// disk space and a replicated table's ZooKeeper path are freed when it
// returns, not 480 s later, so a table made again under the same path
// does not meet REPLICA_ALREADY_EXISTS.
func (d Database) Drop(table string) string {
	s := "DROP TABLE IF EXISTS " + d.Table(table) + d.on()
	if d.atomic() {
		s += " SYNC"
	}
	return s
}

// CreateView returns the DDL of the view that shows one live row per key:
// the newest version of each key, without deleted rows. A partitioned
// target picks the newest row by (_version, _seq) with argMax: FINAL also
// collapses rows across partitions, where the tombstone and the new row of
// a partition move have one version and FINAL may keep either.
func (d Database) CreateView(t *mapping.Table) string {
	return d.CreateViewOf(t.Target, t.PartitionBy, t.OrderBy, t.MappedNames())
}

// ReplaceView returns the statements that replace the views of t's
// target by one that shows columns (the target's columns, e.g. after a
// column was added): ClickHouse before 20 has no CREATE OR REPLACE VIEW,
// so readers of the view get an error between the two.
func (d Database) ReplaceView(t *mapping.Table, columns []string, slot string) []string {
	if t.History {
		return append(d.DropViews(t.Target), d.historyViews(t, slot, columns)...)
	}
	return append(d.DropViews(t.Target), d.CreateViewsOf(t.Target, t.PartitionBy, slot, t.OrderBy, columns)...)
}

// CreateViewOf returns the DDL of the live view of target, whose sorting
// key is orderBy, showing columns (see CreateView).
func (d Database) CreateViewOf(target, partitionBy string, orderBy, columns []string) string {
	view := d.Table(ViewOf(target)) + d.on()
	if partitionBy == "" {
		cols := make([]string, len(columns))
		for i, c := range columns {
			cols[i] = Quote(c)
		}
		return fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s AS\nSELECT %s\nFROM %s FINAL\nWHERE %s = 0\n",
			view, strings.Join(cols, ", "), d.Table(target), mapping.DeletedColumn)
	}
	return d.latestView(view, target, partitionBy, orderBy, columns, "")
}

// GroupsByPartition reports whether the views of a target partitioned by
// partitionBy group by its partition too (PartitionColumn): unless the
// sorting key orderBy decides the partition, every column of partitionBy
// being one of its columns.
func GroupsByPartition(partitionBy string, orderBy, columns []string) bool {
	return partitionBy != "" && !keyHolds(partitionBy, orderBy, columns)
}

// keyHolds reports whether every column of the expression partitionBy is
// a column of the sorting key orderBy: the sorting key then decides the
// partition, and grouping by it is grouping by both.
func keyHolds(partitionBy string, orderBy, columns []string) bool {
	for _, c := range columns {
		if slices.Contains(orderBy, c) {
			continue
		}
		if Mentions(partitionBy, c) {
			return false
		}
	}
	return true
}

// Mentions reports whether the ClickHouse expression expr names column
// (bare or quoted), not as a part of a longer name.
func Mentions(expr, column string) bool {
	return regexp.MustCompile("(^|[^A-Za-z0-9_])`?" + regexp.QuoteMeta(column) + "`?($|[^A-Za-z0-9_])").MatchString(expr)
}

// PartitionColumn is the column under which a view of a partitioned target
// groups its rows by their partition (see latestView); its name in a
// view's definition marks views that do.
const PartitionColumn = "_replicator_partition"

// latestView returns the DDL of a view named view that shows, of the rows
// of target matching where (all when empty), the newest by (_version,
// _seq) of each sorting key in each partition (partitionBy), without
// deleted ones. A tombstone lives in its row's partition, so a row moved
// to another partition shows there, its old place's tombstone hidden; and
// rows of one sorting key in two partitions (a partition column of the
// replica identity outside order_by) are two rows. (The partition is
// computed under a name of its own in a subquery: ClickHouse 18.16 would
// read a column in a GROUP BY expression as the aggregate of its alias.)
func (d Database) latestView(view, target, partitionBy string, orderBy, columns []string, where string) string {
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = Quote(c)
	}
	latest := fmt.Sprintf("(%s, %s)", Quote(mapping.VersionColumn), Quote(mapping.SeqColumn))
	keys := make([]string, len(orderBy))
	for i, k := range orderBy {
		keys[i] = Quote(k)
	}
	picks := make([]string, 0, len(columns)+1)
	for _, c := range columns {
		if !slices.Contains(orderBy, c) {
			picks = append(picks, fmt.Sprintf("argMax(%[1]s, %[2]s) AS %[1]s", Quote(c), latest))
		}
	}
	picks = append(picks, fmt.Sprintf("argMax(%s, %s) AS %s", Quote(mapping.DeletedColumn), latest, Quote(liveDeleted)))
	if where != "" {
		where = "\n    WHERE " + where
	}
	from, group := d.Table(target)+where, strings.Join(keys, ", ")
	if GroupsByPartition(partitionBy, orderBy, columns) {
		from = fmt.Sprintf("(SELECT *, %s AS %s FROM %s%s)", partitionBy, PartitionColumn, d.Table(target), strings.ReplaceAll(where, "\n", "\n    "))
		group += ", " + PartitionColumn
	}
	return fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s AS\nSELECT %s\nFROM\n(\n    SELECT %s,\n           %s\n    FROM %s\n    GROUP BY %s\n)\nWHERE %s = 0\n",
		view, strings.Join(cols, ", "), strings.Join(keys, ", "), strings.Join(picks, ",\n           "),
		from, group, Quote(liveDeleted))
}

// CommittedOf names the committed view of target (see CreateCommittedViewOf).
func CommittedOf(target string) string { return target + "_committed" }

// CreateCommittedViewOf returns the DDL of the committed view of target:
// the table as of the newest checkpoint of slot. Its rows are those of
// transactions that committed at or below a commit checkpoint (below a
// position checkpoint, at which a transaction may still commit), so a
// reader never sees part of a transaction (each view reads the checkpoint
// when its query starts). A row whose older version a merge folded into
// a version above the checkpoint is missing until the checkpoint covers
// it. It costs a GROUP BY where the live view of an unpartitioned table
// reads FINAL.
func (d Database) CreateCommittedViewOf(target, partitionBy, slot string, orderBy, columns []string) string {
	return d.latestView(d.Table(CommittedOf(target))+d.on(), target, partitionBy, orderBy, columns, d.committedBound(slot, target))
}

// committedBound is the condition on a row of a committed view of target:
// its transaction committed at or below the newest commit checkpoint of
// slot, or below its newest position checkpoint, in the newest history
// epoch; or it is a row of a complete copy of target read whole in one
// snapshot (version C − 1, which no transaction has: commit records are
// 8-byte aligned) into a new table that took target's place (a resync's,
// or a table copied again). Such a copy holds the table's rows at C in
// one snapshot, and the checkpoint stays below C until the stream passes
// it again (it is held for the copy): without them the view would lack
// the copy's rows meanwhile. Until the new table is in place no row of
// target has that version.
func (d Database) committedBound(slot, target string) string {
	lit := func(s string) string { return Literal(s, mapping.Type{Kind: mapping.KindString}) }
	return fmt.Sprintf("%[1]s < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM %[2]s WHERE slot = %[3]s)\n"+
		"       OR %[1]s + 1 IN (SELECT max(lsn) FROM %[4]s FINAL WHERE slot = %[3]s AND target = %[5]s GROUP BY source\n"+
		"                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)",
		Quote(mapping.VersionColumn), d.Table(CheckpointTable), lit(slot), d.Table(ChunkTable), lit(ShadowName(target)))
}

// CreateViews returns the DDL of the live and the committed views of t's
// target for slot.
func (d Database) CreateViews(t *mapping.Table, slot string) []string {
	if t.History {
		return d.historyViews(t, slot, t.MappedNames())
	}
	return d.CreateViewsOf(t.Target, t.PartitionBy, slot, t.OrderBy, t.MappedNames())
}

// historyViews returns the DDL of the views of a history table: the
// newest change of each row by its identity (see mapping.Table.Ident),
// without deleted rows, showing columns.
func (d Database) historyViews(t *mapping.Table, slot string, columns []string) []string {
	keys := make([]string, len(t.Ident()))
	for i, k := range t.Ident() {
		keys[i] = t.Columns[k].Name
	}
	return []string{d.latestView(d.Table(ViewOf(t.Target))+d.on(), t.Target, "", keys, columns, ""),
		d.latestView(d.Table(CommittedOf(t.Target))+d.on(), t.Target, "", keys, columns, d.committedBound(slot, t.Target))}
}

// CreateViewsOf is CreateViews for a target whose keys are partitionBy and
// orderBy, showing columns.
func (d Database) CreateViewsOf(target, partitionBy, slot string, orderBy, columns []string) []string {
	return []string{d.CreateViewOf(target, partitionBy, orderBy, columns), d.CreateCommittedViewOf(target, partitionBy, slot, orderBy, columns)}
}

// DropViews returns the statements that drop the views of target.
func (d Database) DropViews(target string) []string {
	return []string{d.Drop(ViewOf(target)), d.Drop(CommittedOf(target))}
}

// liveDeleted names the deletion mark inside the argMax form of a view.
const liveDeleted = "_deleted_latest"

// CreateCheckpointTable returns the DDL of the checkpoint table: one
// position per slot and history epoch, the newest (highest lsn) of each
// kept by merges. An LSN orders positions only within one Postgres
// history: a newer epoch's position may have a lower LSN than an older
// epoch's, so the epoch is part of the sorting key and readers take the
// newest epoch first. system_id and timeline name the history a position
// belongs to; last_lsn, last_xid and last_time (its commit time in
// microseconds since 1970) are the newest transaction stored at
// or below it (see checkpoint.Position).
func (d Database) CreateCheckpointTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    lsn UInt64,
    commit UInt8,
    commit_time DateTime('UTC'),
    written_at DateTime('UTC'),
    epoch UInt32,
    system_id UInt64 DEFAULT 0,
    timeline UInt32 DEFAULT 0,
    last_lsn UInt64 DEFAULT 0,
    last_xid UInt32 DEFAULT 0,
    last_time UInt64 DEFAULT 0
)
ENGINE = %s
ORDER BY (slot, epoch)
`, d.Table(CheckpointTable)+d.on(), d.engine("lsn", CheckpointTable, true))
}

// CreateOwnTables returns the DDL of the replicator's own tables, in the
// order setup makes them.
func (d Database) CreateOwnTables() []string {
	return []string{d.CreateCheckpointTable(), d.CreateProgressTable(), d.CreateTruncationTable(),
		d.CreateColumnTable(), d.CreateChunkTable(), d.CreateStorageTable(), d.CreateRecoveryTable()}
}

// CheckpointColumnsAdded are the columns of the checkpoint table that an
// earlier version made it without, with their definitions; the epoch,
// which joins the sorting key, comes first (see AddCheckpointEpoch).
var CheckpointColumnsAdded = [][2]string{{"system_id", "UInt64 DEFAULT 0"}, {"timeline", "UInt32 DEFAULT 0"},
	{"last_lsn", "UInt64 DEFAULT 0"}, {"last_xid", "UInt32 DEFAULT 0"}, {"last_time", "UInt64 DEFAULT 0"}}

// AddCheckpointEpoch returns the ALTER that gives a checkpoint table made
// by an earlier version its epoch column, in its sorting key (ClickHouse
// allows a column added in the same ALTER, without a default expression,
// to extend the sorting key). Its rows get epoch 0.
func (d Database) AddCheckpointEpoch() string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN epoch UInt32, MODIFY ORDER BY (slot, epoch)", d.Table(CheckpointTable))
}

// AddCheckpointColumn returns the ALTER that adds one of
// CheckpointColumnsAdded to a checkpoint table made before it existed.
func (d Database) AddCheckpointColumn(name, definition string) string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", d.Table(CheckpointTable), Quote(name), definition)
}

// DeleteCheckpoints returns the mutation that removes every checkpoint of
// the slot bound to its one parameter.
func (d Database) DeleteCheckpoints() string {
	return fmt.Sprintf("ALTER TABLE %s DELETE WHERE slot = ?", d.Table(CheckpointTable))
}

// CreateTruncationTable returns the DDL of the truncation table: per slot
// and source table the newest truncation, kept by merges.
func (d Database) CreateTruncationTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    source String,
    version UInt64,
    seq UInt64,
    written_at DateTime('UTC')
)
ENGINE = %s
ORDER BY (slot, source)
`, d.Table(TruncationTable)+d.on(), d.engine("version", TruncationTable, true))
}

// DeleteTruncations returns the mutation that removes every truncation of
// the slot bound to its one parameter.
func (d Database) DeleteTruncations() string {
	return fmt.Sprintf("ALTER TABLE %s DELETE WHERE slot = ?", d.Table(TruncationTable))
}

// ProgressColumnsAdded are the columns of the progress table that an
// earlier version made it without, with their definitions.
var ProgressColumnsAdded = [][2]string{{"halt_reason", "String DEFAULT ''"}, {"halt_error", "String DEFAULT ''"}}

// AddProgressColumn returns the statement that adds one of
// ProgressColumnsAdded to a progress table made before it existed.
func (d Database) AddProgressColumn(name, definition string) string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", d.Table(ProgressTable), Quote(name), definition)
}

// CreateProgressTable returns the DDL of the progress table. A row with a
// halt_reason records a daemon that stays stopped on an error a restart
// cannot fix.
func (d Database) CreateProgressTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    updated_us UInt64,
    oldest_unstored_us UInt64,
    halt_reason String DEFAULT '',
    halt_error String DEFAULT ''
)
ENGINE = %s
ORDER BY slot
`, d.Table(ProgressTable)+d.on(), d.engine("updated_us", ProgressTable, true))
}

// ChunkColumnsAdded are the columns of the chunk table that an earlier
// version made it without, with their definitions.
var ChunkColumnsAdded = [][2]string{{"whole_lsn", "UInt64 DEFAULT 0"}, {"target", "String DEFAULT ''"}}

// AddChunkColumn returns the statement that adds one of ChunkColumnsAdded
// to a chunk table made before it existed.
func (d Database) AddChunkColumn(name, definition string) string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", d.Table(ChunkTable), Quote(name), definition)
}

// CreateChunkTable returns the DDL of the chunk table: per slot, table and
// chunk the newest state, kept by merges (readers use FINAL).
func (d Database) CreateChunkTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    source String,
    chunk UInt32,
    relation String,
    first_page UInt32,
    end_page UInt32,
    filenode UInt32,
    load_lsn UInt64,
    lsn UInt64,
    xmin UInt64,
    rows UInt64,
    estimate UInt64,
    updated UInt64,
    whole_lsn UInt64 DEFAULT 0,
    target String DEFAULT ''
)
ENGINE = %s
ORDER BY (slot, source, chunk)
`, d.Table(ChunkTable)+d.on(), d.engine("updated", ChunkTable, true))
}

// DeleteChunks returns the mutation that removes every chunk of the slot
// bound to its first parameter and of the source table bound to its
// second, or of every table when the second is empty.
func (d Database) DeleteChunks() string {
	return fmt.Sprintf("ALTER TABLE %s DELETE WHERE slot = ? AND (source = ? OR ? = '')", d.Table(ChunkTable))
}

// DeleteLaterChunks returns the ALTER that removes the chunks of a source
// table numbered from a given one on (args: slot, source, first chunk).
func (d Database) DeleteLaterChunks() string {
	return fmt.Sprintf("ALTER TABLE %s DELETE WHERE slot = ? AND source = ? AND chunk >= ?", d.Table(ChunkTable))
}

// AddColumn returns the ALTER that adds column c to target after the
// column after, with def (a literal, see Literal) as default when not
// empty. It says IF NOT EXISTS where the server has it (minAddIfNotExists;
// a syntax has no probe but the version), so that an ALTER ON CLUSTER run
// again after a distributed DDL timeout succeeds on the nodes that already
// ran it; 18.16 refuses it as a syntax error.
func (d Database) AddColumn(target string, c mapping.Column, def, after string) []string {
	ifNotExists := ""
	if d.atLeast(minAddIfNotExists) {
		ifNotExists = "IF NOT EXISTS "
	}
	add := func(table string) string {
		s := fmt.Sprintf("ALTER TABLE %s%s ADD COLUMN %s%s %s", d.Table(table), d.on(), ifNotExists, Quote(c.Name), c.Type)
		if def != "" {
			s += " DEFAULT " + def
		}
		return s + " AFTER " + Quote(after)
	}
	if d.Cluster != "" {
		return []string{add(LocalName(target))} // then RecreateDistributed
	}
	return []string{add(target)}
}

// RecreateDistributed returns, on a cluster, the statements that give the
// Distributed table of target the columns of its local tables after they
// changed: ClickHouse refuses ALTER ON CLUSTER of a Distributed table over
// replicated shards, and it holds no rows (INSERTs are synchronous), so it
// is made again. Empty without a cluster.
func (d Database) RecreateDistributed(target string, orderBy []string) []string {
	if d.Cluster == "" {
		return nil
	}
	return []string{d.Drop(target), d.CreateDistributed(&mapping.Table{Target: target, OrderBy: orderBy})}
}

// ModifyColumn returns the ALTER that changes the type of column c.
func (d Database) ModifyColumn(target string, c mapping.Column) []string {
	modify := func(table string) string {
		return fmt.Sprintf("ALTER TABLE %s%s MODIFY COLUMN %s %s", d.Table(table), d.on(), Quote(c.Name), c.Type)
	}
	if d.Cluster != "" {
		return []string{modify(LocalName(target))} // then RecreateDistributed
	}
	return []string{modify(target)}
}

// Literal renders a mapped value of type t as a ClickHouse literal.
func Literal(v any, t mapping.Type) string {
	if t.Array {
		et := t
		et.Array = false
		rv := reflect.ValueOf(v)
		elems := make([]string, 0, rv.Len())
		for i := 0; i < rv.Len(); i++ {
			e := rv.Index(i)
			if e.Kind() == reflect.Pointer {
				if e.IsNil() {
					elems = append(elems, "NULL")
					continue
				}
				e = e.Elem()
			}
			elems = append(elems, Literal(e.Interface(), et))
		}
		return fmt.Sprintf("CAST([%s] AS %s)", strings.Join(elems, ", "), t)
	}
	switch x := v.(type) {
	case nil:
		return "NULL"
	case map[string]string, map[string]*string:
		// A Map from its keys and values (CAST of a tuple of two
		// arrays), in the order of the keys.
		str := mapping.Type{Kind: mapping.KindString}
		rv := reflect.ValueOf(x)
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		ks, vs := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			ks[i] = Literal(k, str)
			e := rv.MapIndex(reflect.ValueOf(k))
			if e.Kind() == reflect.Pointer {
				if e.IsNil() {
					vs[i] = "NULL"
					continue
				}
				e = e.Elem()
			}
			vs[i] = Literal(e.String(), str)
		}
		return fmt.Sprintf("CAST(([%s], [%s]) AS %s)", strings.Join(ks, ", "), strings.Join(vs, ", "), t)
	case decimal.Decimal:
		return fmt.Sprintf("CAST('%s' AS %s)", x.String(), t)
	case bool:
		if x {
			return "true"
		}
		return "false"
	case string:
		q := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(x) + "'"
		if t.Kind == mapping.KindJSON {
			return "CAST(" + q + " AS JSON)"
		}
		return q
	case time.Time:
		x = x.UTC()
		switch t.Kind {
		case mapping.KindDate:
			return fmt.Sprintf("toDate('%s')", x.Format("2006-01-02"))
		case mapping.KindDate32:
			return fmt.Sprintf("toDate32('%s')", x.Format("2006-01-02"))
		case mapping.KindDateTime64:
			return fmt.Sprintf("toDateTime64('%s', %d, 'UTC')", x.Format("2006-01-02 15:04:05.999999999"), t.Precision)
		}
		return fmt.Sprintf("toDateTime('%s', 'UTC')", x.Format("2006-01-02 15:04:05"))
	case float32:
		return formatFloat(float64(x), 32)
	case float64:
		return formatFloat(x, 64)
	case fmt.Stringer: // uuid.UUID
		return fmt.Sprintf("toUUID('%s')", x)
	}
	return fmt.Sprint(v)
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// CreateColumnTable returns the DDL of the column table.
func (d Database) CreateColumnTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    source String,
    columns Array(String),
    updated UInt64
)
ENGINE = %s
ORDER BY (slot, source)
`, d.Table(ColumnTable)+d.on(), d.engine("updated", ColumnTable, true))
}

// CreateRecoveryTable returns the DDL of the recovery table: per slot and
// history epoch the newest state of its recovery, kept by merges.
func (d Database) CreateRecoveryTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    epoch UInt32,
    reason String,
    load_lsn UInt64,
    started DateTime('UTC'),
    tables UInt32,
    tables_done UInt32,
    finished UInt8,
    updated UInt64
)
ENGINE = %s
ORDER BY (slot, epoch)
`, d.Table(RecoveryTable)+d.on(), d.engine("updated", RecoveryTable, true))
}

// CreateStorageTable returns the DDL of the storage table: per slot and
// source table the newest record (a JSON document), kept by merges.
func (d Database) CreateStorageTable() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    slot String,
    source String,
    storage String,
    updated UInt64
)
ENGINE = %s
ORDER BY (slot, source)
`, d.Table(StorageTable)+d.on(), d.engine("updated", StorageTable, true))
}

// CompactionPrefix starts the name of a compaction's table of the rows it
// removes (CreateCompactionTable), one per compaction.
const CompactionPrefix = "replicator_compact_"

// CreateCompactionTable returns the DDL of a compaction's table name: the
// rows of one target to remove, each by its key (KeyText of the target's
// sorting and partition keys) and version. On a cluster it is replicated
// on every node, so that each replica of the target's local tables
// removes the same rows.
func (d Database) CreateCompactionTable(name string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s
(
    key String,
    version UInt64
)
ENGINE = %s
ORDER BY (key, version)
`, d.Table(name)+d.on(), d.engine("", name, true))
}

// KeyText returns the expression that renders the place of a row of a
// target as one string: its sorting key, and its partition key when it has
// one, as a tuple in ClickHouse's text form (which quotes and escapes
// strings, so that no two places render alike).
func KeyText(sortingKey, partitionKey string) string {
	if partitionKey != "" {
		return "toString(tuple(" + sortingKey + ", " + partitionKey + "))"
	}
	return "toString(tuple(" + sortingKey + "))"
}

// FindCompaction returns the statement that writes to the compaction
// table rows every row of target (read through the Distributed table on a
// cluster) below version bound − 1 of each place (keyText) whose newest
// row by (_version, _seq) is a tombstone below it.
func (d Database) FindCompaction(rows, target, keyText string, bound uint64) string {
	return fmt.Sprintf(`INSERT INTO %[1]s (key, version)
SELECT _replicator_key, _version FROM (SELECT %[2]s AS _replicator_key, _version FROM %[3]s WHERE _version + 1 < %[4]d)
WHERE _replicator_key GLOBAL IN (
    SELECT %[2]s AS _replicator_key FROM %[3]s GROUP BY _replicator_key
    HAVING argMax(_deleted, (_version, _seq)) = 1 AND max(_version) + 1 < %[4]d)
GROUP BY _replicator_key, _version`, d.Table(rows), keyText, d.Table(target), bound)
}

// CompactionGuard returns the condition under which a compaction's
// mutation removes rows: the checkpoint it read (lsn, in history epoch
// epoch) is still stored, and neither a recovery nor a setup that starts
// over has begun for slot. A recovery records itself, in a later epoch,
// before it copies; a setup that starts over deletes the slot's
// checkpoints before it empties a target; both end in a later epoch; none
// of it is undone.
func (d Database) CompactionGuard(slot string, epoch uint32, lsn uint64) string {
	return fmt.Sprintf("(SELECT count() FROM %[1]s WHERE slot = %[3]s AND epoch > %[4]d) = 0 AND "+
		"(SELECT count() FROM %[2]s WHERE slot = %[3]s AND epoch > %[4]d) = 0 AND "+
		"(SELECT count() FROM %[2]s WHERE slot = %[3]s AND epoch = %[4]d AND lsn >= %[5]d) > 0",
		d.Table(RecoveryTable), d.Table(CheckpointTable), Literal(slot, mapping.Type{Kind: mapping.KindString}), epoch, lsn)
}

// Compact returns the mutation that removes from target's rows (on a
// cluster, its local tables) those that the compaction table rows names,
// by key and version, and that cond (e.g. a guard on the replicator's own
// tables) selects. The rows named never change during the mutation, which
// ClickHouse applies part by part, reading the subquery again for each.
func (d Database) Compact(target, keyText, rows, cond string) string {
	return fmt.Sprintf("ALTER TABLE %s%s DELETE WHERE (%s, %s) IN (SELECT key, version FROM %s) AND %s",
		d.Table(d.Storage(target)), d.on(), keyText, Quote(mapping.VersionColumn), d.Table(rows), cond)
}

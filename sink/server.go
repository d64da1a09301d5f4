package sink

import (
	"context"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// Server is what Open learns of the ClickHouse server by asking it: the
// facts that decide the DDL (ddl.Database) and the session settings
// (sessionSettings). Every gate is a probed fact where the server has one
// to ask (system.settings, system.databases, system.columns); only the
// version decides what has no probe (a type, a storage feature).
type Server struct {
	// Version is the server's (major, minor).
	Version [2]int
	// Settings are, of the settings the replicator sets or reads
	// (probedSettings), those the server has, with the values of the
	// user's profile (a session without settings).
	Settings map[string]string
	// Readonly is the profile's readonly setting ("0", "1" or "2").
	Readonly string
	// Engine is the engine of the configured database
	// (system.databases.engine), empty while it does not exist.
	Engine string
	// Comments: system.tables has a comment column (tables take a
	// COMMENT: 21.6 and later).
	Comments bool
}

// Cloud reports whether the server is ClickHouse Cloud: its session
// setting cloud_mode, which open-source servers have too (as 0), is 1
// there (clickhouse.com/docs/reference/settings/session-settings/cloud-mode,
// "Cloud default value: 1").
func (s Server) Cloud() bool { return s.Settings["cloud_mode"] == "1" }

// DB returns the renderer of the statements for database name on this
// server, placed on cluster (empty: none) with the ZooKeeper path pattern
// zkPath.
func (s Server) DB(name, cluster, zkPath string) ddl.Database {
	return ddl.Database{Name: name, Cluster: cluster, ZKPath: zkPath, Server: s.Version,
		Engine: s.Engine, Cloud: s.Cloud(), Comments: s.Comments}
}

// Caps returns the server's features that change the mapping: types,
// which have no probe but the version.
func (s Server) Caps() mapping.Caps {
	v := s.Version
	atLeast := func(major, minor int) bool { return v[0] > major || v[0] == major && v[1] >= minor }
	// Map is experimental before 21.8 (allow_experimental_map_type);
	// JSON is production ready from 25.3, where it needs no setting,
	// and takes its values as text (clickhouse-go's string
	// serialization, which servers read from 24.10).
	return mapping.Caps{DateTime64: atLeast(20, 1), Bool: atLeast(21, 12), Date32: atLeast(22, 8),
		Map: atLeast(21, 8), JSON: atLeast(25, 3), Server: v}
}

// probedSettings are the settings besides the guards whose presence or
// value Open reads: the cluster's, the per-query max_table_size_to_drop,
// Cloud's marker, and the one that lets a Replicated database take the
// ZooKeeper paths of the replicator's own tables.
var probedSettings = []string{"insert_quorum_parallel", "distributed_foreground_insert", "max_table_size_to_drop",
	"cloud_mode", replicatedArguments, "mutations_sync", "allow_nondeterministic_mutations"}

// replicatedArguments lets a table of a Replicated database name its
// ZooKeeper path (refused by default from 24.9).
const replicatedArguments = "database_replicated_allow_replicated_engine_arguments"

// checkPlacement returns an error naming the configuration key that the
// server's placement of tables refuses: a cluster on ClickHouse Cloud
// (it replicates and scales every table itself; there is no cluster to
// shard across), and a ZooKeeper path where the database gives its tables
// paths of its own (Replicated and Shared databases, Cloud).
func checkPlacement(s Server, opts config.ClickHouse) error {
	cloud := s.Cloud() || s.Engine == ddl.EngineShared
	var errs []error
	if cloud && opts.Cluster != "" {
		errs = append(errs, fmt.Errorf("clickhouse.cluster: the server is ClickHouse Cloud, which replicates every table itself "+
			"(SharedMergeTree) and has no cluster to shard across: remove clickhouse.cluster"))
	}
	if opts.ZooKeeperPath != "" && opts.ZooKeeperPath != ddl.DefaultZKPath && (cloud || s.Engine == ddl.EngineReplicated) {
		errs = append(errs, fmt.Errorf("clickhouse.zookeeper_path: database %s is %s, which gives its tables ZooKeeper paths of its own "+
			"(the server's default_replica_path): remove clickhouse.zookeeper_path", opts.Database, s.Engine))
	}
	return errors.Join(errs...)
}

// sessionSettings returns the settings of the replicator's sessions on
// server s with database db: the guards (pins), LowCardinality before 19,
// and on a cluster whose smallest shard has replicas replicas the
// settings of durable, read-your-writes INSERTs. It is pure: Open reads
// the facts and the golden files show what each server family gets.
func sessionSettings(s Server, db ddl.Database, replicas uint64) (clickhouse.Settings, error) {
	settings, err := pins(s.Settings, s.Readonly)
	if err != nil {
		return nil, err
	}
	if s.Version[0] < 19 {
		// LowCardinality is experimental before 19.0 and needs a session setting.
		settings["allow_experimental_low_cardinality_type"] = 1
	}
	if db.ExplicitPaths() {
		// The replicator's own tables are replicated on every node of the
		// cluster, not per shard: they name their path (refused by default
		// from 24.9, where the setting exists).
		if _, ok := s.Settings[replicatedArguments]; ok {
			settings[replicatedArguments] = 1
		}
	}
	if db.Cluster != "" && s.Readonly != "1" {
		// The shards run their part of a read through a Distributed table
		// as the cluster's user, whose profile may cut it short with a
		// limit the connected node's profile does not have: every limit
		// is lifted (the settings travel with the query).
		for _, c := range cutShort {
			for _, limit := range c.limits {
				if _, ok := s.Settings[limit]; ok {
					settings[limit] = 0
				}
			}
		}
	}
	if db.Cloud || db.Engine == ddl.EngineShared {
		// ClickHouse Cloud: each pooled connection may reach another
		// replica, which learns of a write's parts asynchronously; a read
		// waits for the writes acknowledged before it (the lookups of
		// earlier images, the checkpoint, the truncations).
		settings["select_sequential_consistency"] = 1
	}
	if db.Cluster == "" {
		return settings, nil
	}
	// An INSERT returns once every shard it touched stored its rows, on
	// as many replicas as the smallest shard has, and reads see only such
	// rows: a checkpoint saved after it covers durable data and survives
	// the loss of a replica. (Renamed in 23.11; the old name stays an
	// alias.)
	if _, ok := s.Settings["distributed_foreground_insert"]; ok {
		settings["distributed_foreground_insert"] = 1
	} else {
		settings["insert_distributed_sync"] = 1
	}
	if replicas > 1 {
		settings["insert_quorum"] = int(replicas)
		// A replica killed keeps its ZooKeeper session for a while: an
		// INSERT waiting for it fails after this, and is retried.
		settings["insert_quorum_timeout"] = 30000
		settings["select_sequential_consistency"] = 1
		// Parallel quorum inserts (the default where the setting exists)
		// leave sequentially consistent reads without their guarantee: a
		// read could miss an acknowledged write.
		if _, ok := s.Settings["insert_quorum_parallel"]; ok {
			settings["insert_quorum_parallel"] = 0
		}
	}
	return settings, nil
}

// databaseEngine reads the engine of database name, empty when it does
// not exist.
func databaseEngine(ctx context.Context, conn driver.Conn, name string) (string, error) {
	rows, err := conn.Query(ctx, "SELECT engine FROM system.databases WHERE name = ?", name)
	if err != nil {
		return "", fmt.Errorf("read the engine of database %s: %w", name, classify(err))
	}
	defer rows.Close()
	var engine string
	for rows.Next() {
		if err := rows.Scan(&engine); err != nil {
			return "", fmt.Errorf("read the engine of database %s: %w", name, classify(err))
		}
	}
	return engine, rows.Err()
}

// hasTableComments reads whether system.tables has a comment column. (It
// runs before the session pins settings: no aggregate, whose row a
// profile's empty_result_for_aggregation_by_empty_set would take away.)
func hasTableComments(ctx context.Context, conn driver.Conn) (bool, error) {
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = 'system' AND table = 'tables' AND name = 'comment'")
	if err != nil {
		return false, fmt.Errorf("read the columns of system.tables: %w", classify(err))
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// Server returns what Open (and CreateDatabase) learned of the server.
func (c *Client) Server() Server { return c.server }

// CreateDatabase makes the configured database when it does not exist,
// and reads the engine the server gave it (its default: Ordinary before
// 20.10, Atomic after, Shared or Replicated on ClickHouse Cloud; or the
// user's default_database_engine), which the statements rendered after it
// follow. It is called before any statement on the database's tables and
// before the Client is shared.
func (c *Client) CreateDatabase(ctx context.Context) error {
	db := c.DB()
	if err := c.Exec(ctx, db.Create()); err != nil {
		return fmt.Errorf("create ClickHouse database %s: %w", db.Name, err)
	}
	engine, err := databaseEngine(ctx, c.conn, c.database)
	if err != nil {
		return err
	}
	s := c.server
	s.Engine = engine
	opts := config.ClickHouse{Database: c.database, Cluster: c.cluster, ZooKeeperPath: c.zkPath}
	if err := checkPlacement(s, opts); err != nil {
		return err
	}
	if _, ok := s.Settings[replicatedArguments]; ok && s.DB(c.database, c.cluster, c.zkPath).ExplicitPaths() {
		// (Only a server whose default database engine is Replicated
		// makes one here: its session lacks the setting its own tables
		// need, which the next Open reads.)
		return fmt.Errorf("database %s was made as a Replicated database: run the command again", db.Name)
	}
	c.server.Engine = engine
	return nil
}

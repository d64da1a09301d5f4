package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/mapping"
)

// TLSConfig returns the TLS configuration of c, nil for plaintext.
func TLSConfig(c *config.TLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	t := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse.tls.ca_file: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("clickhouse.tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse.tls.cert_file, key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// Client is a connection to the target ClickHouse over the native protocol.
type Client struct {
	conn     driver.Conn
	database string
	version  driver.ServerVersion
	// cluster and zkPath place the tables on a cluster (see ddl.Database).
	cluster, zkPath string
	// user and its readonly setting, as the server reported it at Open.
	user, readonly string
	// dropAnySize: the server takes max_table_size_to_drop per query
	// (23.12+), which Exec sets to 0 for a DROP or TRUNCATE.
	dropAnySize bool
	// server is what Open learned of the server (the database engine
	// from CreateDatabase on, where it made the database).
	server Server
	// settings are the session settings of the connection.
	settings clickhouse.Settings
}

// Open connects to the configured server and probes it (Server): its
// version, the settings the replicator sets, the engine of the target
// database and whether tables take comments. It does not need the target
// database to exist (see CreateDatabase). It refuses a configuration the
// server's placement of tables cannot follow (checkPlacement).
func Open(ctx context.Context, opts config.ClickHouse) (*Client, error) {
	conn, err := open(ctx, opts, nil)
	if err != nil {
		return nil, err
	}
	v, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse server version: %w", classify(err))
	}
	// A settings profile with readonly = 1 refuses the session settings
	// below with READONLY, the code of a replica without its ZooKeeper
	// session too: read it first, on a connection without settings.
	var readonly string
	if err := conn.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'readonly'").Scan(&readonly); err != nil {
		conn.Close()
		return nil, fmt.Errorf("read the session's readonly setting: %w", classify(err))
	}
	settings, err := serverSettings(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	engine, err := databaseEngine(ctx, conn, opts.Database)
	if err != nil {
		conn.Close()
		return nil, err
	}
	comments, err := hasTableComments(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	server := Server{Version: [2]int{int(v.Version.Major), int(v.Version.Minor)}, Settings: settings, Readonly: readonly,
		Engine: engine, Comments: comments}
	if err := checkPlacement(server, opts); err != nil {
		conn.Close()
		return nil, err
	}
	var replicas uint64
	if opts.Cluster != "" {
		if replicas, err = clusterReplicas(ctx, conn, opts.Cluster); err != nil {
			conn.Close()
			return nil, err
		}
		// Distributed INSERTs reach the other shards as the user of the
		// cluster's remote_servers, whose READONLY would be retried.
		if err := remoteWritable(ctx, conn, opts.Cluster); err != nil {
			conn.Close()
			return nil, err
		}
	}
	zkPath := opts.ZooKeeperPath
	if zkPath == "" {
		zkPath = ddl.DefaultZKPath
	}
	session, err := sessionSettings(server, server.DB(opts.Database, opts.Cluster, zkPath), replicas)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse user %q: %w", userName(opts.Username), err)
	}
	if len(session) > 0 {
		if readonly == "1" {
			conn.Close()
			return nil, readonlyError(opts.Username, readonly)
		}
		conn.Close()
		if conn, err = open(ctx, opts, session); err != nil {
			return nil, err
		}
	}
	_, dropAny := settings["max_table_size_to_drop"]
	return &Client{conn: conn, database: opts.Database, version: *v, cluster: opts.Cluster, zkPath: zkPath,
		user: opts.Username, readonly: readonly, dropAnySize: dropAny, server: server, settings: session}, nil
}

// CheckWritable returns an error naming the setting to change when the
// session cannot write: a user whose settings profile sets readonly. (A
// READONLY error met later is then a replica without its ZooKeeper
// session, which failure's table retries.)
func (c *Client) CheckWritable() error {
	if c.readonly != "0" {
		return readonlyError(c.user, c.readonly)
	}
	return nil
}

func userName(user string) string {
	if user == "" {
		return "default"
	}
	return user
}

func readonlyError(user, readonly string) error {
	user = userName(user)
	return fmt.Errorf("clickhouse user %q has readonly = %s in its settings profile, and the replicator writes: "+
		"give clickhouse.username a profile with readonly = 0", user, readonly)
}

// remoteWritable returns an error when a node of the cluster sessions as
// a user whose profile sets readonly: the user of remote_servers, whom
// Distributed INSERTs reach the shards as.
func remoteWritable(ctx context.Context, conn driver.Conn, cluster string) error {
	var readonly string
	err := conn.QueryRow(ctx, "SELECT max(value) FROM cluster(?, system.settings) WHERE name = 'readonly'", cluster).Scan(&readonly)
	if err != nil {
		return fmt.Errorf("read the readonly setting of the nodes of cluster %s: %w", cluster, classify(err))
	}
	if readonly != "0" {
		return fmt.Errorf("the nodes of clickhouse.cluster %q take the replicator's writes as a user with readonly = %s "+
			"(the <user> of the cluster in remote_servers, default when none is named): give that user a profile with readonly = 0",
			cluster, readonly)
	}
	return nil
}

// serverSettings reads, of the settings the replicator sets or reads
// (guards and probedSettings), those the server has, with their values in the session
// of a connection without settings: the user's profile's.
func serverSettings(ctx context.Context, conn driver.Conn) (map[string]string, error) {
	names := append(slices.Clone(probedSettings), guardedNames()...)
	// One row of two arrays: this session pins nothing yet, and a
	// profile's limit would cut a result of a row per setting short (its
	// offset takes the one row away: refused below).
	rows, err := conn.Query(ctx, "SELECT groupArray(name), groupArray(value) FROM system.settings WHERE has(?, name)", names)
	if err != nil {
		return nil, fmt.Errorf("read the server's settings: %w", classify(err))
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read the server's settings: %w", classify(err))
		}
		return nil, fmt.Errorf("read the server's settings: the query returned no row: the user's settings profile sets offset " +
			"(or empty_result_for_aggregation_by_empty_set): give clickhouse.username a profile without it")
	}
	var keys, values []string
	if err := rows.Scan(&keys, &values); err != nil {
		return nil, fmt.Errorf("read the server's settings: %w", classify(err))
	}
	out := make(map[string]string, len(keys))
	for i, k := range keys {
		out[k] = values[i]
	}
	return out, rows.Err()
}

// SyncReplica waits, on a cluster, until the connected node's replica of
// one of the replicator's own tables (replicated on every node) has
// fetched every part its replication log names: a read after it sees every
// write acknowledged before it. It does nothing without a cluster. A
// replica that cannot catch up within the timeout is a transient error.
func (c *Client) SyncReplica(ctx context.Context, table string) error {
	if c.cluster == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := c.conn.Exec(ctx, "SYSTEM SYNC REPLICA "+c.DB().Table(table)); err != nil {
		var exc *clickhouse.Exception
		if errors.As(err, &exc) && proto.Error(exc.Code) == proto.ErrAccessDenied {
			return fmt.Errorf("sync the replica of %s: %w (run GRANT SYSTEM SYNC REPLICA ON %s.* TO the clickhouse.username user)",
				table, err, ddl.Quote(c.database))
		}
		err = classify(err)
		if ctx.Err() != nil {
			err = failure.ClickHouse(int32(proto.ErrTimeoutExceeded)).Apply(fmt.Errorf("%w: %w", ErrUnavailable, err))
		}
		return fmt.Errorf("sync the replica of %s: %w", table, err)
	}
	return nil
}

// syncTimeout bounds SyncReplica.
const syncTimeout = time.Minute

// clusterReplicas returns the replicas of the cluster's smallest shard, as
// the server knows the cluster; an error when it does not.
func clusterReplicas(ctx context.Context, conn driver.Conn, cluster string) (uint64, error) {
	var shards, replicas uint64
	err := conn.QueryRow(ctx, "SELECT count(), min(n) FROM (SELECT shard_num, count() AS n FROM system.clusters "+
		"WHERE cluster = ? GROUP BY shard_num)", cluster).Scan(&shards, &replicas)
	if err != nil {
		return 0, fmt.Errorf("read cluster %s: %w", cluster, classify(err))
	}
	if shards == 0 {
		return 0, fmt.Errorf("clickhouse.cluster: the server has no cluster %q in its remote_servers", cluster)
	}
	return replicas, nil
}

func open(ctx context.Context, opts config.ClickHouse, settings clickhouse.Settings) (driver.Conn, error) {
	tlsConfig, err := TLSConfig(opts.TLS)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:             opts.Addr,
		TLS:              tlsConfig,
		Protocol:         clickhouse.Native,
		Auth:             clickhouse.Auth{Username: opts.Username, Password: opts.Password},
		Settings:         settings,
		DialTimeout:      5 * time.Second,
		ReadTimeout:      5 * time.Minute,
		MaxOpenConns:     4,
		MaxIdleConns:     2,
		ConnMaxLifetime:  time.Hour,
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:       clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "replicator", Version: "1"}}},
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", classify(err))
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to clickhouse %s: %w", strings.Join(opts.Addr, ","), classify(err))
	}
	return conn, nil
}

// Close closes the connection. It is safe to call more than once.
func (c *Client) Close() error {
	if c == nil || c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// DB renders the statements for the target database. A nil Client has no
// database; a Writer built on it buffers rows but cannot flush them.
func (c *Client) DB() ddl.Database {
	if c == nil {
		return ddl.Database{}
	}
	return c.server.DB(c.database, c.cluster, c.zkPath)
}

// Version returns the server version, e.g. "18.16.1".
func (c *Client) Version() string {
	v := c.version.Version
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
}

// Caps returns the server features that change the mapping.
func (c *Client) Caps() mapping.Caps { return c.server.Caps() }

// Exec runs a statement.
func (c *Client) Exec(ctx context.Context, sql string, args ...any) error {
	if c.dropAnySize && (strings.HasPrefix(sql, "DROP TABLE ") || strings.HasPrefix(sql, "TRUNCATE TABLE ")) {
		// A table of any size: the replicator drops copies it replaced and
		// empties a target it copies again.
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_table_size_to_drop": 0}))
	}
	if err := c.conn.Exec(ctx, sql, args...); err != nil {
		return classify(err)
	}
	return nil
}

// ExecWith runs a statement with per-query settings (each one the server
// has: callers probe them).
func (c *Client) ExecWith(ctx context.Context, settings map[string]any, sql string, args ...any) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings(settings)))
	if err := c.conn.Exec(ctx, sql, args...); err != nil {
		return classify(err)
	}
	return nil
}

// Insert writes rows with one INSERT; stmt names the columns
// ("INSERT INTO t (a, b)"). It returns after ClickHouse acknowledged it.
func (c *Client) Insert(ctx context.Context, stmt string, rows ...[]any) error {
	return afterQuorum(ctx, func() error {
		batch, err := c.conn.PrepareBatch(ctx, stmt)
		if err != nil {
			return classify(err)
		}
		for _, r := range rows {
			if err := batch.Append(r...); err != nil {
				batch.Abort()
				return err
			}
		}
		return classify(batch.Send())
	})
}

// afterQuorum runs insert again while ClickHouse refuses it because
// another quorum INSERT into the table is still waiting for its replicas
// (UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE, which writes nothing): parallel
// copy workers and the writers of the replicator's own tables meet it
// among themselves. It gives up after quorumWait, with that error: a
// replica is down.
func afterQuorum(ctx context.Context, insert func() error) error {
	wait := 20 * time.Millisecond
	deadline := time.Now().Add(quorumWait)
	for {
		err := insert()
		var exc *clickhouse.Exception
		if !errors.As(err, &exc) || proto.Error(exc.Code) != proto.ErrUnsatisfiedQuorumForPreviousWrite || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// quorumWait bounds afterQuorum: as long as a quorum INSERT waits for its
// replicas (insert_quorum_timeout).
const quorumWait = 30 * time.Second

// targetInsert returns ctx with the settings of an INSERT into a target:
// no insert deduplication. (clickhouse.WithSettings replaces the settings
// a context carries: ctx must carry none.) Replicated tables (a cluster, ClickHouse Cloud,
// or a MergeTree with non_replicated_deduplication_window) drop a block
// equal to an earlier one; a replay that splits a transaction into other
// INSERTs could then have its last block of a key dropped while an
// earlier, different block of the same version lands after it, and merges
// would keep that older image. Duplicate rows are harmless under
// ReplacingMergeTree.
func targetInsert(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplicate": 0}))
}

// InsertColumns writes rows of t given column by column, the mapped
// columns followed by the meta columns, each a slice of the column's Go
// type (see mapping.Block.Columns), with one INSERT. It returns only after
// ClickHouse acknowledged it.
func (c *Client) InsertColumns(ctx context.Context, t *mapping.Table, cols []any) error {
	return afterQuorum(ctx, func() error {
		batch, err := c.conn.PrepareBatch(targetInsert(ctx), c.DB().Insert(t.Target, t.ColumnNames()))
		if err != nil {
			return fmt.Errorf("prepare insert into %s: %w", t.Target, classify(err))
		}
		names := t.ColumnNames()
		for i, col := range cols {
			if err := batch.Column(i).Append(col); err != nil {
				batch.Abort()
				return fmt.Errorf("insert into %s column %s: %w", t.Target, names[i], err)
			}
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("insert into %s: %w", t.Target, classify(err))
		}
		return nil
	})
}

// Query runs a query and returns all rows, each as a slice of typed values.
func (c *Client) Query(ctx context.Context, sql string, args ...any) ([][]any, error) {
	rows, err := c.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]any
	for rows.Next() {
		dest := make([]any, len(types))
		for i, t := range types {
			dest[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, classify(err)
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			row[i] = reflect.ValueOf(d).Elem().Interface()
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(err)
	}
	return out, nil
}

// ErrUnavailable marks errors after which a reconnect may succeed.
var ErrUnavailable = errors.New("clickhouse unavailable")

// IsRetryable reports whether err is a transient ClickHouse error.
func IsRetryable(err error) bool { return errors.Is(err, ErrUnavailable) }

// classify marks err by the action failure's table gives it: transient
// errors wrap ErrUnavailable in a *failure.Transient, configuration errors
// say what to change.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var netErr net.Error
	var exc *clickhouse.Exception
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	var authority x509.UnknownAuthorityError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &verify), errors.As(err, &hostname), errors.As(err, &authority):
		// A certificate the configuration does not trust: retrying cannot help.
		return fmt.Errorf("clickhouse TLS: the server's certificate is not trusted (check clickhouse.tls.ca_file and server_name): %w", err)
	case errors.As(err, &record):
		return fmt.Errorf("clickhouse TLS: the server did not answer in TLS (is clickhouse.addr its tcp_port_secure?): %w", err)
	case errors.As(err, &exc):
		rule := failure.ClickHouse(exc.Code)
		if rule.Action == failure.Retry {
			return rule.Apply(fmt.Errorf("%w: %w", ErrUnavailable, err))
		}
		return rule.Apply(err)
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, clickhouse.ErrAcquireConnTimeout):
		return failure.Lost("clickhouse").Apply(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	return err
}

// InsertRows writes rows of t (see mapping.Table.NewRow) into its target
// with one INSERT, without insert deduplication. It returns only after
// ClickHouse acknowledged it.
func (c *Client) InsertRows(ctx context.Context, t *mapping.Table, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	return afterQuorum(ctx, func() error {
		batch, err := c.conn.PrepareBatch(targetInsert(ctx), c.DB().Insert(t.Target, t.ColumnNames()))
		if err != nil {
			return fmt.Errorf("prepare insert into %s: %w", t.Target, classify(err))
		}
		for _, r := range rows {
			if err := batch.Append(r...); err != nil {
				batch.Abort()
				return fmt.Errorf("insert into %s: %w", t.Target, err)
			}
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("insert into %s: %w", t.Target, classify(err))
		}
		return nil
	})
}

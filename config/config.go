// Package config loads and validates the replicator's HCL configuration.
//
// Load decodes a file over Default, applies environment overrides, and
// Validate reports every problem at once, each naming its key. It never
// connects to a server.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/replicator/replicator/mapping"
)

// Config is the whole configuration.
type Config struct {
	Postgres   Postgres
	ClickHouse ClickHouse
	Tables     []Table
	Batch      Batch
	Stream     Stream
	Load       LoadOptions
	Log        Log
	Monitor    Monitor
	Compaction Compaction
}

// Compaction controls the daemon's scheduled removal of deleted rows (see
// package compact).
type Compaction struct {
	// Interval is how often the daemon compacts every table; zero
	// disables it (`replicator compact` still runs by hand).
	Interval time.Duration
	// Wait bounds the wait for ClickHouse to apply a compaction's
	// mutation; one still running then is left to finish.
	Wait time.Duration
}

// LoadOptions control the copy of existing rows (setup's initial copy and every
// later copy of a table).
type LoadOptions struct {
	// Workers is how many chunks are copied at once, each over its own
	// Postgres and ClickHouse connection.
	Workers int
	// ChunkSize is the heap size of a chunk: the unit of parallel work and
	// of resumption.
	ChunkSize uint64
}

// Monitor controls the daemon's HTTP endpoint, heartbeats and WAL safety.
type Monitor struct {
	// Listen is the address of /metrics, /healthz and /readyz; empty disables it.
	Listen string
	// ReadyMaxLag is the lag above which /readyz fails.
	ReadyMaxLag time.Duration
	// HeartbeatInterval is how often pg_logical_emit_message heartbeats are
	// written; zero disables them.
	HeartbeatInterval time.Duration
	// RetainedWALWarning is the WAL retained by the slot above which a
	// warning is logged each minute.
	RetainedWALWarning uint64
	// RewriteCheckInterval is how often the daemon compares the storage of
	// each table (attribute numbers, types, files) with its record, to
	// notice rewrites that no Relation message announces.
	RewriteCheckInterval time.Duration
	// VerifyInterval is how often the daemon starts a pass of continuous
	// verification (a sample of key ranges of each table); zero disables it.
	VerifyInterval time.Duration
	// VerifyRate bounds the rows per second continuous verification reads
	// from each side.
	VerifyRate int
	// VerifySampleRows is the rows of each table one pass compares, in key
	// ranges taken in turn from where the previous pass stopped.
	VerifySampleRows int
}

// validateVerify returns the problems of the continuous verification keys.
func (m Monitor) validateVerify() []string {
	var p []string
	if m.VerifyInterval < 0 {
		p = append(p, fmt.Sprintf("monitor.verify_interval: must be positive, or 0s to turn continuous verification off, got %s", m.VerifyInterval))
	}
	if m.VerifyRate < 1 {
		p = append(p, fmt.Sprintf("monitor.verify_rate: must be at least 1 row per second, got %d", m.VerifyRate))
	}
	if m.VerifySampleRows < 1 {
		p = append(p, fmt.Sprintf("monitor.verify_sample_rows: must be at least 1, got %d", m.VerifySampleRows))
	}
	return p
}

// Postgres holds the source connection and replication objects.
type Postgres struct {
	// DSN is a libpq connection string or URL. It may hold a password.
	DSN         string
	Slot        string
	Publication string
	// Recovery is what the daemon does when the server does not continue
	// the checkpoint's history (a failover that lost transactions, a
	// restore, a lost slot): RecoveryAuto copies every table again online,
	// RecoveryManual stops with the command that does it.
	Recovery string
}

// Recovery modes (Postgres.Recovery).
const (
	RecoveryAuto   = "auto"
	RecoveryManual = "manual"
)

// ClickHouse holds the target connection.
type ClickHouse struct {
	Addr     []string
	Database string
	Username string
	// Password is the password, or the first line of PasswordFile, read
	// when the configuration is loaded. It never appears in logs or errors.
	// A relative PasswordFile is read from $CREDENTIALS_DIRECTORY when
	// systemd set it (a credential of the unit), else from the working
	// directory.
	Password     string
	PasswordFile string
	// TLS, when set, connects over TLS (the server's tcp_port_secure);
	// there is no fallback to plaintext.
	TLS *TLS
	// Cluster names a cluster of the server's remote_servers: targets are
	// replicated and sharded across it (see ddl.Database); ZooKeeperPath
	// is the ZooKeeper path pattern of a target's local table.
	Cluster       string
	ZooKeeperPath string
}

// TLS configures the native protocol over TLS.
type TLS struct {
	// CAFile holds the PEM certificates that verify the server's (empty:
	// the system's roots).
	CAFile string
	// CertFile and KeyFile hold a client certificate and its key (PEM),
	// for servers that ask for one.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry (empty:
	// the host of the address).
	ServerName string
	// InsecureSkipVerify accepts any certificate: for tests only.
	InsecureSkipVerify bool
}

// Table maps one Postgres table.
type Table struct {
	// Name is the qualified source name "schema.table".
	Name        string
	Target      string
	OrderBy     []string
	PartitionBy string
	Columns     map[string]mapping.ColumnSpec
	// Exclude names Postgres columns that are not replicated.
	Exclude []string
	// Storage holds the target's indexes, projections and TTL.
	Storage mapping.Storage
	// Mode is "latest" (the default: one row per key) or "history" (a row
	// per change); Ignore names "delete" and "truncate" when those are
	// not written.
	Mode   string
	Ignore []string
	// UniqueKey names order_by columns that are unique in Postgres by
	// themselves, when the replica identity has more columns than
	// order_by (see mapping.Table.CheckUnique).
	UniqueKey []string
	// SchemaChanges is "apply" (the default: a column added or widened in
	// Postgres is added or widened in ClickHouse) or "stop".
	SchemaChanges string
}

// Batch controls when buffered changes are flushed to ClickHouse.
type Batch struct {
	MaxRows int
	// MaxBytes bounds the memory of the buffered rows: a flush starts when
	// they reach it.
	MaxBytes uint64
	MaxDelay time.Duration
	// MinInterval is the least time between the starts of two flushes of
	// complete transactions: a flush starts as soon as a transaction is
	// complete and the previous flush has finished, but not sooner, so
	// that ClickHouse gets few enough parts to merge.
	MinInterval time.Duration
}

// Stream controls how in-progress transactions are received.
type Stream struct {
	// Enabled asks Postgres (14 and later) to send the changes of a large
	// transaction while it runs (pgoutput protocol version 2), so that it
	// is written soon after its commit.
	Enabled bool
	// SpillDir holds the streamed transactions that do not fit in Memory
	// until they commit or abort; SpillLimit bounds the files there.
	// The daemon checks at start that it can write there (the default:
	// $STATE_DIRECTORY/spill under systemd, else $TMPDIR/replicator-spill).
	SpillDir   string
	SpillLimit uint64
	Memory     uint64
}

// Log controls logging.
type Log struct {
	Level  string
	Format string
}

// Default returns the configuration used for every key the file omits.
func Default() Config {
	return Config{
		Postgres:   Postgres{Slot: "replicator", Publication: "replicator", Recovery: RecoveryAuto},
		ClickHouse: ClickHouse{Addr: []string{"127.0.0.1:9000"}, Database: "default", Username: "default"},
		Batch:      Batch{MaxRows: 50000, MaxBytes: 64 << 20, MaxDelay: time.Second, MinInterval: 200 * time.Millisecond},
		Stream: Stream{Enabled: true, SpillDir: filepath.Join(os.TempDir(), "replicator-spill"), SpillLimit: 10 << 30,
			Memory: 32 << 20},
		Load: LoadOptions{Workers: 3, ChunkSize: 16 << 20},
		Log:  Log{Level: "info", Format: "text"},
		Monitor: Monitor{Listen: "127.0.0.1:9721", ReadyMaxLag: 30 * time.Second, HeartbeatInterval: 10 * time.Second,
			RetainedWALWarning: 10 << 30, RewriteCheckInterval: time.Minute, VerifyRate: 10000, VerifySampleRows: 100000},
		Compaction: Compaction{Wait: 10 * time.Minute},
	}
}

// Spec returns the mapping spec of a table.
func (t Table) Spec() mapping.TableSpec {
	return mapping.TableSpec{Source: t.Name, Target: t.Target, OrderBy: t.OrderBy, PartitionBy: t.PartitionBy, Columns: t.Columns,
		Exclude: t.Exclude, Storage: t.Storage, Mode: t.Mode, Ignore: t.Ignore, UniqueKey: t.UniqueKey}
}

// SourceParts splits the table name into schema and table.
func (t Table) SourceParts() (schema, name string) {
	schema, name, _ = strings.Cut(t.Name, ".")
	return schema, name
}

// file mirrors the HCL syntax; pointers and optional keys let Load tell an
// omitted key from a zero value.
type file struct {
	Postgres   *pgBlock     `hcl:"postgres,block"`
	ClickHouse *chBlock     `hcl:"clickhouse,block"`
	Tables     []tableBlk   `hcl:"table,block"`
	Batch      *batchBlock  `hcl:"batch,block"`
	Stream     *streamBlock `hcl:"stream,block"`
	Load       *loadBlock   `hcl:"load,block"`
	Log        *logBlock    `hcl:"log,block"`
	Monitor    *monBlock    `hcl:"monitor,block"`
	Compaction *compBlock   `hcl:"compaction,block"`
}

type compBlock struct {
	Interval *string `hcl:"interval,optional"`
	Wait     *string `hcl:"wait,optional"`
}

type monBlock struct {
	Listen             *string `hcl:"listen,optional"`
	ReadyMaxLag        *string `hcl:"ready_max_lag,optional"`
	HeartbeatInterval  *string `hcl:"heartbeat_interval,optional"`
	RetainedWALWarning *string `hcl:"retained_wal_warning,optional"`
	RewriteCheck       *string `hcl:"rewrite_check_interval,optional"`
	VerifyInterval     *string `hcl:"verify_interval,optional"`
	VerifyRate         *int    `hcl:"verify_rate,optional"`
	VerifySampleRows   *int    `hcl:"verify_sample_rows,optional"`
}

type pgBlock struct {
	DSN         *string `hcl:"dsn,optional"`
	Slot        *string `hcl:"slot,optional"`
	Publication *string `hcl:"publication,optional"`
	Recovery    *string `hcl:"recovery,optional"`
}

type chBlock struct {
	Addr         *[]string `hcl:"addr,optional"`
	Database     *string   `hcl:"database,optional"`
	Username     *string   `hcl:"username,optional"`
	Password     *string   `hcl:"password,optional"`
	PasswordFile *string   `hcl:"password_file,optional"`
	TLS          *tlsBlock `hcl:"tls,block"`
	Cluster      *string   `hcl:"cluster,optional"`
	ZKPath       *string   `hcl:"zookeeper_path,optional"`
}

type tlsBlock struct {
	CAFile             *string `hcl:"ca_file,optional"`
	CertFile           *string `hcl:"cert_file,optional"`
	KeyFile            *string `hcl:"key_file,optional"`
	ServerName         *string `hcl:"server_name,optional"`
	InsecureSkipVerify *bool   `hcl:"insecure_skip_verify,optional"`
}

type tableBlk struct {
	Name          string          `hcl:"name,label"`
	Target        *string         `hcl:"target,optional"`
	OrderBy       []string        `hcl:"order_by"`
	PartitionBy   *string         `hcl:"partition_by,optional"`
	SchemaChanges *string         `hcl:"schema_changes,optional"`
	Exclude       []string        `hcl:"exclude,optional"`
	TTL           *string         `hcl:"ttl,optional"`
	EngineDeletes *bool           `hcl:"engine_is_deleted,optional"`
	Mode          *string         `hcl:"mode,optional"`
	Ignore        []string        `hcl:"ignore,optional"`
	UniqueKey     []string        `hcl:"unique_key,optional"`
	Columns       []columnBlk     `hcl:"column,block"`
	Indexes       []indexBlk      `hcl:"index,block"`
	Projections   []projectionBlk `hcl:"projection,block"`
}

type indexBlk struct {
	Name        string `hcl:"name,label"`
	Expression  string `hcl:"expression"`
	Type        string `hcl:"type"`
	Granularity *int   `hcl:"granularity,optional"`
}

type projectionBlk struct {
	Name  string `hcl:"name,label"`
	Query string `hcl:"query"`
}

type columnBlk struct {
	Name      string  `hcl:"name,label"`
	Rename    *string `hcl:"name,optional"`
	Type      *string `hcl:"type,optional"`
	Transform *string `hcl:"transform,optional"`
	Nullable  *bool   `hcl:"nullable,optional"`
	Invalid   *string `hcl:"invalid,optional"`
}

type batchBlock struct {
	MaxRows     *int    `hcl:"max_rows,optional"`
	MaxBytes    *string `hcl:"max_bytes,optional"`
	MaxDelay    *string `hcl:"max_delay,optional"`
	MinInterval *string `hcl:"min_interval,optional"`
}

type streamBlock struct {
	Enabled    *bool   `hcl:"enabled,optional"`
	SpillDir   *string `hcl:"spill_dir,optional"`
	SpillLimit *string `hcl:"spill_limit,optional"`
	Memory     *string `hcl:"memory,optional"`
}

type loadBlock struct {
	Workers   *int    `hcl:"workers,optional"`
	ChunkSize *string `hcl:"chunk_size,optional"`
}

// apply sets the keys of the load block that the file names.
func (b *loadBlock) apply(l *LoadOptions, problems *[]string) {
	if b == nil {
		return
	}
	if b.Workers != nil {
		l.Workers = *b.Workers
	}
	if b.ChunkSize != nil {
		n, err := ParseSize(*b.ChunkSize)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("load.chunk_size: %v", err))
		} else {
			l.ChunkSize = n
		}
	}
}

// validate returns the problems of the load settings.
func (l LoadOptions) validate() []string {
	var p []string
	if l.Workers < 1 || l.Workers > 64 {
		p = append(p, fmt.Sprintf("load.workers: must be 1..64, got %d", l.Workers))
	}
	if l.ChunkSize < 1<<20 {
		p = append(p, fmt.Sprintf("load.chunk_size: must be at least 1MiB, got %d bytes", l.ChunkSize))
	}
	return p
}

type logBlock struct {
	Level  *string `hcl:"level,optional"`
	Format *string `hcl:"format,optional"`
}

// Environment variables that override connection settings.
const (
	EnvPostgresDSN        = "REPLICATOR_POSTGRES_DSN"
	EnvClickHouseAddr     = "REPLICATOR_CLICKHOUSE_ADDR"
	EnvClickHouseDatabase = "REPLICATOR_CLICKHOUSE_DATABASE"
	EnvClickHouseUsername = "REPLICATOR_CLICKHOUSE_USERNAME"
	EnvClickHousePassword = "REPLICATOR_CLICKHOUSE_PASSWORD"
	EnvLogLevel           = "REPLICATOR_LOG_LEVEL"
)

// UnknownEnv returns the names of the REPLICATOR_ variables of environ
// ("NAME=value" entries) that neither the configuration nor the commands
// read (known lists those the commands read themselves): a misspelled one
// would be ignored without a word.
func UnknownEnv(environ []string, known ...string) []string {
	read := []string{EnvPostgresDSN, EnvClickHouseAddr, EnvClickHouseDatabase, EnvClickHouseUsername, EnvClickHousePassword, EnvLogLevel}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "REPLICATOR_") && !slices.Contains(read, name) && !slices.Contains(known, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Variables systemd sets for a service. A relative
// clickhouse.password_file names a credential of the unit (LoadCredential=)
// in $CREDENTIALS_DIRECTORY, so that one configuration serves the daemon's
// unit and the setup unit, whose credential directories differ. The
// default stream.spill_dir is $STATE_DIRECTORY/spill (StateDirectory=)
// when systemd set it.
const (
	EnvCredentialsDirectory = "CREDENTIALS_DIRECTORY"
	EnvStateDirectory       = "STATE_DIRECTORY"
)

// Load reads, decodes and validates the file at path. Environment overrides
// are read with getenv (os.Getenv when nil).
func Load(path string, getenv func(string) string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, src, getenv)
}

// Parse decodes and validates configuration source; filename is used in messages.
func Parse(filename string, src []byte, getenv func(string) string) (Config, error) {
	cfg, _, err := parse(filename, src, getenv)
	return cfg, err
}

// parse is Parse that also returns the source range of each key the file
// sets.
func parse(filename string, src []byte, getenv func(string) string) (Config, []keyRange, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.HasSuffix(filename, ".json") || strings.HasPrefix(strings.TrimSpace(string(src)), "{") {
		return Config{}, nil, &Error{Problems: []string{filename + ": the configuration is read in HCL's native syntax " +
			"(see config.example.hcl); JSON is not read"}}
	}
	cfg := Default()
	// Under systemd with StateDirectory=, spill into the state directory
	// rather than a (possibly private, memory-backed) /tmp.
	if d, _, _ := strings.Cut(getenv(EnvStateDirectory), ":"); d != "" {
		cfg.Stream.SpillDir = filepath.Join(d, "spill")
	}
	f, keys, diags := decode(filename, src, getenv)
	var problems []string
	if f != nil {
		f.apply(&cfg, &problems)
	}
	if diags.HasErrors() {
		// Report syntax and key errors with what apply found; validating
		// the rest would flag keys that failed to decode.
		return Config{}, keys, &Error{Problems: append(diagProblems(diags, keys), problems...)}
	}
	applyEnv(&cfg, getenv)
	if f := cfg.ClickHouse.PasswordFile; f != "" && !filepath.IsAbs(f) {
		if d := getenv(EnvCredentialsDirectory); d != "" {
			cfg.ClickHouse.PasswordFile = filepath.Join(d, f)
		}
	}
	problems = append(problems, fromEnv(cfg.validate(), getenv)...)
	if len(problems) > 0 {
		return Config{}, keys, &Error{Problems: problems}
	}
	return cfg, keys, nil
}

// Error lists every problem found in a configuration.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "config: " + e.Problems[0]
	}
	return "config: " + fmt.Sprint(len(e.Problems)) + " problems:\n  " + strings.Join(e.Problems, "\n  ")
}

// keyRange is the source range of one attribute and its key path.
type keyRange struct {
	rng  hcl.Range
	path string
}

func decode(filename string, src []byte, getenv func(string) string) (*file, []keyRange, hcl.Diagnostics) {
	parsed, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, nil, diags
	}
	var keys []keyRange
	if body, ok := parsed.Body.(*hclsyntax.Body); ok {
		keys = collectKeys(body, "", keys)
	}
	ctx := &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc(getenv)}}
	var f file
	diags = append(diags, gohcl.DecodeBody(parsed.Body, ctx, &f)...)
	return &f, keys, diags
}

// collectKeys lists every attribute with its key path, e.g.
// `table "public.events".column "id".type`.
func collectKeys(body *hclsyntax.Body, prefix string, out []keyRange) []keyRange {
	for name, attr := range body.Attributes {
		out = append(out, keyRange{rng: attr.SrcRange, path: prefix + name})
	}
	for _, b := range body.Blocks {
		p := prefix + b.Type
		for _, l := range b.Labels {
			p += fmt.Sprintf(" %q", l)
		}
		out = collectKeys(b.Body, p+".", out)
	}
	return out
}

func envFunc(getenv func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "name", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			v := getenv(name)
			if v == "" {
				return cty.NilVal, fmt.Errorf("environment variable %s is not set", name)
			}
			return cty.StringVal(v), nil
		},
	})
}

func diagProblems(diags hcl.Diagnostics, keys []keyRange) []string {
	var out []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		if strings.Contains(d.Detail, "value must be known") {
			// The follow-on of an error of the same expression (a
			// function that failed, a variable), which is reported.
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			for _, k := range keys {
				if k.rng.Filename == d.Subject.Filename && k.rng.ContainsOffset(d.Subject.Start.Byte) {
					msg = k.path + ": " + msg
					break
				}
			}
			msg = d.Subject.String() + ": " + msg
		}
		out = append(out, msg)
	}
	return out
}

func (f *file) apply(cfg *Config, problems *[]string) {
	if p := f.Postgres; p != nil {
		setString(&cfg.Postgres.DSN, p.DSN)
		setString(&cfg.Postgres.Slot, p.Slot)
		setString(&cfg.Postgres.Publication, p.Publication)
		setString(&cfg.Postgres.Recovery, p.Recovery)
	}
	if c := f.ClickHouse; c != nil {
		if c.Addr != nil {
			cfg.ClickHouse.Addr = *c.Addr
		}
		setString(&cfg.ClickHouse.Database, c.Database)
		setString(&cfg.ClickHouse.Username, c.Username)
		setString(&cfg.ClickHouse.Password, c.Password)
		setString(&cfg.ClickHouse.PasswordFile, c.PasswordFile)
		setString(&cfg.ClickHouse.Cluster, c.Cluster)
		setString(&cfg.ClickHouse.ZooKeeperPath, c.ZKPath)
		if t := c.TLS; t != nil {
			cfg.ClickHouse.TLS = &TLS{}
			setString(&cfg.ClickHouse.TLS.CAFile, t.CAFile)
			setString(&cfg.ClickHouse.TLS.CertFile, t.CertFile)
			setString(&cfg.ClickHouse.TLS.KeyFile, t.KeyFile)
			setString(&cfg.ClickHouse.TLS.ServerName, t.ServerName)
			if t.InsecureSkipVerify != nil {
				cfg.ClickHouse.TLS.InsecureSkipVerify = *t.InsecureSkipVerify
			}
		}
	}
	if b := f.Batch; b != nil {
		if b.MaxRows != nil {
			cfg.Batch.MaxRows = *b.MaxRows
		}
		if b.MaxBytes != nil {
			n, err := ParseSize(*b.MaxBytes)
			if err != nil {
				*problems = append(*problems, fmt.Sprintf("batch.max_bytes: %v", err))
			} else {
				cfg.Batch.MaxBytes = n
			}
		}
		if b.MaxDelay != nil {
			d, err := time.ParseDuration(*b.MaxDelay)
			if err != nil || d <= 0 {
				*problems = append(*problems, fmt.Sprintf("batch.max_delay: %q is not a duration (e.g. \"500ms\", \"2s\")", *b.MaxDelay))
			} else {
				cfg.Batch.MaxDelay = d
			}
		}
		setDuration(&cfg.Batch.MinInterval, b.MinInterval, "batch.min_interval", problems)
		if b.MinInterval == nil && cfg.Batch.MinInterval > cfg.Batch.MaxDelay {
			// The default interval never outlasts a shorter max_delay.
			cfg.Batch.MinInterval = cfg.Batch.MaxDelay
		}
	}
	if st := f.Stream; st != nil {
		if st.Enabled != nil {
			cfg.Stream.Enabled = *st.Enabled
		}
		setString(&cfg.Stream.SpillDir, st.SpillDir)
		for _, sz := range []struct {
			key string
			v   *string
			to  *uint64
		}{{"stream.spill_limit", st.SpillLimit, &cfg.Stream.SpillLimit}, {"stream.memory", st.Memory, &cfg.Stream.Memory}} {
			if sz.v == nil {
				continue
			}
			n, err := ParseSize(*sz.v)
			if err != nil {
				*problems = append(*problems, fmt.Sprintf("%s: %v", sz.key, err))
			} else {
				*sz.to = n
			}
		}
	}
	f.Load.apply(&cfg.Load, problems)
	if m := f.Monitor; m != nil {
		setString(&cfg.Monitor.Listen, m.Listen)
		setDuration(&cfg.Monitor.ReadyMaxLag, m.ReadyMaxLag, "monitor.ready_max_lag", problems)
		setDuration(&cfg.Monitor.HeartbeatInterval, m.HeartbeatInterval, "monitor.heartbeat_interval", problems)
		setDuration(&cfg.Monitor.RewriteCheckInterval, m.RewriteCheck, "monitor.rewrite_check_interval", problems)
		setDuration(&cfg.Monitor.VerifyInterval, m.VerifyInterval, "monitor.verify_interval", problems)
		if m.VerifyRate != nil {
			cfg.Monitor.VerifyRate = *m.VerifyRate
		}
		if m.VerifySampleRows != nil {
			cfg.Monitor.VerifySampleRows = *m.VerifySampleRows
		}
		if m.RetainedWALWarning != nil {
			n, err := ParseSize(*m.RetainedWALWarning)
			if err != nil {
				*problems = append(*problems, fmt.Sprintf("monitor.retained_wal_warning: %v", err))
			} else {
				cfg.Monitor.RetainedWALWarning = n
			}
		}
	}
	if c := f.Compaction; c != nil {
		setDuration(&cfg.Compaction.Interval, c.Interval, "compaction.interval", problems)
		setDuration(&cfg.Compaction.Wait, c.Wait, "compaction.wait", problems)
	}
	if l := f.Log; l != nil {
		setString(&cfg.Log.Level, l.Level)
		setString(&cfg.Log.Format, l.Format)
	}
	for _, tb := range f.Tables {
		t := Table{Name: tb.Name, OrderBy: tb.OrderBy, Columns: map[string]mapping.ColumnSpec{}, SchemaChanges: "apply", Exclude: tb.Exclude,
			Mode: mapping.ModeLatest, Ignore: tb.Ignore, UniqueKey: tb.UniqueKey}
		setString(&t.Mode, tb.Mode)
		_, t.Target, _ = strings.Cut(tb.Name, ".")
		setString(&t.Target, tb.Target)
		setString(&t.PartitionBy, tb.PartitionBy)
		setString(&t.SchemaChanges, tb.SchemaChanges)
		setString(&t.Storage.TTL, tb.TTL)
		if tb.EngineDeletes != nil {
			t.Storage.EngineDeletes = *tb.EngineDeletes
		}
		for _, ib := range tb.Indexes {
			ix := mapping.Index{Name: ib.Name, Expression: ib.Expression, Type: ib.Type, Granularity: 1}
			if ib.Granularity != nil {
				ix.Granularity = *ib.Granularity
			}
			t.Storage.Indexes = append(t.Storage.Indexes, ix)
		}
		for _, pb := range tb.Projections {
			t.Storage.Projections = append(t.Storage.Projections, mapping.Projection{Name: pb.Name, Query: pb.Query})
		}
		for _, cb := range tb.Columns {
			if _, dup := t.Columns[cb.Name]; dup {
				*problems = append(*problems, fmt.Sprintf("table %q column %q: defined twice", tb.Name, cb.Name))
			}
			var cs mapping.ColumnSpec
			if cb.Rename != nil && *cb.Rename == "" {
				*problems = append(*problems, fmt.Sprintf("table %q column %q.name: \"\" is empty", tb.Name, cb.Name))
			}
			setString(&cs.Name, cb.Rename)
			setString(&cs.Type, cb.Type)
			if cb.Transform != nil {
				cs.Transform = mapping.Transform(*cb.Transform)
			}
			if cb.Nullable != nil {
				cs.Nullable = *cb.Nullable
			}
			setString(&cs.Invalid, cb.Invalid)
			t.Columns[cb.Name] = cs
		}
		cfg.Tables = append(cfg.Tables, t)
	}
}

func setDuration(dst *time.Duration, v *string, key string, problems *[]string) {
	if v == nil {
		return
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		*problems = append(*problems, fmt.Sprintf("%s: %q is not a duration (e.g. \"500ms\", \"2s\")", key, *v))
		return
	}
	if d < 0 {
		*problems = append(*problems, fmt.Sprintf("%s: must not be negative, got %q", key, *v))
		return
	}
	*dst = d
}

// ParseSize parses a byte size such as "512MB", "10GiB" or "1048576".
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n > (1<<63)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. \"512MB\", \"10GiB\")", s)
	}
	return n * mult, nil
}

func setString(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func applyEnv(cfg *Config, getenv func(string) string) {
	if v := getenv(EnvPostgresDSN); v != "" {
		cfg.Postgres.DSN = v
	}
	if v := getenv(EnvClickHouseAddr); v != "" {
		var addrs []string
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		cfg.ClickHouse.Addr = addrs
	}
	if v := getenv(EnvClickHouseDatabase); v != "" {
		cfg.ClickHouse.Database = v
	}
	if v := getenv(EnvClickHouseUsername); v != "" {
		cfg.ClickHouse.Username = v
	}
	if v := getenv(EnvClickHousePassword); v != "" {
		cfg.ClickHouse.Password = v
	}
	if v := getenv(EnvLogLevel); v != "" {
		cfg.Log.Level = v
	}
}

var (
	pgIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	chIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// readSecret returns the first line of a file that holds a secret; errors
// name the file, never its content.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return line, nil
}

// validate returns every problem, each prefixed with its key path.
func (c *Config) validate() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if c.Postgres.DSN == "" {
		add("postgres.dsn: required (or set %s)", EnvPostgresDSN)
	} else if _, err := pgconn.ParseConfig(c.Postgres.DSN); err != nil {
		add("postgres.dsn: not a valid connection string: %s", redactedParseError(err))
	}
	if !pgIdent.MatchString(c.Postgres.Slot) {
		add("postgres.slot: %q must be lowercase letters, digits and underscores (at most 63)", c.Postgres.Slot)
	}
	if c.Postgres.Recovery != RecoveryAuto && c.Postgres.Recovery != RecoveryManual {
		add("postgres.recovery: %q is not %q (copy every table again online) or %q (stop and say what to run)",
			c.Postgres.Recovery, RecoveryAuto, RecoveryManual)
	}
	if !pgIdent.MatchString(c.Postgres.Publication) {
		add("postgres.publication: %q must be lowercase letters, digits and underscores (at most 63)", c.Postgres.Publication)
	}
	if len(c.ClickHouse.Addr) == 0 {
		add("clickhouse.addr: at least one host:port is required")
	}
	for i, a := range c.ClickHouse.Addr {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			add("clickhouse.addr[%d]: %q is not host:port", i, a)
		}
	}
	if !chIdent.MatchString(c.ClickHouse.Database) {
		add("clickhouse.database: %q is not a valid identifier", c.ClickHouse.Database)
	}
	if cl := c.ClickHouse.Cluster; cl != "" && !chIdent.MatchString(cl) {
		add("clickhouse.cluster: %q is not a valid identifier", cl)
	}
	if p := c.ClickHouse.ZooKeeperPath; p != "" && (!strings.HasPrefix(p, "/") || !strings.Contains(p, "{shard}") || strings.Contains(p, "'")) {
		add("clickhouse.zookeeper_path: %q must start with / and contain {shard} (and may use {database} and {table})", p)
	}
	if f := c.ClickHouse.PasswordFile; f != "" {
		if c.ClickHouse.Password != "" {
			add("clickhouse.password_file: set either password or password_file")
		} else if pw, err := readSecret(f); err != nil {
			add("clickhouse.password_file: %v", err)
		} else {
			c.ClickHouse.Password = pw
		}
	}
	if t := c.ClickHouse.TLS; t != nil {
		for key, f := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				add("clickhouse.tls.%s: %v", key, err)
			}
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			add("clickhouse.tls: cert_file and key_file go together")
		}
	}
	if c.Batch.MaxRows <= 0 {
		add("batch.max_rows: must be positive, got %d", c.Batch.MaxRows)
	}
	if c.Batch.MaxBytes < 1<<20 {
		add("batch.max_bytes: must be at least 1MiB, got %d bytes", c.Batch.MaxBytes)
	}
	if c.Batch.MaxDelay <= 0 {
		add("batch.max_delay: must be positive, got %s", c.Batch.MaxDelay)
	}
	if c.Batch.MinInterval < 0 || c.Batch.MinInterval > c.Batch.MaxDelay {
		add("batch.min_interval: must be between 0 and batch.max_delay (%s), got %s", c.Batch.MaxDelay, c.Batch.MinInterval)
	}
	if c.Stream.Enabled {
		if c.Stream.SpillDir == "" {
			add("stream.spill_dir: must name a directory")
		}
		if c.Stream.SpillLimit < 1<<20 {
			add("stream.spill_limit: must be at least 1MiB, got %d bytes", c.Stream.SpillLimit)
		}
	}
	p = append(p, c.Load.validate()...)
	if c.Monitor.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Monitor.Listen); err != nil {
			add("monitor.listen: %q is not host:port", c.Monitor.Listen)
		}
	}
	if c.Monitor.ReadyMaxLag <= 0 {
		add("monitor.ready_max_lag: must be positive")
	}
	if c.Monitor.RewriteCheckInterval <= 0 {
		add("monitor.rewrite_check_interval: must be positive, got %s", c.Monitor.RewriteCheckInterval)
	}
	p = append(p, c.Monitor.validateVerify()...)
	if c.Compaction.Interval < 0 {
		add("compaction.interval: must be positive, or 0s to turn scheduled compaction off, got %s", c.Compaction.Interval)
	}
	if c.Compaction.Wait <= 0 {
		add("compaction.wait: must be positive, got %s", c.Compaction.Wait)
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		add("log.level: %q is not one of trace, debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format: %q is not one of text, json", c.Log.Format)
	}
	if len(c.Tables) == 0 {
		add("table: at least one table block is required")
	}
	seenSource, seenTarget := map[string]bool{}, map[string]bool{}
	for _, t := range c.Tables {
		key := fmt.Sprintf("table %q", t.Name)
		schema, name, ok := strings.Cut(t.Name, ".")
		if !ok || schema == "" || name == "" || strings.Contains(name, ".") {
			add("%s: name must be \"schema.table\"", key)
		}
		if seenSource[t.Name] {
			add("%s: defined twice", key)
		}
		seenSource[t.Name] = true
		if problem := identProblem(t.Target); problem != "" {
			add("%s.target: %q %s", key, t.Target, problem)
		} else if seenTarget[t.Target] {
			add("%s.target: %q is used by another table", key, t.Target)
		}
		seenTarget[t.Target] = true
		if len(t.OrderBy) == 0 {
			add("%s.order_by: at least one column is required", key)
		}
		if t.SchemaChanges != "apply" && t.SchemaChanges != "stop" {
			add("%s.schema_changes: %q is not \"apply\" or \"stop\"", key, t.SchemaChanges)
		}
		t.validateStorage(key, add)
		if t.Mode != mapping.ModeLatest && t.Mode != mapping.ModeHistory {
			add("%s.mode: %q is not \"latest\" or \"history\"", key, t.Mode)
		}
		if t.Mode == mapping.ModeHistory && t.Storage.EngineDeletes {
			add("%s.engine_is_deleted: a history table keeps its deletes as rows; leave it false", key)
		}
		for _, kind := range t.Ignore {
			if kind != mapping.IgnoreDelete && kind != mapping.IgnoreTruncate {
				add("%s.ignore: %q is not \"delete\" or \"truncate\"", key, kind)
			}
		}
		for i, n := range t.UniqueKey {
			switch {
			case slices.Contains(t.UniqueKey[:i], n):
				add("%s.unique_key: %q is named twice", key, n)
			case !slices.Contains(t.OrderBy, n):
				add("%s.unique_key: %q is not in order_by: name the order_by columns that are unique by themselves in Postgres", key, n)
			}
		}
		if t.UniqueKey != nil && len(t.UniqueKey) == 0 {
			add("%s.unique_key: at least one column is required (or leave the key out)", key)
		}
		for i, n := range t.Exclude {
			switch {
			case slices.Contains(t.Exclude[:i], n):
				add("%s.exclude: %q is named twice", key, n)
			case slices.Contains(t.OrderBy, n):
				add("%s.exclude: %q is in order_by", key, n)
			}
			if _, ok := t.Columns[n]; ok {
				add("%s.exclude: %q has a column block", key, n)
			}
		}
		names := make([]string, 0, len(t.Columns))
		for n := range t.Columns {
			names = append(names, n)
		}
		sort.Strings(names)
		chNames := map[string]string{}
		for _, n := range names {
			cs := t.Columns[n]
			ckey := fmt.Sprintf("%s.column %q", key, n)
			if cs.Name != "" {
				if problem := identProblem(cs.Name); problem != "" {
					add("%s.name: %q %s", ckey, cs.Name, problem)
				} else if other, dup := chNames[cs.Name]; dup {
					add("%s.name: %q is also the name of column %q", ckey, cs.Name, other)
				}
				chNames[cs.Name] = n
			}
			var typ mapping.Type
			if cs.Type != "" {
				var err error
				if typ, err = mapping.ParseType(cs.Type); err != nil {
					add("%s.type: %s", ckey, err)
					continue
				}
			}
			switch cs.Transform {
			case mapping.TransformNone:
			case mapping.TransformXXHash64:
				if cs.Type != "" && typ.String() != "UInt64" {
					add("%s.transform: xxhash64 needs type \"UInt64\", not %q", ckey, cs.Type)
				}
			default:
				add("%s.transform: %q is not a known transform (supported: \"xxhash64\")", ckey, cs.Transform)
			}
			if cs.Nullable && typ.LowCardinality {
				add("%s.nullable: LowCardinality columns cannot be nullable here; drop nullable or the LowCardinality", ckey)
			}
			switch cs.Invalid {
			case "", mapping.InvalidError, mapping.InvalidDefault, mapping.InvalidClamp:
			default:
				add("%s.invalid: %q is not an option (supported: %q, %q, %q)", ckey, cs.Invalid,
					mapping.InvalidError, mapping.InvalidDefault, mapping.InvalidClamp)
			}
			if typ.Kind == mapping.KindMap {
				if cs.Invalid != "" && cs.Invalid != mapping.InvalidError && (cs.Invalid != mapping.InvalidDefault || typ.NullableValues) {
					add("%s.invalid: %q does not apply to %s (%q stores a NULL value of Map(String, String) as '')",
						ckey, cs.Invalid, typ, mapping.InvalidDefault)
				}
				if cs.Nullable {
					add("%s.nullable: ClickHouse has no Nullable(Map): a NULL hstore is an empty map; drop nullable", ckey)
				}
			}
			if typ.Kind == mapping.KindJSON && cs.Nullable {
				add("%s.nullable: Nullable(JSON) is not supported: a NULL json is an empty object; drop nullable", ckey)
			}
		}
	}
	return p
}

// validateStorage checks the index and projection blocks of the table at key.
func (t Table) validateStorage(key string, add func(string, ...any)) {
	named := func(kind string) func(name string) string {
		seen := map[string]bool{}
		return func(name string) string {
			k := fmt.Sprintf("%s.%s %q", key, kind, name)
			if problem := identProblem(name); problem != "" {
				add("%s: the name %s", k, problem)
			}
			if seen[name] {
				add("%s: defined twice", k)
			}
			seen[name] = true
			return k
		}
	}
	index := named("index")
	for _, ix := range t.Storage.Indexes {
		ikey := index(ix.Name)
		if strings.TrimSpace(ix.Expression) == "" {
			add("%s.expression: is empty", ikey)
		}
		if strings.TrimSpace(ix.Type) == "" {
			add("%s.type: is empty (e.g. \"minmax\", \"set(100)\", \"bloom_filter\")", ikey)
		}
		if ix.Granularity < 1 {
			add("%s.granularity: %d is not a positive number", ikey, ix.Granularity)
		}
	}
	projection := named("projection")
	for _, p := range t.Storage.Projections {
		pkey := projection(p.Name)
		if !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(p.Query)), "SELECT ") {
			add("%s.query: %q is not a SELECT (e.g. \"SELECT * ORDER BY author_id, created_at\")", pkey, p.Query)
		}
	}
}

// identProblem says what makes name unusable as the name of a ClickHouse
// table or column, or "" when it is usable. Any character is, quoted: the
// replicator quotes every name. ClickHouse stores a table in a directory
// named after it, with every byte outside [A-Za-z0-9_] written as %XX,
// and the replicator adds suffixes of up to 9 bytes ("_replaced").
func identProblem(name string) string {
	if name == "" {
		return "is empty"
	}
	n := 0
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c < 0x20 || c == 0x7f:
			return "contains a control character"
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			n++
		default:
			n += 3
		}
	}
	if n > 200 {
		return "is too long: ClickHouse's file name for it would exceed 200 bytes"
	}
	return ""
}

// redactedParseError returns pgconn's message without the connection string,
// which may hold a password.
func redactedParseError(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "cannot parse"
	}
	if pe.Unwrap() != nil {
		return pe.Unwrap().Error()
	}
	// "cannot parse `<string>`: <reason>": the reason alone (pgx redacts
	// the string only as best it can).
	msg := pe.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 && !strings.Contains(msg[i+3:], "`") {
		return msg[i+3:]
	}
	return "cannot parse"
}

package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Origins tells, per key path (as errors name keys: "postgres.dsn",
// `table "public.events".order_by`), where the effective value came from:
// "FILE:LINE" for a key the file sets, "env NAME" for an environment
// override. A key it does not hold has its default.
type Origins map[string]string

// Origin returns where the value of key came from: "default" when
// neither the file nor the environment sets it.
func (o Origins) Origin(key string) string {
	if s, ok := o[key]; ok {
		return s
	}
	return "default"
}

// envKeys are the keys that environment variables override.
var envKeys = []struct{ env, key string }{
	{EnvPostgresDSN, "postgres.dsn"},
	{EnvClickHouseAddr, "clickhouse.addr"},
	{EnvClickHouseDatabase, "clickhouse.database"},
	{EnvClickHouseUsername, "clickhouse.username"},
	{EnvClickHousePassword, "clickhouse.password"},
	{EnvLogLevel, "log.level"},
}

// fromEnv adds to each problem of a key an environment variable set
// where the value came from.
func fromEnv(problems []string, getenv func(string) string) []string {
	for i, p := range problems {
		for _, e := range envKeys {
			if (strings.HasPrefix(p, e.key+":") || strings.HasPrefix(p, e.key+"[")) && getenv(e.env) != "" {
				problems[i] = p + " (the value comes from " + e.env + ")"
			}
		}
	}
	return problems
}

// LoadWithOrigins is Load that also says where each value came from.
func LoadWithOrigins(path string, getenv func(string) string) (Config, Origins, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("read config: %w", err)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg, keys, err := parse(path, src, getenv)
	if err != nil {
		return cfg, nil, err
	}
	o := Origins{}
	for _, k := range keys {
		o[k.path] = fmt.Sprintf("%s:%d", k.rng.Filename, k.rng.Start.Line)
	}
	for _, e := range envKeys {
		if getenv(e.env) != "" {
			o[e.key] = "env " + e.env
		}
	}
	if f := cfg.ClickHouse.PasswordFile; f != "" {
		o["clickhouse.password"] = "file " + f
	}
	return cfg, o, nil
}

// Setting is one key of the effective configuration.
type Setting struct {
	// Key is the key path, as Origins has it.
	Key string
	// Value is the value in HCL syntax, secrets redacted.
	Value string
}

// Settings lists every key of c with its value in HCL syntax, in the order
// of the README's key table; passwords are redacted, also inside the DSN.
func (c Config) Settings() []Setting {
	var out []Setting
	add := func(key string, v any) { out = append(out, Setting{key, literal(v)}) }
	size := func(key string, n uint64) { add(key, FormatSize(n)) }
	dur := func(key string, d time.Duration) { add(key, formatDuration(d)) }

	add("postgres.dsn", RedactDSN(c.Postgres.DSN))
	add("postgres.slot", c.Postgres.Slot)
	add("postgres.publication", c.Postgres.Publication)
	add("postgres.recovery", c.Postgres.Recovery)
	ch := c.ClickHouse
	add("clickhouse.addr", ch.Addr)
	add("clickhouse.database", ch.Database)
	add("clickhouse.username", ch.Username)
	if ch.Password != "" {
		add("clickhouse.password", "(redacted)")
	} else {
		add("clickhouse.password", "")
	}
	add("clickhouse.password_file", ch.PasswordFile)
	add("clickhouse.cluster", ch.Cluster)
	add("clickhouse.zookeeper_path", ch.ZooKeeperPath)
	if t := ch.TLS; t != nil {
		add("clickhouse.tls.ca_file", t.CAFile)
		add("clickhouse.tls.cert_file", t.CertFile)
		add("clickhouse.tls.key_file", t.KeyFile)
		add("clickhouse.tls.server_name", t.ServerName)
		add("clickhouse.tls.insecure_skip_verify", t.InsecureSkipVerify)
	}
	add("batch.max_rows", c.Batch.MaxRows)
	size("batch.max_bytes", c.Batch.MaxBytes)
	dur("batch.max_delay", c.Batch.MaxDelay)
	dur("batch.min_interval", c.Batch.MinInterval)
	add("stream.enabled", c.Stream.Enabled)
	add("stream.spill_dir", c.Stream.SpillDir)
	size("stream.spill_limit", c.Stream.SpillLimit)
	size("stream.memory", c.Stream.Memory)
	add("load.workers", c.Load.Workers)
	size("load.chunk_size", c.Load.ChunkSize)
	add("log.level", c.Log.Level)
	add("log.format", c.Log.Format)
	m := c.Monitor
	add("monitor.listen", m.Listen)
	dur("monitor.ready_max_lag", m.ReadyMaxLag)
	dur("monitor.heartbeat_interval", m.HeartbeatInterval)
	size("monitor.retained_wal_warning", m.RetainedWALWarning)
	dur("monitor.rewrite_check_interval", m.RewriteCheckInterval)
	dur("monitor.verify_interval", m.VerifyInterval)
	add("monitor.verify_rate", m.VerifyRate)
	add("monitor.verify_sample_rows", m.VerifySampleRows)
	dur("compaction.interval", c.Compaction.Interval)
	dur("compaction.wait", c.Compaction.Wait)
	for _, t := range c.Tables {
		k := fmt.Sprintf("table %q.", t.Name)
		add(k+"target", t.Target)
		add(k+"order_by", t.OrderBy)
		add(k+"partition_by", t.PartitionBy)
		add(k+"unique_key", t.UniqueKey)
		add(k+"schema_changes", t.SchemaChanges)
		add(k+"exclude", t.Exclude)
		add(k+"mode", t.Mode)
		add(k+"ignore", t.Ignore)
		add(k+"ttl", t.Storage.TTL)
		for _, ix := range t.Storage.Indexes {
			ik := fmt.Sprintf("%sindex %q.", k, ix.Name)
			add(ik+"expression", ix.Expression)
			add(ik+"type", ix.Type)
			add(ik+"granularity", ix.Granularity)
		}
		for _, p := range t.Storage.Projections {
			add(fmt.Sprintf("%sprojection %q.query", k, p.Name), p.Query)
		}
		names := make([]string, 0, len(t.Columns))
		for n := range t.Columns {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			cs := t.Columns[n]
			ck := fmt.Sprintf("%scolumn %q.", k, n)
			name := cs.Name
			if name == "" {
				name = n
			}
			add(ck+"name", name)
			add(ck+"type", cs.Type)
			add(ck+"transform", string(cs.Transform))
			add(ck+"nullable", cs.Nullable)
			invalid := cs.Invalid
			if invalid == "" {
				invalid = "error"
			}
			add(ck+"invalid", invalid)
		}
	}
	return out
}

// literal renders a string, list of strings, number or bool in HCL syntax.
func literal(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// formatDuration renders d as time.Duration does, without zero trailing
// units ("1m", not "1m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatSize renders a byte size as ParseSize reads it: the largest binary
// unit that divides it, else bytes.
func FormatSize(n uint64) string {
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatUint(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10)
}

// dsnPassword matches the password of a key=value connection string.
var dsnPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*)`)

// RedactDSN returns a libpq connection string (URL or key=value) with its
// password replaced by "xxxxx".
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(unparsable, redacted)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
)

// noEnv is a getenv with no variables set.
func noEnv(string) string { return "" }

// envMap returns a getenv reading m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// minimal is the smallest valid configuration.
const minimal = `
postgres {
  dsn = "postgres://u@h:5432/db"
}
table "public.t" {
  order_by = ["id"]
}
`

func parse(t *testing.T, src string, getenv func(string) string) config.Config {
	t.Helper()
	cfg, err := config.Parse("test.hcl", []byte(src), getenv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// parseError parses src, which must fail, and returns the *config.Error.
func parseError(t *testing.T, src string, getenv func(string) string) *config.Error {
	t.Helper()
	cfg, err := config.Parse("test.hcl", []byte(src), getenv)
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", cfg)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is %T, want *config.Error", err, err)
	}
	if len(ce.Problems) == 0 {
		t.Fatalf("*config.Error without problems")
	}
	if !reflect.DeepEqual(cfg, config.Config{}) {
		t.Errorf("Parse returned %+v with the error", cfg)
	}
	return ce
}

func TestExample(t *testing.T) {
	src, err := os.ReadFile("../config.example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, string(src), noEnv)
	if cfg.Postgres.DSN == "" {
		t.Errorf("postgres.dsn is empty")
	}
	if cfg.Postgres.Slot != "replicator_events" || cfg.Postgres.Publication != "replicator_events" {
		t.Errorf("slot, publication = %q, %q; want replicator_events", cfg.Postgres.Slot, cfg.Postgres.Publication)
	}
	if !reflect.DeepEqual(cfg.ClickHouse.Addr, []string{"127.0.0.1:9000"}) {
		t.Errorf("clickhouse.addr = %q", cfg.ClickHouse.Addr)
	}
	if cfg.ClickHouse.Database != "analytics" || cfg.ClickHouse.Username != "default" || cfg.ClickHouse.Password != "" {
		t.Errorf("clickhouse = %+v", cfg.ClickHouse)
	}
	if cfg.Batch != (config.Batch{MaxRows: 50000, MaxBytes: 64 << 20, MaxDelay: time.Second, MinInterval: 200 * time.Millisecond}) {
		t.Errorf("batch = %+v, want 50000 rows / 64MiB / 1s / 200ms", cfg.Batch)
	}
	if cfg.Log != (config.Log{Level: "info", Format: "text"}) {
		t.Errorf("log = %+v", cfg.Log)
	}
	if len(cfg.Tables) != 1 {
		t.Fatalf("%d tables, want 1", len(cfg.Tables))
	}
	tb := cfg.Tables[0]
	if tb.Name != "public.events" || tb.Target != "events" || !reflect.DeepEqual(tb.OrderBy, []string{"id"}) {
		t.Errorf("table = %+v", tb)
	}
	if schema, name := tb.SourceParts(); schema != "public" || name != "events" {
		t.Errorf("SourceParts = %q, %q", schema, name)
	}
	if got, want := tb.Columns["fingerprint"], (mapping.ColumnSpec{Type: "UInt64", Transform: mapping.TransformXXHash64}); got != want {
		t.Errorf("column fingerprint = %+v, want %+v", got, want)
	}
	if got, want := tb.Columns["id"], (mapping.ColumnSpec{Type: "UInt64"}); got != want {
		t.Errorf("column id = %+v, want %+v", got, want)
	}
	if got, want := tb.Columns["target_type"], (mapping.ColumnSpec{Type: "LowCardinality(String)"}); got != want {
		t.Errorf("column target_type = %+v, want %+v", got, want)
	}
	spec := tb.Spec()
	if spec.Source != "public.events" || spec.Target != "events" || !reflect.DeepEqual(spec.OrderBy, []string{"id"}) || !reflect.DeepEqual(spec.Columns, tb.Columns) {
		t.Errorf("Spec() = %+v", spec)
	}
}

func TestDefaults(t *testing.T) {
	cfg := parse(t, minimal, noEnv)
	want := config.Default()
	want.Postgres.DSN = "postgres://u@h:5432/db"
	want.Tables = []config.Table{{Name: "public.t", Target: "t", OrderBy: []string{"id"}, Columns: map[string]mapping.ColumnSpec{}, SchemaChanges: "apply", Mode: "latest"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", cfg, want)
	}
	d := config.Default()
	if d.Postgres.Slot != "replicator" || d.Postgres.Publication != "replicator" ||
		!reflect.DeepEqual(d.ClickHouse.Addr, []string{"127.0.0.1:9000"}) || d.ClickHouse.Database != "default" ||
		d.ClickHouse.Username != "default" || d.Batch.MaxRows != 50000 || d.Batch.MaxDelay != time.Second ||
		d.Log.Level != "info" || d.Log.Format != "text" {
		t.Errorf("Default() = %+v", d)
	}
}

func TestParseAllKeys(t *testing.T) {
	src := `
postgres {
  dsn         = "host=pg user=u dbname=d"
  slot        = "s1"
  publication = "p_1"
  recovery    = "manual"
}
clickhouse {
  addr     = ["a:9000", "[::1]:9440"]
  database = "Analytics_2"
  username = "writer"
  password = "pw"
}
batch {
  max_rows  = 5
  max_bytes = "16MiB"
  max_delay = "250ms"
  min_interval = "100ms"
}
stream {
  enabled     = false
  spill_dir   = "/var/lib/replicator/spill"
  spill_limit = "2GiB"
  memory      = "8MiB"
}
log {
  level  = "debug"
  format = "json"
}
table "app.users" {
  target       = "users_v2"
  order_by     = ["tenant", "id"]
  partition_by = "intDiv(id, 1000)"
  schema_changes = "stop"
  unique_key   = ["id"]
  column "note" {
    nullable = true
  }
  column "fp" {
    transform = "xxhash64"
  }
  column "kind" {
    type     = "Nullable(String)"
    nullable = true
  }
}
table "app.orders" {
  order_by = ["id"]
}
monitor {
  listen               = "127.0.0.1:19721"
  ready_max_lag        = "45s"
  heartbeat_interval   = "0s"
  retained_wal_warning = "512MiB"
  rewrite_check_interval = "15s"
  verify_interval      = "1h"
  verify_rate          = 500
  verify_sample_rows   = 2000
}
`
	cfg := parse(t, src, noEnv)
	// Sections this file omits keep their defaults.
	want := config.Default()
	want.Postgres = config.Postgres{DSN: "host=pg user=u dbname=d", Slot: "s1", Publication: "p_1", Recovery: config.RecoveryManual}
	want.ClickHouse = config.ClickHouse{Addr: []string{"a:9000", "[::1]:9440"}, Database: "Analytics_2", Username: "writer", Password: "pw"}
	want.Batch = config.Batch{MaxRows: 5, MaxBytes: 16 << 20, MaxDelay: 250 * time.Millisecond, MinInterval: 100 * time.Millisecond}
	want.Stream = config.Stream{SpillDir: "/var/lib/replicator/spill", SpillLimit: 2 << 30, Memory: 8 << 20}
	want.Log = config.Log{Level: "debug", Format: "json"}
	want.Monitor = config.Monitor{Listen: "127.0.0.1:19721", ReadyMaxLag: 45 * time.Second, HeartbeatInterval: 0, RetainedWALWarning: 512 << 20,
		RewriteCheckInterval: 15 * time.Second, VerifyInterval: time.Hour, VerifyRate: 500, VerifySampleRows: 2000}
	want.Tables = []config.Table{
		{Name: "app.users", Target: "users_v2", OrderBy: []string{"tenant", "id"}, PartitionBy: "intDiv(id, 1000)", SchemaChanges: "stop", Mode: "latest",
			UniqueKey: []string{"id"}, Columns: map[string]mapping.ColumnSpec{
				"note": {Nullable: true},
				"fp":   {Transform: mapping.TransformXXHash64},
				"kind": {Type: "Nullable(String)", Nullable: true},
			}},
		{Name: "app.orders", Target: "orders", OrderBy: []string{"id"}, Columns: map[string]mapping.ColumnSpec{}, SchemaChanges: "apply", Mode: "latest"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", cfg, want)
	}
	if got := cfg.Tables[0].Spec().UniqueKey; !reflect.DeepEqual(got, []string{"id"}) {
		t.Errorf("Spec().UniqueKey = %q, want [id]", got)
	}
}

func TestParseErrors(t *testing.T) {
	const table = "\ntable \"public.t\" {\n  order_by = [\"id\"]\n}\n"
	const pg = "postgres {\n  dsn = \"postgres://u@h/db\"\n}\n"
	for _, tc := range []struct {
		name     string
		src      string
		contains []string
	}{
		{"unknown key", "postgres {\n  dsn = \"postgres://u@h/db\"\n  slott = \"x\"\n}\n" + table, []string{"slott"}},
		{"unknown key suggests", "postgres {\n  dsn = \"postgres://u@h/db\"\n  slott = \"x\"\n}\n" + table, []string{`"slot"`}},
		{"unknown top-level key", pg + "debug = true\n" + table, []string{"debug"}},
		{"unknown block", pg + "mysql {\n}\n" + table, []string{"mysql"}},
		{"unknown column key", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    typ = \"UInt64\"\n  }\n}\n", []string{"typ"}},
		{"wrong type", pg + "batch {\n  max_rows = \"many\"\n}\n" + table, []string{"max_rows"}},
		{"wrong type list", pg + "clickhouse {\n  addr = \"a:1\"\n}\n" + table, []string{"addr"}},
		{"bad duration", pg + "batch {\n  max_delay = \"soon\"\n}\n" + table, []string{"batch.max_delay", `"soon"`}},
		{"syntax error", "postgres {\n", []string{"test.hcl:"}},
		{"unset env function", "postgres {\n  dsn = env(\"PG_DSN_FOR_TEST\")\n}\n" + table, []string{"PG_DSN_FOR_TEST", "not set"}},
		{"missing dsn", table, []string{"postgres.dsn", "REPLICATOR_POSTGRES_DSN"}},
		{"invalid dsn", "postgres {\n  dsn = \"postgres://h/db?sslmode=bogus\"\n}\n" + table, []string{"postgres.dsn", "sslmode"}},
		{"bad slot", "postgres {\n  dsn = \"postgres://u@h/db\"\n  slot = \"Bad-Slot\"\n}\n" + table, []string{"postgres.slot", `"Bad-Slot"`}},
		{"slot too long", "postgres {\n  dsn = \"postgres://u@h/db\"\n  slot = \"" + strings.Repeat("s", 64) + "\"\n}\n" + table, []string{"postgres.slot"}},
		{"bad publication", "postgres {\n  dsn = \"postgres://u@h/db\"\n  publication = \"1pub\"\n}\n" + table, []string{"postgres.publication"}},
		{"bad recovery", "postgres {\n  dsn = \"postgres://u@h/db\"\n  recovery = \"sometimes\"\n}\n" + table, []string{"postgres.recovery", `"sometimes"`}},
		{"empty addr", pg + "clickhouse {\n  addr = []\n}\n" + table, []string{"clickhouse.addr"}},
		{"addr without port", pg + "clickhouse {\n  addr = [\"a:1\", \"localhost\"]\n}\n" + table, []string{"clickhouse.addr[1]", `"localhost"`}},
		{"bad database", pg + "clickhouse {\n  database = \"my-db\"\n}\n" + table, []string{"clickhouse.database", `"my-db"`}},
		{"password and password_file", pg + "clickhouse {\n  password = \"x\"\n  password_file = \"/dev/null\"\n}\n" + table,
			[]string{"clickhouse.password_file", "either"}},
		{"missing password_file", pg + "clickhouse {\n  password_file = \"/nonexistent/pw\"\n}\n" + table,
			[]string{"clickhouse.password_file", "/nonexistent/pw"}},
		{"empty password_file", pg + "clickhouse {\n  password_file = \"/dev/null\"\n}\n" + table,
			[]string{"clickhouse.password_file", "empty"}},
		{"missing ca_file", pg + "clickhouse {\n  tls {\n    ca_file = \"/nonexistent/ca.pem\"\n  }\n}\n" + table,
			[]string{"clickhouse.tls.ca_file", "/nonexistent/ca.pem"}},
		{"cert without key", pg + "clickhouse {\n  tls {\n    cert_file = \"/dev/null\"\n  }\n}\n" + table,
			[]string{"clickhouse.tls", "cert_file and key_file"}},
		{"zero max_rows", pg + "batch {\n  max_rows = 0\n}\n" + table, []string{"batch.max_rows"}},
		{"negative max_delay", pg + "batch {\n  max_delay = \"-1s\"\n}\n" + table, []string{"batch.max_delay"}},
		{"min_interval over max_delay", pg + "batch {\n  min_interval = \"2s\"\n}\n" + table, []string{"batch.min_interval", "max_delay"}},
		{"min_interval over a set max_delay", pg + "batch {\n  max_delay = \"50ms\"\n  min_interval = \"60ms\"\n}\n" + table, []string{"batch.min_interval"}},
		{"bad spill limit", pg + "stream {\n  spill_limit = \"lots\"\n}\n" + table, []string{"stream.spill_limit"}},
		{"unknown stream key", pg + "stream {\n  spill = \"/x\"\n}\n" + table, []string{"spill"}},
		{"bad log level", pg + "log {\n  level = \"loud\"\n}\n" + table, []string{"log.level", `"loud"`}},
		{"bad log format", pg + "log {\n  format = \"xml\"\n}\n" + table, []string{"log.format", `"xml"`}},
		{"missing table", pg, []string{"at least one table"}},
		{"table without schema", pg + "table \"events\" {\n  order_by = [\"id\"]\n}\n", []string{`table "events"`, "schema.table"}},
		{"table with empty schema", pg + "table \".events\" {\n  order_by = [\"id\"]\n}\n", []string{"schema.table"}},
		{"table with three parts", pg + "table \"db.public.events\" {\n  order_by = [\"id\"]\n}\n", []string{"schema.table"}},
		{"table without order_by", pg + "table \"public.t\" {\n}\n", []string{"order_by"}},
		{"table with empty order_by", pg + "table \"public.t\" {\n  order_by = []\n}\n", []string{`table "public.t".order_by`}},
		{"bad schema_changes", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  schema_changes = \"ignore\"\n}\n", []string{`table "public.t".schema_changes`, `"ignore" is not "apply" or "stop"`}},
		{"duplicate table", pg + table + table, []string{`table "public.t": defined twice`}},
		{"duplicate target", pg + table + "table \"other.t\" {\n  order_by = [\"id\"]\n}\n", []string{`"t" is used by another table`}},
		{"bad target", pg + "table \"public.t\" {\n  target = \"t\\n1\"\n  order_by = [\"id\"]\n}\n", []string{`table "public.t".target`, `control character`}},
		{"empty column name", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    name = \"\"\n  }\n}\n", []string{`column "a".name`, "is empty"}},
		{"two columns, one name", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    name = \"x\"\n  }\n  column \"b\" {\n    name = \"x\"\n  }\n}\n", []string{`column "b".name`, `also the name of column "a"`}},
		{"bad storage", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  index \"i\" {\n    expression = \"\"\n    type = \"minmax\"\n    granularity = 0\n  }\n  index \"i\" {\n    expression = \"a\"\n    type = \"\"\n  }\n  projection \"p\" {\n    query = \"ORDER BY a\"\n  }\n}\n",
			[]string{`index "i".expression: is empty`, `index "i".granularity: 0`, `index "i": defined twice`, `index "i".type: is empty`, `projection "p".query: "ORDER BY a" is not a SELECT`}},
		{"excluded key", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  exclude = [\"id\", \"b\", \"b\"]\n  column \"b\" {\n  }\n}\n", []string{`exclude: "id" is in order_by`, `exclude: "b" is named twice`, `exclude: "b" has a column block`}},
		{"unique key outside order_by", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  unique_key = [\"id\", \"id\", \"created_at\"]\n}\n",
			[]string{`table "public.t".unique_key: "id" is named twice`, `table "public.t".unique_key: "created_at" is not in order_by`}},
		{"empty unique key", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  unique_key = []\n}\n", []string{`table "public.t".unique_key: at least one column is required`}},
		{"duplicate column", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n  }\n  column \"a\" {\n    type = \"UInt64\"\n  }\n}\n", []string{`column "a": defined twice`}},
		{"bad column type", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"Decimal(40,2)\"\n  }\n}\n", []string{`column "a".type`, "Decimal(40,2)"}},
		{"bad invalid option", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    invalid = \"nearest\"\n  }\n}\n", []string{`column "a".invalid`, `"nearest"`, `"clamp"`}},
		{"clamp on a Map", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"Map(String, String)\"\n    invalid = \"clamp\"\n  }\n}\n", []string{`column "a".invalid`, `does not apply to Map(String, String)`}},
		{"default on nullable Map values", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"Map(String, Nullable(String))\"\n    invalid = \"default\"\n  }\n}\n", []string{`column "a".invalid`, `does not apply`}},
		{"nullable Map", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"Map(String, String)\"\n    nullable = true\n  }\n}\n", []string{`column "a".nullable`, `no Nullable(Map)`}},
		{"nullable JSON", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"JSON\"\n    nullable = true\n  }\n}\n", []string{`column "a".nullable`, `Nullable(JSON)`}},
		{"unknown transform", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    transform = \"md5\"\n  }\n}\n", []string{`column "a".transform`, `"md5"`}},
		{"xxhash64 with String", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"String\"\n    transform = \"xxhash64\"\n  }\n}\n", []string{`column "a".transform`, "UInt64"}},
		{"nullable LowCardinality", pg + "table \"public.t\" {\n  order_by = [\"id\"]\n  column \"a\" {\n    type = \"LowCardinality(String)\"\n    nullable = true\n  }\n}\n", []string{`column "a".nullable`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseError(t, tc.src, noEnv)
			msg := ce.Error()
			for _, s := range tc.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not contain %q", msg, s)
				}
			}
			if len(ce.Problems) == 1 && msg != "config: "+ce.Problems[0] {
				t.Errorf("Error() = %q, want %q", msg, "config: "+ce.Problems[0])
			}
		})
	}
}

// TestPasswordFile reads the ClickHouse password from a file's first line.
func TestPasswordFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, "postgres {\n  dsn = \"postgres://u@h/db\"\n}\nclickhouse {\n  password_file = \""+f+"\"\n  tls {\n    server_name = \"ch\"\n  }\n}\n"+
		"table \"public.t\" {\n  order_by = [\"id\"]\n}\n", func(string) string { return "" })
	if cfg.ClickHouse.Password != "s3cret" || cfg.ClickHouse.TLS == nil || cfg.ClickHouse.TLS.ServerName != "ch" {
		t.Errorf("clickhouse = %+v", cfg.ClickHouse)
	}
}

// TestSystemdDirectories reads a relative password_file from the unit's
// credentials and spills into its state directory, as systemd sets them;
// outside systemd both keep their plain meaning.
func TestSystemdDirectories(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "clickhouse-password"), []byte("fromcred\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	src := "postgres {\n  dsn = \"postgres://u@h/db\"\n}\nclickhouse {\n  password_file = \"clickhouse-password\"\n}\n" +
		"table \"public.t\" {\n  order_by = [\"id\"]\n}\n"
	env := map[string]string{config.EnvCredentialsDirectory: creds, config.EnvStateDirectory: "/var/lib/replicator:/var/lib/other"}
	cfg := parse(t, src, func(k string) string { return env[k] })
	if cfg.ClickHouse.Password != "fromcred" || cfg.ClickHouse.PasswordFile != filepath.Join(creds, "clickhouse-password") {
		t.Errorf("clickhouse password %q from %q", cfg.ClickHouse.Password, cfg.ClickHouse.PasswordFile)
	}
	if cfg.Stream.SpillDir != "/var/lib/replicator/spill" {
		t.Errorf("spill_dir = %q, want /var/lib/replicator/spill", cfg.Stream.SpillDir)
	}
	// The file's spill_dir wins over the state directory.
	cfg = parse(t, strings.Replace(src, "table", "stream {\n  spill_dir = \"/srv/spill\"\n}\ntable", 1), func(k string) string { return env[k] })
	if cfg.Stream.SpillDir != "/srv/spill" {
		t.Errorf("spill_dir = %q, want /srv/spill", cfg.Stream.SpillDir)
	}
	// Outside systemd the relative name is the working directory's.
	_, err := config.Parse("t.hcl", []byte(src), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "clickhouse.password_file: cannot read clickhouse-password") {
		t.Errorf("without CREDENTIALS_DIRECTORY: %v", err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // one substring per problem, in order
	}{
		{"validation problems", `
postgres {
  dsn  = "postgres://u@h/db"
  slot = "Bad Slot"
}
batch {
  max_rows = 0
}
log {
  level = "loud"
}
monitor {
  verify_interval = "-1h"
  verify_rate     = 0
}
table "public.t" {
  order_by = ["id"]
}
`, []string{"postgres.slot", "batch.max_rows", "monitor.verify_interval", "monitor.verify_rate", "log.level"}},
		{"decode problems", `
postgres {
  dsn   = "postgres://u@h/db"
  slott = "x"
}
batch {
  max_rows  = "many"
  max_delay = "soon"
}
mysql {
}
table "public.t" {
  order_by = ["id"]
}
`, []string{"slott", "test.hcl:7,", "mysql", "batch.max_delay"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseError(t, tc.src, noEnv)
			if len(ce.Problems) < len(tc.want) {
				t.Fatalf("%d problems, want >= %d: %q", len(ce.Problems), len(tc.want), ce.Problems)
			}
			for _, want := range tc.want {
				found := false
				for _, p := range ce.Problems {
					found = found || strings.Contains(p, want)
				}
				if !found {
					t.Errorf("no problem mentions %q: %q", want, ce.Problems)
				}
			}
			msg := ce.Error()
			if !strings.HasPrefix(msg, "config: "+itoa(len(ce.Problems))+" problems:\n  ") {
				t.Errorf("Error() = %q, want a count header", msg)
			}
			for _, p := range ce.Problems {
				if !strings.Contains(msg, "\n  "+p) {
					t.Errorf("Error() %q does not list %q", msg, p)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + itoa(n%10)
}

func TestEnvOverrides(t *testing.T) {
	src := `
postgres {
  dsn = "postgres://file@h/db"
}
clickhouse {
  addr     = ["file:9000"]
  database = "filedb"
  username = "fileuser"
  password = "filepw"
}
table "public.t" {
  order_by = ["id"]
}
`
	cfg := parse(t, src, envMap(map[string]string{
		"REPLICATOR_POSTGRES_DSN":        "host=envhost user=envuser",
		"REPLICATOR_CLICKHOUSE_ADDR":     "a:1, b:2",
		"REPLICATOR_CLICKHOUSE_DATABASE": "envdb",
		"REPLICATOR_CLICKHOUSE_USERNAME": "envuser",
		"REPLICATOR_CLICKHOUSE_PASSWORD": "envpw",
	}))
	want := config.ClickHouse{Addr: []string{"a:1", "b:2"}, Database: "envdb", Username: "envuser", Password: "envpw"}
	if cfg.Postgres.DSN != "host=envhost user=envuser" {
		t.Errorf("dsn = %q, want the environment's", cfg.Postgres.DSN)
	}
	if !reflect.DeepEqual(cfg.ClickHouse, want) {
		t.Errorf("clickhouse = %+v, want %+v", cfg.ClickHouse, want)
	}

	// Empty variables do not override.
	cfg = parse(t, src, envMap(map[string]string{"REPLICATOR_CLICKHOUSE_PASSWORD": ""}))
	if cfg.Postgres.DSN != "postgres://file@h/db" || !reflect.DeepEqual(cfg.ClickHouse,
		config.ClickHouse{Addr: []string{"file:9000"}, Database: "filedb", Username: "fileuser", Password: "filepw"}) {
		t.Errorf("without overrides: %+v %+v", cfg.Postgres, cfg.ClickHouse)
	}

	// The DSN may come from the environment alone.
	cfg = parse(t, "table \"public.t\" {\n  order_by = [\"id\"]\n}\n", envMap(map[string]string{"REPLICATOR_POSTGRES_DSN": "postgres://x@y/z"}))
	if cfg.Postgres.DSN != "postgres://x@y/z" {
		t.Errorf("dsn = %q", cfg.Postgres.DSN)
	}

	// Overrides are validated like the file.
	ce := parseError(t, minimal, envMap(map[string]string{"REPLICATOR_CLICKHOUSE_ADDR": "a:1,nohost", "REPLICATOR_CLICKHOUSE_DATABASE": "bad-db"}))
	if msg := ce.Error(); !strings.Contains(msg, `clickhouse.addr[1]: "nohost"`) || !strings.Contains(msg, `clickhouse.database: "bad-db"`) {
		t.Errorf("error %q", msg)
	}
	ce = parseError(t, minimal, envMap(map[string]string{"REPLICATOR_CLICKHOUSE_ADDR": " , "}))
	if msg := ce.Error(); !strings.Contains(msg, "clickhouse.addr") {
		t.Errorf("error %q", msg)
	}
}

func TestEnvFunction(t *testing.T) {
	src := `
postgres {
  dsn = env("PG_DSN")
}
clickhouse {
  password = env("CH_PASSWORD")
}
table "public.t" {
  order_by = ["id"]
}
`
	cfg := parse(t, src, envMap(map[string]string{"PG_DSN": "postgres://u@h/db", "CH_PASSWORD": "pw"}))
	if cfg.Postgres.DSN != "postgres://u@h/db" || cfg.ClickHouse.Password != "pw" {
		t.Errorf("dsn, password = %q, %q", cfg.Postgres.DSN, cfg.ClickHouse.Password)
	}
	ce := parseError(t, src, envMap(map[string]string{"PG_DSN": "postgres://u@h/db"}))
	msg := ce.Error()
	if !strings.Contains(msg, "CH_PASSWORD") || strings.Contains(msg, "PG_DSN") {
		t.Errorf("error %q should name CH_PASSWORD only", msg)
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:s3cret@host:notaport/db",
		"postgres://u:s3cret@host/db?sslmode=bogus",
		"postgres://u:s3cret@host/db?connect_timeout=abc",
		"postgres://u:s3cret@[::1/db",
		"postgres://u:s3cret@host/db?target_session_attrs=bogus",
		"host=h password=s3cret port=notaport",
		"host=h password=s3cret sslmode=bogus",
		"host=h password=s3cret connect_timeout=abc",
		"host=h password='s3cret",
		"host=h password=s3cret port=99999999999",
		"postgres://u:s3cret@h1:1,h2:x/db",
		"postgres://u:s3cr%zzet@h/db",
		"postgres://u:s3cret@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
	} {
		t.Run(dsn, func(t *testing.T) {
			src := "postgres {\n  dsn = \"" + dsn + "\"\n}\n" + "table \"public.t\" {\n  order_by = [\"id\"]\n}\n"
			ce := parseError(t, src, noEnv)
			if msg := ce.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, "postgres.dsn") {
				t.Errorf("error %q leaks the password or does not name postgres.dsn", msg)
			}
			// The same DSN from the environment.
			ce = parseError(t, "table \"public.t\" {\n  order_by = [\"id\"]\n}\n", envMap(map[string]string{"REPLICATOR_POSTGRES_DSN": dsn}))
			if msg := ce.Error(); strings.Contains(msg, "s3cret") {
				t.Errorf("error %q leaks the password", msg)
			}
		})
	}
}

func TestStorageBlocks(t *testing.T) {
	src := `postgres { dsn = "postgres://u@h/db" }
table "public.events" {
  order_by = ["author_id", "created_at", "id"]
  ttl      = "toDateTime(created_at) + INTERVAL 1 YEAR"
  index "project_id_index" {
    expression  = "project_id"
    type        = "minmax"
    granularity = 10
  }
  index "target" {
    expression = "target_type"
    type       = "set(100)"
  }
  projection "events_by_authors" {
    query = "SELECT * ORDER BY author_id, created_at"
  }
}
`
	cfg, err := config.Parse("t.hcl", []byte(src), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := mapping.Storage{
		Indexes: []mapping.Index{{Name: "project_id_index", Expression: "project_id", Type: "minmax", Granularity: 10},
			{Name: "target", Expression: "target_type", Type: "set(100)", Granularity: 1}},
		Projections: []mapping.Projection{{Name: "events_by_authors", Query: "SELECT * ORDER BY author_id, created_at"}},
		TTL:         "toDateTime(created_at) + INTERVAL 1 YEAR",
	}
	if got := cfg.Tables[0].Spec().Storage; !reflect.DeepEqual(got, want) {
		t.Errorf("storage %+v, want %+v", got, want)
	}
}

func TestLoad(t *testing.T) {
	path := t.TempDir() + "/replicator.hcl"
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.DSN != "postgres://u@h:5432/db" || len(cfg.Tables) != 1 {
		t.Errorf("Load = %+v", cfg)
	}
	if _, err := config.Load(path+".missing", noEnv); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// TestDefaultMinIntervalFollowsMaxDelay: a max_delay below the default
// min_interval lowers the interval instead of failing.
func TestDefaultMinIntervalFollowsMaxDelay(t *testing.T) {
	cfg := parse(t, "postgres {\n  dsn = \"host=pg\"\n}\nbatch {\n  max_delay = \"50ms\"\n}\ntable \"public.t\" {\n  order_by = [\"id\"]\n}\n", noEnv)
	if cfg.Batch.MinInterval != 50*time.Millisecond {
		t.Errorf("min_interval = %s, want 50ms", cfg.Batch.MinInterval)
	}
}

// TestEnvironment: REPLICATOR_LOG_LEVEL sets log.level (a wrong value
// names the variable), and UnknownEnv names the REPLICATOR_ variables
// nothing reads.
func TestEnvironment(t *testing.T) {
	src := []byte(`
postgres {
  dsn         = "postgres://x@h/db"
  slot        = "s"
  publication = "p"
}
clickhouse {
  addr     = ["h:9000"]
  database = "d"
}
table "public.t" {
  order_by = ["id"]
}
`)
	env := map[string]string{config.EnvLogLevel: "debug"}
	cfg, err := config.Parse("c.hcl", src, func(k string) string { return env[k] })
	if err != nil || cfg.Log.Level != "debug" {
		t.Fatalf("log.level from %s: %q, %v", config.EnvLogLevel, cfg.Log.Level, err)
	}
	env[config.EnvLogLevel] = "loud"
	if _, err := config.Parse("c.hcl", src, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), config.EnvLogLevel) {
		t.Errorf("a wrong %s: %v", config.EnvLogLevel, err)
	}
	got := config.UnknownEnv([]string{"REPLICATOR_LOG_LEVEL=x", "REPLICATOR_MONITOR_LISTEN=bad", "HOME=/root", "REPLICATOR_CONFIG=f", "REPLICATOR_CLICKHOUSE_PASSWORD_FILE=/x"},
		"REPLICATOR_CONFIG")
	if want := []string{"REPLICATOR_CLICKHOUSE_PASSWORD_FILE", "REPLICATOR_MONITOR_LISTEN"}; !slices.Equal(got, want) {
		t.Errorf("UnknownEnv = %v, want %v", got, want)
	}
}

// TestMessagesOfTheReview: a bad DSN says why (without the password), an
// env() that fails is one problem, not two, a negative duration is called
// so, and a JSON file is told it is not read.
func TestMessagesOfTheReview(t *testing.T) {
	base := `
postgres {
  dsn         = %s
  slot        = "s"
  publication = "p"
}
clickhouse {
  addr     = ["h:9000"]
  database = "d"
}
monitor {
  ready_max_lag = %q
}
table "public.t" {
  order_by = ["id"]
}
`
	for _, tc := range []struct {
		name, file, dsn, lag string
		want, not            []string
		problems             int
	}{
		{name: "port", file: "c.hcl", dsn: `"postgres://repl:S3cretPW@db.internal:notaport/app"`, lag: "30s",
			want: []string{"postgres.dsn: not a valid connection string: invalid port"}, not: []string{"S3cretPW"}, problems: 1},
		{name: "env unset", file: "c.hcl", dsn: `env("PG_DSN_NOT_SET_ANYWHERE")`, lag: "30s",
			want: []string{"PG_DSN_NOT_SET_ANYWHERE is not set"}, not: []string{"value must be known"}, problems: 1},
		{name: "negative", file: "c.hcl", dsn: `"postgres://x@h/db"`, lag: "-1s",
			want: []string{`monitor.ready_max_lag: must not be negative, got "-1s"`}, problems: 1},
		{name: "json", file: "c.json", dsn: `"postgres://x@h/db"`, lag: "30s", want: []string{"JSON is not read"}, problems: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(tc.file, []byte(fmt.Sprintf(base, tc.dsn, tc.lag)), func(string) string { return "" })
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a *config.Error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error %q holds %q", err, n)
				}
			}
			if len(ce.Problems) != tc.problems {
				t.Errorf("%d problems, want %d: %q", len(ce.Problems), tc.problems, ce.Problems)
			}
		})
	}
}

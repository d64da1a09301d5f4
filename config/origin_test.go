package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
)

// TestOrigins says where each value came from: a line of the file, an
// environment variable (which wins over the file), the password file, or
// the default.
func TestOrigins(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("filepw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.hcl")
	src := `postgres {
  dsn = "postgres://u:pw@h/db"
}
clickhouse {
  database      = "filedb"
  password_file = "` + pwFile + `"
}
table "public.t" {
  order_by = ["id"]
  column "id" {
    type = "UInt64"
  }
}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, origins, err := config.LoadWithOrigins(path, envMap(map[string]string{config.EnvClickHouseDatabase: "envdb"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHouse.Database != "envdb" || cfg.ClickHouse.Password != "filepw" {
		t.Errorf("database %q, password %q: want the environment's and the file's", cfg.ClickHouse.Database, cfg.ClickHouse.Password)
	}
	for key, want := range map[string]string{
		"postgres.dsn":                      path + ":2",
		"postgres.slot":                     "default",
		"clickhouse.database":               "env " + config.EnvClickHouseDatabase,
		"clickhouse.password":               "file " + pwFile,
		"clickhouse.password_file":          path + ":6",
		`table "public.t".order_by`:         path + ":9",
		`table "public.t".column "id".type`: path + ":11",
		`table "public.t".column "id".name`: "default",
		`table "public.t".target`:           "default",
	} {
		if got := origins.Origin(key); got != want {
			t.Errorf("origin of %s = %q, want %q", key, got, want)
		}
	}
	// Every key Settings lists is one Origins can name: the paths agree.
	seen := map[string]bool{}
	for _, s := range cfg.Settings() {
		seen[s.Key] = true
		if strings.Contains(s.Value, "filepw") || strings.Contains(s.Value, ":pw@") {
			t.Errorf("%s = %s shows a secret", s.Key, s.Value)
		}
	}
	for key := range origins {
		if !seen[key] {
			t.Errorf("origins name %s, which Settings does not list", key)
		}
	}
	if _, _, err := config.LoadWithOrigins(filepath.Join(dir, "none.hcl"), noEnv); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://repl:S3cret@db:5432/app?sslmode=require", "postgres://repl:xxxxx@db:5432/app?sslmode=require"},
		{"postgresql://repl@db/app", "postgresql://repl@db/app"},
		{"postgres://db/app?password=S3cret&user=u", "postgres://db/app?password=xxxxx&user=u"},
		{"host=db password=S3cret user=repl", "host=db password=xxxxx user=repl"},
		{"host=db password = 'S3 cret\\'x' user=repl", "host=db password = xxxxx user=repl"},
		{"host=db user=repl", "host=db user=repl"},
		{"", ""},
	} {
		if got := config.RedactDSN(tc.dsn); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[uint64]string{64 << 20: "64MiB", 10 << 30: "10GiB", 1536: "1536", 3 << 10: "3KiB", 0: "0"} {
		if got := config.FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if n > 0 {
			if back, err := config.ParseSize(want); err != nil || back != n {
				t.Errorf("ParseSize(%q) = %d, %v", want, back, err)
			}
		}
	}
}

// TestProblemsNameTheEnvironment: a bad value that an environment variable
// set says so.
func TestProblemsNameTheEnvironment(t *testing.T) {
	ce := parseError(t, minimal, envMap(map[string]string{config.EnvClickHouseAddr: "a:1,nohost", config.EnvClickHouseDatabase: "bad-db"}))
	for _, want := range []string{
		`clickhouse.addr[1]: "nohost" is not host:port (the value comes from REPLICATOR_CLICKHOUSE_ADDR)`,
		`clickhouse.database: "bad-db" is not a valid identifier (the value comes from REPLICATOR_CLICKHOUSE_DATABASE)`,
	} {
		if !strings.Contains(ce.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, ce.Error())
		}
	}
	if ce := parseError(t, "postgres {\n  slot = \"Bad\"\n}\n", noEnv); strings.Contains(ce.Error(), "comes from") {
		t.Errorf("a file's value blamed on the environment: %s", ce.Error())
	}
}

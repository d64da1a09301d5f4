package config_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
)

// FuzzParse: Parse never panics on arbitrary input; it either fails with a
// *config.Error listing at least one problem, or returns a configuration
// that satisfies the validation rules.
func FuzzParse(f *testing.F) {
	if src, err := os.ReadFile("../config.example.hcl"); err == nil {
		f.Add(src)
	}
	for _, s := range []string{
		minimal,
		"",
		"postgres {\n  dsn = env(\"PG_DSN\")\n}\ntable \"a.b\" {\n  order_by = [\"id\"]\n}\n",
		"postgres {\n  slott = \"x\"\n}\n",
		"batch {\n  max_rows = \"many\"\n  max_delay = \"soon\"\n}\n",
		"table \"events\" {\n  order_by = []\n  column \"a\" {\n    type = \"Decimal(10,2)\"\n  }\n  column \"a\" {\n  }\n}\n",
		"clickhouse {\n  addr = [\"a:1\", 2]\n}\n",
		"postgres {\n  dsn = \"postgres://u:s3cret@host:notaport/db\"\n}\n",
		"a = ${b}\n",
		"{{{",
	} {
		f.Add([]byte(s))
	}
	getenv := envMap(map[string]string{"PG_DSN": "postgres://u@h/db", "REPLICATOR_CLICKHOUSE_PASSWORD": "pw"})
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := config.Parse("fuzz.hcl", src, getenv)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v (%T) is not a *config.Error with problems", err, err)
			}
			for _, p := range ce.Problems {
				if p == "" {
					t.Fatalf("empty problem in %q", ce.Problems)
				}
			}
			return
		}
		if cfg.Postgres.DSN == "" || len(cfg.ClickHouse.Addr) == 0 || cfg.Batch.MaxRows <= 0 || cfg.Batch.MaxDelay <= 0 || len(cfg.Tables) == 0 {
			t.Fatalf("invalid configuration accepted: %+v", cfg)
		}
		if cfg.ClickHouse.Password != "pw" {
			t.Fatalf("environment override not applied: %+v", cfg.ClickHouse)
		}
		for _, tb := range cfg.Tables {
			schema, name := tb.SourceParts()
			if schema == "" || name == "" || strings.Contains(name, ".") || len(tb.OrderBy) == 0 || tb.Target == "" || tb.Columns == nil {
				t.Fatalf("invalid table accepted: %+v", tb)
			}
		}
	})
}

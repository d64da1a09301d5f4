package harness_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/test/harness"
)

func TestStartStop(t *testing.T) {
	skip, err := harness.E2E(testing.Short())
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opt := harness.Options{Fast: true, Dir: t.TempDir(), Log: tlog{t},
		PGSettings: map[string]string{"max_slot_wal_keep_size": "64MB"}}

	pg, err := harness.StartPostgres(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Error(err)
		}
	})
	ch, err := harness.StartClickHouse(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ch.Close(); err != nil {
			t.Error(err)
		}
	})

	check := func(when string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			t.Fatalf("%s: connect postgres: %v", when, err)
		}
		defer conn.Close(ctx)
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("%s: postgres SELECT 1 = %d, %v", when, one, err)
		}
		var walLevel string
		if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil || walLevel != "logical" {
			t.Fatalf("%s: wal_level = %q, %v", when, walLevel, err)
		}
		if out, err := pg.Psql(ctx, "postgres", "SHOW max_slot_wal_keep_size"); err != nil || out != "64MB" {
			t.Fatalf("%s: psql SHOW max_slot_wal_keep_size = %q, %v", when, out, err)
		}

		c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, Protocol: clickhouse.Native})
		if err != nil {
			t.Fatalf("%s: open clickhouse: %v", when, err)
		}
		defer c.Close()
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("%s: ping clickhouse: %v", when, err)
		}
		var version string
		if err := c.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil || version == "" {
			t.Fatalf("%s: clickhouse version() = %q, %v", when, version, err)
		}
		if out, err := ch.Query(ctx, "SELECT 1"); err != nil || out != "1" {
			t.Fatalf("%s: clickhouse-client SELECT 1 = %q, %v", when, out, err)
		}
		t.Logf("%s: postgres %s, clickhouse %s (%s)", when, pg.DSN("postgres"), ch.Addr(), version)
	}
	check("after start")

	// Data must survive a restart, which keeps the ports.
	if _, err := pg.Psql(ctx, "postgres", "CREATE TABLE t (a int); INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Query(ctx, "CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a; INSERT INTO t VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	pgPort, chPort := pg.Port, ch.Port
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if pg.Port != pgPort || ch.Port != chPort {
		t.Fatalf("ports changed on restart: postgres %d -> %d, clickhouse %d -> %d", pgPort, pg.Port, chPort, ch.Port)
	}
	check("after restart")
	if out, err := pg.Psql(ctx, "postgres", "SELECT a FROM t"); err != nil || out != "7" {
		t.Fatalf("postgres row after restart = %q, %v", out, err)
	}
	if out, err := ch.Query(ctx, "SELECT a FROM t"); err != nil || out != "7" {
		t.Fatalf("clickhouse row after restart = %q, %v", out, err)
	}

	// A crash (immediate shutdown, SIGKILL) followed by a start recovers.
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Psql(ctx, "postgres", "SELECT 1"); err == nil {
		t.Fatal("postgres still answers after Kill")
	}
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	check("after crash")

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ch.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := ch.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// tlog sends the harness's progress lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCheckpointBehindSlotRefuses restores the checkpoint table from an
// "old backup": the slot has confirmed more than ClickHouse holds, so run
// must refuse and say how to recover.
func TestCheckpointBehindSlotRefuses(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	db := "db_" + e.name
	var old uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT max(lsn) FROM %s.replicator_checkpoints", db)).Scan(&old); err != nil {
		t.Fatal(err)
	}
	d := e.start()
	e.insertEvents(100)
	e.converge("before the restore", convergeTimeout)
	d.stop(t)
	if _, err := chServer.Query(context.Background(), fmt.Sprintf(
		"TRUNCATE TABLE %[1]s.replicator_checkpoints; INSERT INTO %[1]s.replicator_checkpoints (slot, lsn, commit) VALUES ('slot_%[2]s', %[3]d, 0)",
		db, e.name, old)); err != nil {
		t.Fatal(err)
	}
	// With postgres.recovery = "manual" the daemon stops and says why and
	// what to run; by default it copies every table again.
	manual := e.dir + "/manual.hcl"
	if err := os.WriteFile(manual, []byte(strings.Replace(string(must(os.ReadFile(e.config))), `publication = "pub_`,
		`recovery = "manual"
  publication = "pub_`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d = e.startWith(manual)
	if code := d.wait(t, 30*time.Second); code == 0 {
		t.Fatal("run started from a checkpoint behind the slot")
	}
	logs := d.Logs()
	for _, want := range []string{"confirmed_flush_lsn", "beyond the ClickHouse checkpoint", "slot-ahead", "replicator resync --all"} {
		if !strings.Contains(logs, want) {
			t.Errorf("error lacks %q:\n%s", want, tail(logs, 1500))
		}
	}
	d = e.start()
	e.waitLog(d, "complete: every table holds the rows of the server's history")
	e.insertEvents(10)
	e.converge("after the recovery", convergeTimeout)
	d.stop(t)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestPermanentErrorsStop: authentication failures are not retried forever.
func TestPermanentErrorsStop(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"clickhouse password", `database = "db_`, `password = "wrong"` + "\n  database = \"db_", "authentication"},
		{"postgres role", "postgres@127.0.0.1", "nosuchrole@127.0.0.1", "nosuchrole"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(e.config, []byte(strings.Replace(string(src), tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			d := e.start()
			if code := d.wait(t, 30*time.Second); code == 0 {
				t.Fatal("run exited 0")
			}
			if logs := d.Logs(); !strings.Contains(logs, tc.want) || strings.Contains(logs, "reconnecting") {
				t.Errorf("want a clear %q error without retries, got:\n%s", tc.want, tail(logs, 1500))
			}
			t.Logf("stopped after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestKeyThatDoesNotIdentifyARow configures PRIMARY KEY (id, created_at)
// with order_by = ["id"], partitioned by month: two rows that differ only
// in created_at within a month would be one ClickHouse row. setup refuses
// it, naming the column and unique_key; with unique_key = ["id"] it
// copies the table; without it again the daemon refuses to start.
func TestKeyThatDoesNotIdentifyARow(t *testing.T) {
	e := newEnv(t, `
table "public.visits" {
  order_by     = ["id"]
  partition_by = "toYYYYMM(created_at)"
}
`)
	e.exec(`CREATE TABLE visits (id bigint, created_at timestamptz, note text, PRIMARY KEY (id, created_at))`)
	e.exec(`INSERT INTO visits VALUES (1, '2026-01-01', 'a'), (2, '2026-01-02', 'b')`)
	says := "table public.visits: order_by does not hold the replica identity column(s) created_at"
	if out, errs, code := e.cli("setup", "--config", e.config); code == 0 || !strings.Contains(errs, says) ||
		!strings.Contains(errs, "unique_key = [") {
		t.Fatalf("setup exited %d, want a refusal with %q and unique_key\nstdout:\n%s\nstderr:\n%s", code, says, out, errs)
	}
	e.setConfig(`partition_by = "toYYYYMM(created_at)"`, `partition_by = "toYYYYMM(created_at)"
  unique_key   = ["id"]`)
	e.setup()
	var n uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.visits FINAL", e.name)).Scan(&n); err != nil || n != 2 {
		t.Fatalf("visits in ClickHouse: %d rows (%v), want 2", n, err)
	}
	e.setConfig(`
  unique_key   = ["id"]`, "")
	d := e.start()
	if code := d.wait(t, 30*time.Second); code == 0 || !strings.Contains(d.Logs(), says) || strings.Contains(d.Logs(), "reconnecting") {
		t.Fatalf("daemon exited %d, want a refusal with %q", code, says)
	}
}

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/replicator/replicator/postgres"
)

// TestLeastPrivilege runs setup, the daemon, status, verify and resync
// with the rights docs/configuration.md lists and no more: a Postgres role with LOGIN
// and REPLICATION and SELECT on the table, whose publication an owner of
// the table made, and a ClickHouse user limited to the target database.
func TestLeastPrivilege(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(300)
	role := "repl_" + e.name
	pub := "pub_" + e.name
	e.exec(fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION", role))
	t.Cleanup(func() {
		e.pg.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %s; DROP ROLE %s", role, role))
	})
	e.exec(fmt.Sprintf("GRANT SELECT ON events TO %s", role))
	var super bool
	if err := e.pg.QueryRow(context.Background(), "SELECT rolsuper FROM pg_roles WHERE rolname = $1", role).Scan(&super); err != nil || super {
		t.Fatalf("role %s is a superuser (%v)", role, err)
	}
	secret := filepath.Join(e.dir, "ch.password")
	if err := os.WriteFile(secret, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, pgServer.Host, pgServer.Port, e.name)
	config := filepath.Join(e.dir, "least.hcl")
	src := fmt.Sprintf(`
postgres {
  dsn         = %q
  slot        = "slot_%s"
  publication = %q
}
clickhouse {
  addr          = [%q]
  database      = "least_privilege"
  username      = "secured"
  password_file = %q
}
batch {
  max_delay = "200ms"
}
monitor {
  listen = %q
}
table "public.events" {
  order_by = ["id"]
}
`, dsn, e.name, pub, chServer.Addr(), secret, e.monitor)
	if err := os.WriteFile(config, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS least_privilege")
	t.Cleanup(func() { e.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS least_privilege") })

	// The role may not create the publication: setup says what to run.
	if out, errs, code := e.cli("setup", "--config", config); code == 0 ||
		!strings.Contains(errs, "this role may not change the publication") ||
		!strings.Contains(errs, fmt.Sprintf(`as their owner, run CREATE PUBLICATION "%s" FOR TABLE ONLY "public"."events" WITH (publish_via_partition_root = true`, pub)) {
		t.Errorf("setup as %s without a publication: exit %d\n%s\n%s", role, code, out, errs)
	}
	e.exec(fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE events WITH (publish_via_partition_root = true)", pub))
	if out, errs, code := e.cli("setup", "--config", config); code != 0 {
		t.Fatalf("setup as %s: exit %d\n%s\n%s", role, code, out, errs)
	}
	d := e.startWith(config)
	e.insertEvents(200)
	e.exec("UPDATE events SET action = action + 1 WHERE id % 3 = 0")
	e.exec("DELETE FROM events WHERE id % 10 = 0")
	want := e.expected()
	for deadline := time.Now().Add(convergeTimeout); ; time.Sleep(200 * time.Millisecond) {
		var n uint64
		e.ch.QueryRow(context.Background(), "SELECT count() FROM least_privilege.events_live").Scan(&n)
		if int(n) == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows in ClickHouse, %d in Postgres\n%s", n, len(want), tail(d.Logs(), 3000))
		}
	}
	for _, args := range [][]string{{"status", "--config", config}, {"verify", "--config", config},
		{"resync", "--config", config, "--table", "public.events"}} {
		if out, errs, code := e.cli(args...); code != 0 {
			t.Errorf("%s as %s: exit %d\n%s\n%s", args[0], role, code, out, errs)
		}
	}
	e.insertEvents(10)
	time.Sleep(time.Second)
	if out, errs, code := e.cli("verify", "--config", config); code != 0 || strings.Contains(d.Logs(), "[ERROR]") {
		t.Errorf("after the resync: verify exit %d\n%s\n%s\n%s", code, out, errs, tail(d.Logs(), 2000))
	}
	d.stop(t)
}

// TestReadOnlyUserStops: a ClickHouse user whose profile sets readonly
// answers writes with READONLY, the code of a replica that lost its
// ZooKeeper session too. setup and the daemon ask the server, stop at once
// and name the setting to change, instead of retrying for ever: with
// readonly = 1 the session settings are refused too, with readonly = 2
// only the writes.
func TestReadOnlyUserStops(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(10)
	e.setup()
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("database = %q", "db_"+e.name)
	for user, level := range map[string]string{"reader": "1", "reader2": "2"} {
		config := filepath.Join(e.dir, user+".hcl")
		if err := os.WriteFile(config, []byte(strings.Replace(string(src), db, db+"\n  username = \""+user+"\"", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		says := "has readonly = " + level + " in its settings profile, and the replicator writes: give clickhouse.username a profile with readonly = 0"
		if out, errs, code := e.cli("setup", "--config", config); code == 0 || !strings.Contains(errs, says) {
			t.Errorf("setup as %s: exit %d\n%s\n%s", user, code, out, errs)
		}
		d := e.startWith(config)
		e.insertEvents(10)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the daemon of %s still runs after 30 s:\n%s", user, tail(d.Logs(), 3000))
		}
		if logs := d.Logs(); d.err == nil || !strings.Contains(logs, says) || strings.Contains(logs, "reconnecting") {
			t.Errorf("the daemon of %s: %v\n%s", user, d.err, tail(logs, 3000))
		}
	}
}

// TestRDSReplicationRole: on Amazon RDS and Aurora a role replicates as a
// member of rds_replication, without the REPLICATION attribute; the server
// check accepts such a role and still refuses one with neither.
func TestRDSReplicationRole(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	member, other := "rds_member_"+e.name, "plain_"+e.name
	e.exec("DO $$ BEGIN CREATE ROLE rds_replication NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
	e.exec(fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE rds_replication; CREATE ROLE %s LOGIN", member, other))
	t.Cleanup(func() { e.pg.Exec(ctx, fmt.Sprintf("DROP ROLE %s; DROP ROLE %s", member, other)) })
	for role, ok := range map[string]bool{member: true, other: false} {
		conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, pgServer.Host, pgServer.Port, e.name))
		if err != nil {
			t.Fatal(err)
		}
		err = postgres.CheckServer(ctx, conn)
		conn.Close(ctx)
		if (err == nil) != ok || err != nil && !strings.Contains(err.Error(), "GRANT rds_replication TO <role>") {
			t.Errorf("role %s (member of rds_replication: %v): server check says %v", role, ok, err)
		}
	}
}

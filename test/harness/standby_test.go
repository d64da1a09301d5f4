package harness_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replicator/replicator/test/harness"
)

// requireE2E skips t when the end-to-end tests do not run here.
func requireE2E(t *testing.T) {
	t.Helper()
	skip, err := harness.E2E(testing.Short())
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
}

// psql runs sql on p and fails t on an error.
func psql(t *testing.T, p *harness.Postgres, sql string) string {
	t.Helper()
	out, err := p.Psql(context.Background(), "postgres", sql)
	if err != nil {
		t.Fatalf("port %d: %s: %v", p.Port, sql, err)
	}
	return out
}

// closeAtEnd closes p when t ends.
func closeAtEnd(t *testing.T, p *harness.Postgres) {
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close postgres of %s: %v", p.Dir, err)
		}
	})
}

func timeline(t *testing.T, p *harness.Postgres) int {
	t.Helper()
	tl, err := p.Timeline(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

func systemID(t *testing.T, p *harness.Postgres) string {
	t.Helper()
	id, err := p.SystemIdentifier(context.Background())
	if err != nil || id == "" {
		t.Fatalf("system identifier = %q, %v", id, err)
	}
	return id
}

// TestStandby makes a standby of a primary of the version PG_VERSION
// chooses (pg_basebackup on Debian's 15, a copy of the stopped data
// directory on the npm builds), checks that it streams and catches up,
// stops its replication so that it misses a commit, and fails over to it
// at the primary's port: the primary's DSN then reaches the promoted
// server, on timeline 2 of the same system, without the missed commit,
// and it takes writes.
func TestStandby(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	primary, err := harness.StartPostgres(ctx, harness.Options{Fast: true, Dir: t.TempDir(), Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, primary)
	psql(t, primary, "CREATE TABLE t (a int PRIMARY KEY); INSERT INTO t VALUES (1)")
	dsn := primary.DSN("postgres")

	standby, err := primary.StartStandby(ctx, harness.StandbyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, standby)
	if standby.Port == primary.Port || standby.Dir == primary.Dir {
		t.Fatalf("standby shares the primary's port %d or directory %s", primary.Port, primary.Dir)
	}
	if got := psql(t, standby, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby: pg_is_in_recovery() = %s", got)
	}
	if a, b := systemID(t, primary), systemID(t, standby); a != b {
		t.Fatalf("system identifiers differ: primary %s, standby %s", a, b)
	}
	if got := psql(t, primary, "SELECT state FROM pg_stat_replication"); got != "streaming" {
		t.Fatalf("primary's pg_stat_replication state = %q, want streaming", got)
	}
	if tl := timeline(t, primary); tl != 1 {
		t.Fatalf("primary's timeline = %d, want 1", tl)
	}

	psql(t, primary, "INSERT INTO t SELECT generate_series(2, 100)")
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if got := psql(t, standby, "SELECT count(*) FROM t"); got != "100" {
		t.Fatalf("standby after CatchUp: %s rows, want 100", got)
	}

	if err := standby.StopReplication(); err != nil {
		t.Fatal(err)
	}
	psql(t, primary, "INSERT INTO t VALUES (101)") // missed by the standby
	if err := harness.FailOver(ctx, primary, standby); err != nil {
		t.Fatal(err)
	}
	if standby.Port != primary.Port {
		t.Fatalf("after FailOver the standby is on port %d, the primary's is %d", standby.Port, primary.Port)
	}
	if got := psql(t, primary, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Fatalf("the primary's address after FailOver: pg_is_in_recovery() = %s", got)
	}
	if got := psql(t, primary, "SELECT count(*), max(a) FROM t"); got != "100|100" {
		t.Fatalf("the promoted standby has rows %q, want 100|100 (without the missed commit)", got)
	}
	if tl := timeline(t, primary); tl != 2 {
		t.Fatalf("timeline after FailOver = %d, want 2", tl)
	}
	if a, b := systemID(t, primary), systemID(t, standby); a != b {
		t.Fatalf("system identifiers differ after FailOver: %s, %s", a, b)
	}
	out, err := standby.Psql(ctx, "postgres", "INSERT INTO t VALUES (101) RETURNING a")
	if err != nil || out != "101" {
		t.Fatalf("write on the promoted standby: %q, %v", out, err)
	}
	if got := psql(t, primary, "SELECT current_setting('data_directory')"); !strings.HasPrefix(got, standby.Dir) {
		t.Fatalf("the DSN %s reaches data directory %s, want the standby's under %s", dsn, got, standby.Dir)
	}
	if err := primary.Restart(ctx); err == nil {
		t.Fatal("Restart of the failed-over primary succeeded")
	}
	if err := primary.Stop(); err != nil {
		t.Fatalf("Stop of the failed-over primary: %v", err)
	}
	// The promoted standby restarts as a primary on the same port.
	if err := standby.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := psql(t, primary, "SELECT pg_is_in_recovery(), count(*) FROM t"); got != "f|101" {
		t.Fatalf("after a restart of the promoted standby: %q", got)
	}
}

// syncPrimary starts a primary of PostgreSQL 17 or later (PG_VERSION's
// when it is, else 17's) or skips t when none is installed (fails it
// under REPLICATOR_E2E=1 only when PG_VERSION asked for it).
func syncPrimary(t *testing.T, ctx context.Context) *harness.Postgres {
	t.Helper()
	requireE2E(t)
	bin, major, err := harness.PGBinDirAtLeast(harness.SlotSyncVersion)
	if err != nil {
		if v, _ := harness.PGVersion(); errors.Is(err, harness.ErrNotInstalled) && v < harness.SlotSyncVersion {
			t.Skipf("slot synchronization needs PostgreSQL %d or later: %v", harness.SlotSyncVersion, err)
		}
		t.Fatal(err)
	}
	primary, err := harness.StartPostgres(ctx, harness.Options{Fast: true, Dir: t.TempDir(), Log: tlog{t}, PGBinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, primary)
	if primary.Major != major {
		t.Fatalf("started PostgreSQL %s from %s, want %d", primary.Version, bin, major)
	}
	return primary
}

// waitFor polls q on p until it returns want.
func waitFor(t *testing.T, p *harness.Postgres, q, want string, timeout time.Duration) {
	t.Helper()
	var got string
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err = p.Psql(context.Background(), "postgres", q); err == nil && got == want {
			return
		}
	}
	t.Fatalf("port %d: %s = %q (%v) after %s, want %q; log:\n%s", p.Port, q, got, err, timeout, want, p.LogTail(3000))
}

// TestStandbySyncSlots makes a slot-syncing standby (PostgreSQL 17+): the
// primary names the standby's physical slot in synchronized_standby_slots,
// the standby gets a synced copy of a failover logical slot that follows
// the primary's, and after FailOver the promoted server at the primary's
// address has that slot and decodes from it what is written there.
func TestStandbySyncSlots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	primary := syncPrimary(t, ctx)
	psql(t, primary, "CREATE TABLE t (a int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t")
	standby, err := primary.StartStandby(ctx, harness.StandbyOptions{SyncSlots: true})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, standby)
	if standby.PhysicalSlot == "" {
		t.Fatal("no physical slot named")
	}
	if got := psql(t, primary, "SHOW synchronized_standby_slots"); got != standby.PhysicalSlot {
		t.Fatalf("primary: synchronized_standby_slots = %q, want %q", got, standby.PhysicalSlot)
	}
	if got := psql(t, primary, fmt.Sprintf("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", standby.PhysicalSlot)); got != "t" {
		t.Fatalf("primary: physical slot %s active = %q", standby.PhysicalSlot, got)
	}
	for setting, want := range map[string]string{"sync_replication_slots": "on", "hot_standby_feedback": "on",
		"primary_slot_name": standby.PhysicalSlot, "synchronized_standby_slots": ""} {
		if got := psql(t, standby, "SHOW "+setting); got != want {
			t.Errorf("standby: %s = %q, want %q", setting, got, want)
		}
	}
	if got := psql(t, standby, "SHOW primary_conninfo"); !strings.Contains(got, "dbname=") {
		t.Errorf("standby: primary_conninfo %q names no database", got)
	}

	psql(t, primary, "SELECT pg_create_logical_replication_slot('ls', 'pgoutput', false, false, true)")
	psql(t, primary, "INSERT INTO t SELECT generate_series(1, 50)")
	// A consumer of the slot: the primary's slot moves past what the
	// standby reserved when a running-transactions record follows.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			primary.Psql(ctx, "postgres", "SELECT pg_log_standby_snapshot(); SELECT pg_replication_slot_advance('ls', pg_current_wal_lsn())")
		}
	}()
	psql(t, primary, "SELECT pg_replication_slot_advance('ls', pg_current_wal_lsn())")
	err = standby.WaitSlotSynced(ctx, "ls")
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if got := psql(t, standby, "SELECT failover FROM pg_replication_slots WHERE slot_name = 'ls'"); got != "t" {
		t.Fatalf("standby: the synced slot's failover = %q", got)
	}
	confirmed := psql(t, primary, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'ls'")
	waitFor(t, standby, fmt.Sprintf("SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots WHERE slot_name = 'ls'", confirmed), "t", time.Minute)

	psql(t, primary, "INSERT INTO t SELECT generate_series(51, 60)")
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := harness.FailOver(ctx, primary, standby); err != nil {
		t.Fatal(err)
	}
	if tl := timeline(t, primary); tl != 2 {
		t.Fatalf("timeline after FailOver = %d, want 2", tl)
	}
	if got := psql(t, primary, "SELECT count(*) FROM t"); got != "60" {
		t.Fatalf("promoted: %s rows, want 60", got)
	}
	if got := psql(t, primary, "SHOW synchronized_standby_slots"); got != "" {
		t.Errorf("promoted: synchronized_standby_slots = %q: its walsenders would wait for a standby it does not have", got)
	}
	if got := psql(t, primary, "SELECT synced, failover, confirmed_flush_lsn >= '"+confirmed+"' FROM pg_replication_slots WHERE slot_name = 'ls'"); got != "t|t|t" {
		t.Fatalf("promoted: slot ls synced|failover|confirmed >= %s = %q, want t|t|t", confirmed, got)
	}
	psql(t, primary, "INSERT INTO t VALUES (1000)")
	n, err := strconv.Atoi(psql(t, primary, `SELECT count(*) FROM pg_logical_slot_get_binary_changes('ls', NULL, NULL,
		'proto_version', '1', 'publication_names', 'p')`))
	if err != nil || n < 3 { // begin, relation, insert, commit of row 1000 at least
		t.Fatalf("promoted: decoding from the synced slot gave %d messages (%v)", n, err)
	}
}

// TestCopyDataDir copies a data directory and puts it back after writes, a
// new slot and an advanced one: the server is back at the copy's WAL
// position, rows and slots, with the same system and timeline; the copy
// serves a second put-back.
func TestCopyDataDir(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := harness.StartPostgres(ctx, harness.Options{Fast: true, Dir: t.TempDir(), Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, pg)
	psql(t, pg, "CREATE TABLE t (a int); INSERT INTO t VALUES (1); CREATE PUBLICATION p FOR TABLE t")
	psql(t, pg, "SELECT pg_create_logical_replication_slot('ls', 'pgoutput')")
	slot := psql(t, pg, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'ls'")
	id := systemID(t, pg)

	copy, err := pg.CopyDataDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := psql(t, pg, "SELECT pg_current_wal_lsn()")
	psql(t, pg, "INSERT INTO t SELECT generate_series(2, 20000)")
	psql(t, pg, "SELECT pg_replication_slot_advance('ls', pg_current_wal_lsn())")
	psql(t, pg, "SELECT pg_create_logical_replication_slot('ls2', 'pgoutput')")
	later := psql(t, pg, "SELECT pg_current_wal_lsn()")
	if got := psql(t, pg, fmt.Sprintf("SELECT '%s'::pg_lsn > '%s'", later, at)); got != "t" {
		t.Fatalf("WAL did not move: %s, then %s", at, later)
	}

	for round := 1; round <= 2; round++ {
		if err := pg.PutBackDataDir(ctx, copy); err != nil {
			t.Fatal(err)
		}
		if got := psql(t, pg, "SELECT count(*) FROM t"); got != "1" {
			t.Fatalf("put-back %d: %s rows, want 1", round, got)
		}
		if got := psql(t, pg, fmt.Sprintf("SELECT pg_current_wal_lsn() < '%s'", later)); got != "t" {
			t.Fatalf("put-back %d: WAL position %s is not back before %s", round, psql(t, pg, "SELECT pg_current_wal_lsn()"), later)
		}
		if got := psql(t, pg, "SELECT string_agg(slot_name || '@' || confirmed_flush_lsn, ',') FROM pg_replication_slots"); got != "ls@"+slot {
			t.Fatalf("put-back %d: slots %q, want ls@%s", round, got, slot)
		}
		if got := systemID(t, pg); got != id {
			t.Fatalf("put-back %d: system identifier %s, want %s", round, got, id)
		}
		if tl := timeline(t, pg); tl != 1 {
			t.Fatalf("put-back %d: timeline %d, want 1", round, tl)
		}
		psql(t, pg, "INSERT INTO t VALUES (2)") // writes go on from there
	}
}

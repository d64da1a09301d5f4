package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// manualRecovery makes e's daemon stop on a history break instead of
// copying every table again.
func (e *env) manualRecovery() {
	e.t.Helper()
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(src), `publication = "pub_`, `recovery = "manual"
  publication = "pub_`, 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// sameShapeUpdate commits one update of event 1's target_type to v and
// returns the WAL insert position after its commit and its xid.
func (e *env) sameShapeUpdate(v string) (lsn, xid string) {
	e.t.Helper()
	ctx := context.Background()
	// (The pool's connections died with a restart of the server: the
	// first attempts may fail, writing nothing.)
	for i := 0; ; i++ {
		err := e.pg.QueryRow(ctx, "UPDATE events SET target_type = $1 WHERE id = 1 RETURNING xmin::text", v).Scan(&xid)
		if err == nil {
			break
		}
		if i == 20 {
			e.t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.pg.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	return lsn, xid
}

// TestPutBackSameShapeTransaction: the data directory is copied (server
// stopped) and put back after one update that ClickHouse stored; the
// server, started from the very same state, then commits an update of
// the same shape with other values. Its commit record lands at the same
// LSN with the same xid (xids are handed out again from the copy's
// state), so the witness (commit LSN + xid) cannot tell the two
// histories apart: the daemon streams on and skips the new history's
// transaction as already stored. ClickHouse keeps a value that Postgres
// never had in this history. The commit time, which the Begin message
// carries, differs and would tell.
func TestPutBackSameShapeTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newEnv(t, "")
	primary := e.privatePrimary(ctx)
	e.manualRecovery()
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	e.converge("before the copy", convergeTimeout)
	d.stop(t)
	copied, err := primary.CopyDataDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.pg.Reset() // (the server restarted: its pooled connections are gone)
	// The lost history: one update, stored by the daemon.
	lsn1, xid1 := e.sameShapeUpdate("lost-history")
	d = e.start()
	e.converge("the lost history", convergeTimeout)
	d.stop(t)
	if err := primary.PutBackDataDir(ctx, copied); err != nil {
		t.Fatal(err)
	}
	e.pg.Reset()                        // (the server restarted: its pooled connections are gone)
	time.Sleep(1100 * time.Millisecond) // (another commit second)
	lsn2, xid2 := e.sameShapeUpdate("new-history!")
	if lsn1 != lsn2 || xid1 != xid2 {
		t.Skipf("precondition: the new history's update is at %s xid %s, the lost one's at %s xid %s", lsn2, xid2, lsn1, xid1)
	}
	t.Logf("both histories commit an update at %s (insert position after it) with xid %s", lsn1, xid1)
	// WAL past the checkpoint.
	e.exec("CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g")
	d = e.start()
	select {
	case <-d.done:
		if !strings.Contains(d.Logs(), "diverged") {
			t.Fatalf("the daemon stopped, but not for a diverged history:\n%s", tail(d.Logs(), 3000))
		}
		return
	case <-time.After(45 * time.Second):
	}
	var ch string
	if err := e.ch.QueryRow(ctx, fmt.Sprintf("SELECT target_type FROM db_%s.events_live WHERE id = 1", e.name)).Scan(&ch); err != nil {
		t.Fatal(err)
	}
	var pg string
	if err := e.pg.QueryRow(ctx, "SELECT target_type FROM events WHERE id = 1").Scan(&pg); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	t.Fatalf("the daemon streams on a history that does not continue the checkpoint's: event 1 has target_type %q in ClickHouse, "+
		"%q in Postgres\n%s", ch, pg, tail(d.Logs(), 2000))
}

// pgLSN returns q's pg_lsn result as a number, retrying while the pool's
// connections are those a restart of the server ended.
func (e *env) pgLSN(q string) uint64 {
	e.t.Helper()
	for i := 0; ; i++ {
		var l uint64
		err := e.pg.QueryRow(context.Background(), "SELECT ("+q+" - '0/0'::pg_lsn)::bigint").Scan(&l)
		if err == nil {
			return l
		}
		if i == 20 {
			e.t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastStored returns the newest checkpoint's newest stored transaction.
func (e *env) lastStored() uint64 {
	e.t.Helper()
	var l uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT argMax(last_lsn, (epoch, lsn)) FROM db_%s.replicator_checkpoints", e.name)).Scan(&l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

// TestPutBackIdleGap: the checkpoint is an idle position far past the
// newest stored transaction (the lost history wrote WAL but no
// transaction of the publication: here a WAL segment switch). The data
// directory put back, the new history commits an event in that gap and
// its WAL grows past the checkpoint. Nothing at connect tells, and the
// witness, which looks at the newest stored transaction only (or at
// nothing when the slot confirmed past it), lets the daemon stream from
// the checkpoint: Postgres skips the event, which never reaches
// ClickHouse. In the continuing history no transaction of the
// publication commits between the newest stored one and an idle
// checkpoint, so one that does is proof of another history.
func TestPutBackIdleGap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newEnv(t, "")
	primary := e.privatePrimary(ctx)
	e.manualRecovery()
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	e.insertEvents(10)
	e.converge("before the copy", convergeTimeout)
	d.stop(t)
	copied, err := primary.CopyDataDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.pg.Reset() // (the server restarted: its pooled connections are gone)
	// The lost history: WAL, but no transaction of the publication.
	d = e.start()
	last := e.lastStored()
	switched := e.pgLSN("pg_switch_wal()")
	end := e.pgLSN("pg_current_wal_lsn()")
	for deadline := time.Now().Add(convergeTimeout); e.checkpointLSN() < end; {
		if time.Now().After(deadline) {
			t.Fatalf("the checkpoint does not reach %s\n%s", lsnString(end), tail(d.Logs(), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(t)
	cp := e.checkpointLSN()
	if got := e.lastStored(); got != last {
		t.Fatalf("precondition: a transaction was stored in the lost history (%s, before %s)", lsnString(got), lsnString(last))
	}
	t.Logf("lost history: newest stored transaction %s, WAL switched at %s, checkpoint %s", lsnString(last), lsnString(switched), lsnString(cp))
	if err := primary.PutBackDataDir(ctx, copied); err != nil {
		t.Fatal(err)
	}
	e.pg.Reset() // (the server restarted: its pooled connections are gone)
	// The new history: an event in the gap, then WAL past the checkpoint.
	e.pgLSN("pg_current_wal_lsn()")
	e.exec(`INSERT INTO events (project_id, author_id, action, target_type, fingerprint) VALUES (4242, 1, 1, 'gap', '\x01')`)
	at := e.pgLSN("pg_current_wal_insert_lsn()")
	if at >= cp {
		t.Fatalf("precondition: the new history's event commits at %s, past the checkpoint %s", lsnString(at), lsnString(cp))
	}
	e.exec("CREATE TABLE gapfill (i int)")
	for e.pgLSN("pg_current_wal_lsn()") < cp+1<<20 {
		e.exec("INSERT INTO gapfill VALUES (1)")
		e.pgLSN("pg_switch_wal()")
	}
	t.Logf("new history: event committed below %s, WAL at %s", lsnString(at), lsnString(e.pgLSN("pg_current_wal_lsn()")))
	d = e.start()
	select {
	case <-d.done:
		if !strings.Contains(d.Logs(), "diverged") {
			t.Fatalf("the daemon stopped, but not for a diverged history:\n%s", tail(d.Logs(), 3000))
		}
		return
	case <-time.After(30 * time.Second):
	}
	var ch uint64
	if err := e.ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM db_%s.events_live WHERE project_id = 4242", e.name)).Scan(&ch); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	t.Fatalf("the daemon streams on a history that does not continue the checkpoint's: the event it committed at %s, below "+
		"the checkpoint %s, is in ClickHouse %d times (Postgres has it once)\n%s", lsnString(at), lsnString(cp), ch, tail(d.Logs(), 2000))
}

// TestRestartAfterStreamedTransaction: the newest stored transaction was
// streamed in progress (protocol 2), and the daemon dies after its
// checkpoint, before acknowledging it. The next session starts at its
// commit LSN, where Postgres sends it again after its commit, as one
// transaction: the same xid and commit time, so the history continues,
// and the daemon must not call it diverged.
func TestRestartAfterStreamedTransaction(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(10)
	e.setup()
	d := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-checkpoint:1")
	e.insertEvents(20000)
	if code := d.wait(t, convergeTimeout); code == 0 {
		t.Fatalf("the daemon did not die after its checkpoint:\n%s", tail(d.Logs(), 2000))
	}
	if !strings.Contains(d.Logs(), "streamed transaction committed") {
		t.Fatalf("the transaction was not streamed:\n%s", tail(d.Logs(), 2000))
	}
	d = e.start()
	e.insertEvents(3)
	e.converge("after the restart", convergeTimeout)
	d.stop(t)
	if strings.Contains(d.Logs(), "diverged") || strings.Contains(d.Logs(), "does not continue") {
		t.Fatalf("a continuing history was called broken:\n%s", tail(d.Logs(), 3000))
	}
}

// countIn returns count() of from (a table and a condition) in e's
// ClickHouse database.
func (e *env) countIn(from string) uint64 {
	e.t.Helper()
	return e.chCount(fmt.Sprintf("SELECT count() FROM db_%s.%s", e.name, from))
}

// TestRecoveryKeepsWhatPostgresDoesNotHave: a history-mode table holds
// every change, and a table that ignores deletes keeps the rows Postgres
// deleted: neither is a copy of Postgres, so a copy again cannot give back
// what ClickHouse alone had. The slot is dropped under the daemon; the
// automatic recovery puts a copy of Postgres in place of both tables and
// keeps each previous copy under <target>_before_epoch2, saying so.
func TestRecoveryKeepsWhatPostgresDoesNotHave(t *testing.T) {
	e := newEnv(t, histConfig)
	e.exec(histDDL)
	e.exec("INSERT INTO hist SELECT g, 0, 's' FROM generate_series(1, 10) g")
	e.exec("INSERT INTO keep SELECT g, g FROM generate_series(1, 20) g")
	e.setup()
	d := e.start()
	e.exec("UPDATE hist SET qty = 5 WHERE id = 1")
	e.exec("DELETE FROM keep WHERE id <= 5")
	e.exec("INSERT INTO keep VALUES (21, 21)")
	for deadline := time.Now().Add(convergeTimeout); e.countIn("hist FINAL WHERE _op = 'update'") != 1 || e.countIn("keep FINAL") != 21; {
		if time.Now().After(deadline) {
			t.Fatalf("the changes did not arrive\n%s", tail(d.Logs(), 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.dropSlotUnderDaemon()
	if !d.waitLog(t, 2*convergeTimeout, "complete: every table holds the rows of the server's history") {
		t.FailNow()
	}
	e.exec("INSERT INTO keep VALUES (22, 22)")
	for deadline := time.Now().Add(convergeTimeout); e.countIn("keep FINAL WHERE id = 22") != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("not streaming after the recovery\n%s", tail(d.Logs(), 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	updates, kept := e.countIn("hist_before_epoch2 FINAL WHERE _op = 'update'"), e.countIn("keep_before_epoch2 FINAL")
	d.stop(t)
	if updates != 1 || kept != 21 {
		t.Fatalf("after the recovery the previous history table holds %d update rows (want 1: the update committed before the "+
			"checkpoint), and the previous table that ignores deletes %d rows (want 21: the 5 rows Postgres deleted are kept)", updates, kept)
	}
	for _, target := range []string{"hist", "keep"} {
		if !strings.Contains(d.Logs(), "WARNING: "+target+" keeps rows that Postgres does not have") {
			t.Errorf("the recovery does not say it kept the previous copy of %s:\n%s", target, tail(d.Logs(), 2000))
		}
	}
	if n := e.countIn("keep FINAL"); n != 17 {
		t.Errorf("keep holds %d rows after the recovery, want Postgres' 17", n)
	}
}

// TestCommittedViewCommitAtIdlePosition: an idle checkpoint names a
// position P (a keepalive's WAL end), and a transaction may commit
// exactly there (DESIGN invariant 6): its commit checkpoint is then (P,
// commit = 1) in the same epoch, beside (P, commit = 0). The committed
// views must show that transaction's rows (_version = P): the bound is
// lsn + commit of the newest position, and (P, 1) is newer than (P, 0).
// argMax(lsn + commit, (epoch, lsn)) ties on (epoch, lsn) and takes the
// first row, the idle one.
func TestCommittedViewCommitAtIdlePosition(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(10)
	e.setup()
	p := e.checkpointLSN() + 0x1000
	slot := "slot_" + e.name
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, commit := range []int{0, 1} {
		if err := e.ch.Exec(ctx, fmt.Sprintf("INSERT INTO db_%s.replicator_checkpoints (slot, lsn, commit, commit_time, written_at, epoch) "+
			"SELECT '%s', %d, %d, now(), now(), 1", e.name, slot, p, commit)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.ch.Exec(ctx, fmt.Sprintf("INSERT INTO db_%s.events (id, _version) SELECT 999999, %d", e.name, p)); err != nil {
		t.Fatal(err)
	}
	if n := e.countIn("events_committed WHERE id = 999999"); n != 1 {
		var bound uint64
		e.ch.QueryRow(ctx, fmt.Sprintf("SELECT argMax(lsn + commit, (epoch, lsn)) FROM db_%s.replicator_checkpoints WHERE slot = '%s'",
			e.name, slot)).Scan(&bound)
		t.Fatalf("the committed view does not show the transaction that committed at the idle position %d (bound %d)", p, bound)
	}
}

// TestRecoveryOfTwoTablesKilledBetween: a recovery of two tables is
// killed once the first is in place (its copy from the new slot, the
// other still the lost history's); the next start takes the recovery up
// and ends with both tables equal to Postgres, verify passing, and the
// stream going on.
func TestRecoveryOfTwoTablesKilledBetween(t *testing.T) {
	e := newEnv(t, `
table "public.items" {
  order_by = ["id"]
}
`)
	e.exec("CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL)")
	e.exec("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g")
	e.insertEvents(3000)
	e.setup()
	d := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-in-recovery:1")
	e.exec("UPDATE items SET v = 'x' WHERE id <= 10")
	e.insertEvents(5)
	e.converge("before the break", convergeTimeout)
	e.dropSlotUnderDaemon()
	e.exec("DELETE FROM items WHERE id > 490")
	if code := d.wait(t, 2*convergeTimeout); code == 0 || !strings.Contains(d.Logs(), "(1 of 2 tables in place)") {
		t.Fatalf("the daemon did not die with one table in place: exit %d\n%s", code, tail(d.Logs(), 3000))
	}
	d = e.start()
	if !d.waitLog(t, 2*convergeTimeout, "complete: every table holds the rows of the server's history") {
		t.FailNow()
	}
	e.exec("UPDATE items SET v = 'y' WHERE id = 1")
	e.insertEvents(5)
	e.converge("after the recovery", convergeTimeout)
	for deadline := time.Now().Add(convergeTimeout); e.countIn("items_live WHERE v = 'y'") != 1 || e.countIn("items_live") != 490; {
		if time.Now().After(deadline) {
			t.Fatalf("items: %d live rows, %d with v = 'y'\n%s", e.countIn("items_live"), e.countIn("items_live WHERE v = 'y'"), tail(d.Logs(), 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, errs, code := e.cli("verify", "--config", e.config)
	d.stop(t)
	if code != 0 {
		t.Fatalf("verify exited %d:\n%s\n%s", code, out, errs)
	}
}

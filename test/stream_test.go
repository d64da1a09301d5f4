package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The shared Postgres of the end-to-end tests streams every transaction
// whose decoded changes exceed this: most tests' larger transactions
// reach the daemon as in-progress transactions (protocol version 2).
const testDecodingWorkMem = "64kB"

// streamConfig keeps at most 64 KiB of streamed transactions in memory,
// so that the test's streamed transactions spill to files.
func streamConfig(dir string) string {
	return fmt.Sprintf(`
stream {
  spill_dir = %q
  memory    = "64KiB"
}
`, dir)
}

// spillFiles lists the spill directory.
func spillFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// waitSpool waits until the spool's metrics satisfy ok.
func waitSpool(t *testing.T, e *env, ok func(open, disk float64) bool, what string) {
	t.Helper()
	var m string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		m = e.scrape()
		if ok(metric(m, "replicator_streamed_transactions_open"), metric(m, "replicator_stream_spool_disk_bytes")) {
			return
		}
	}
	t.Fatalf("the metrics do not show %s: open %v, memory %v, disk %v", what, metric(m, "replicator_streamed_transactions_open"),
		metric(m, "replicator_stream_spool_memory_bytes"), metric(m, "replicator_stream_spool_disk_bytes"))
}

// waitSpilled waits until a spill file exists: the daemon holds part of a
// transaction that has not committed.
func waitSpilled(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for time.Now().Before(deadline) {
		if f := spillFiles(t, dir); len(f) > 0 {
			return f[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no spill file in %s: the open transaction was not streamed", dir)
	return ""
}

// TestStreamedTransactions runs large transactions that Postgres streams
// while they run (logical_decoding_work_mem is 64kB on the test server)
// among a writer's small ones: committed, aborted, and with savepoints
// rolled back (one of them the first change of a table), while the daemon
// is killed before a streamed transaction commits and in the middle of
// writing one after its commit. ClickHouse ends equal to Postgres, verify
// agrees, and no spill file is left.
func TestStreamedTransactions(t *testing.T) {
	if major := pgMajor(t); major < 14 {
		t.Skipf("PostgreSQL %d sends a transaction after its commit (protocol 1): TestLargeTransactionsOnEveryProtocol covers it", major)
	}
	spill := filepath.Join(t.TempDir(), "spill")
	e := newEnv(t, itemsConfig+streamConfig(spill))
	e.exec(itemsDDL)
	e.insertEvents(500)
	e.setup()
	d := e.start()
	ctx := context.Background()

	// Small transactions among the large ones, stopped for each
	// comparison.
	var small atomic.Int64
	writer := func() (stop func()) {
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				q := fmt.Sprintf(`BEGIN; INSERT INTO events (project_id, author_id, action, target_type) VALUES (%d, 7, 1, 'Small');
					UPDATE events SET action = (action + 1) %% 200 WHERE id = %d;
					DELETE FROM events WHERE target_type = 'Small' AND id %% 7 = %d; COMMIT`, i%100, 1+i%500, i%7)
				if _, err := e.pg.Exec(ctx, q); err == nil {
					small.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		return func() { cancel(); wg.Wait() }
	}
	stopWriter := writer()
	tx := func() pgx.Tx {
		t.Helper()
		x, err := e.pg.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A failed step leaves no open transaction to block the cleanup.
		t.Cleanup(func() { x.Rollback(context.Background()) })
		return x
	}
	run := func(x pgx.Tx, sql string) {
		t.Helper()
		if _, err := x.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	bulk := func(n, action int, tt string) string {
		return fmt.Sprintf(`INSERT INTO events (project_id, author_id, action, target_type, fingerprint)
			SELECT g %% 100, g %% 50 + 1, %d, '%s', decode(md5(g::text), 'hex') FROM generate_series(1, %d) g`, action, tt, n)
	}

	// 1. A committed transaction, open while small ones commit: inserts,
	// updates twice, deletes.
	x := tx()
	run(x, bulk(3000, 10, "Big"))
	waitSpilled(t, spill)
	waitSpool(t, e, func(open, disk float64) bool { return open >= 1 && disk > 0 }, "an open streamed transaction with bytes on disk")
	time.Sleep(200 * time.Millisecond)
	run(x, `UPDATE events SET action = 11 WHERE target_type = 'Big' AND id % 3 = 0`)
	run(x, `UPDATE events SET action = 12, target_id = 5 WHERE target_type = 'Big' AND id % 9 = 0`)
	run(x, `DELETE FROM events WHERE target_type = 'Big' AND id % 5 = 0`)
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	waitSpool(t, e, func(open, disk float64) bool { return open == 0 && disk == 0 }, "nothing held after the commit")

	// 2. An aborted one.
	x = tx()
	run(x, bulk(3000, 20, "Aborted"))
	run(x, `UPDATE events SET action = 21 WHERE id <= 300`)
	time.Sleep(200 * time.Millisecond)
	if err := x.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// 3. Savepoints: one rolled back holds the transaction's first change of
	// items (its Relation message), one released inside it, one released.
	x = tx()
	run(x, bulk(1500, 30, "Saved"))
	run(x, `SAVEPOINT a`)
	run(x, `INSERT INTO items SELECT g, 1, 'rolled back' FROM generate_series(1, 1000) g`)
	run(x, bulk(1500, 31, "RolledBack"))
	run(x, `SAVEPOINT b`)
	run(x, `UPDATE events SET action = 32 WHERE target_type = 'Saved'`)
	run(x, `RELEASE b`)
	run(x, `ROLLBACK TO a`)
	run(x, `INSERT INTO items SELECT g, 2, 'kept' FROM generate_series(1, 1500) g`)
	run(x, `SAVEPOINT c`)
	run(x, `UPDATE events SET action = 33 WHERE target_type = 'Saved' AND id % 2 = 0`)
	run(x, `DELETE FROM items WHERE id % 4 = 0`)
	run(x, `RELEASE c`)
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	stopWriter()
	e.converge("committed, aborted and savepoint transactions", convergeTimeout)
	e.convergeItems("items after savepoints", "id, qty, note", "toString(id), '|', toString(qty), '|', note")

	// 4. Kill -9 while a streamed transaction is open: the restarted
	// daemon receives it again from its start.
	stopWriter = writer()
	x = tx()
	run(x, bulk(4000, 40, "Open"))
	stale := waitSpilled(t, spill)
	d.kill()
	if f := spillFiles(t, spill); len(f) == 0 {
		t.Fatalf("the killed daemon's spill file %s is gone before the restart", stale)
	}
	d = e.start()
	run(x, `UPDATE events SET action = 41 WHERE target_type = 'Open' AND id % 2 = 1`)
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	stopWriter()
	e.converge("transaction open across a kill -9", convergeTimeout)

	// 4b. The same with a savepoint whose changes were streamed before the
	// kill and that is rolled back after the restart.
	stopWriter = writer()
	x = tx()
	run(x, bulk(1500, 42, "OpenSaved"))
	run(x, `SAVEPOINT a`)
	run(x, bulk(3000, 43, "OpenRolledBack"))
	waitSpilled(t, spill)
	time.Sleep(300 * time.Millisecond)
	d.kill()
	d = e.start()
	time.Sleep(time.Second)
	run(x, `ROLLBACK TO a`)
	run(x, bulk(500, 44, "OpenAfter"))
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	stopWriter()
	e.converge("savepoint rolled back after a kill -9", convergeTimeout)

	// 5. Crash in the middle of writing a streamed transaction after its
	// commit: rows are written, the checkpoint is not. Its rows fill two
	// flushes (max_rows 20000): the crash follows the second one's INSERT,
	// the flush that its commit checkpoint belongs to.
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("stop exited %d", code)
	}
	d = e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-insert-of-flush:2")
	x = tx()
	run(x, bulk(30000, 50, "Crash"))
	run(x, `UPDATE events SET action = 51 WHERE target_type = 'Crash' AND id % 4 = 0`)
	// Read in another session before the COMMIT: its commit record starts
	// at or above this position, and every earlier commit below it.
	var beforeCommit uint64
	if err := e.pg.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'`).Scan(&beforeCommit); err != nil {
		t.Fatal(err)
	}
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var committed uint64
	if err := e.pg.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'`).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, convergeTimeout); code == 0 {
		t.Fatalf("the daemon did not crash after its insert\n%s", tail(d.Logs(), 3000))
	}
	// No commit checkpoint names the transaction whose write crashed, and
	// no position checkpoint is past its commit.
	if cps := e.checkpoints(); len(cps) > 0 && cps[len(cps)-1] >= beforeCommit {
		t.Fatalf("commit checkpoint %d names the transaction (WAL %d before its commit) whose write crashed", cps[len(cps)-1], beforeCommit)
	}
	if after := e.checkpointLSN(); after >= committed {
		t.Fatalf("checkpoint %d covers the transaction (WAL %d after its commit) whose write crashed", after, committed)
	}
	d = e.start()
	e.converge("streamed transaction replayed after a crash after insert", convergeTimeout)
	// The crashed process wrote every row: the restarted one writes them
	// again and checkpoints the transaction. (Its commit checkpoint row
	// may be merged away by a later idle checkpoint: the newest
	// checkpoint of either kind reaching the commit is what counts.)
	for deadline := time.Now().Add(convergeTimeout); ; time.Sleep(100 * time.Millisecond) {
		if commit, ok := streamedCommit(d.Logs(), beforeCommit); ok && e.checkpointLSN() >= commit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted daemon did not checkpoint the transaction\n%s", tail(d.Logs(), 3000))
		}
	}

	if !strings.Contains(d.Logs(), "protocol=\"2 (in-progress transactions streamed)\"") {
		t.Errorf("the daemon's log does not name protocol 2:\n%s", tail(d.Logs(), 2000))
	}
	out, _, _ := e.cli("status", "--config", e.config)
	if !strings.Contains(out, "2 (in-progress transactions streamed)") {
		t.Errorf("status does not name protocol 2:\n%s", out)
	}
	vout, verrs, code := e.cli("verify", "--config", e.config)
	if code != 0 {
		t.Fatalf("verify exited %d\n%s\n%s", code, vout, verrs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("stop exited %d", code)
	}
	if f := spillFiles(t, spill); len(f) != 0 {
		t.Errorf("spill files left after a clean stop: %v", f)
	}
	t.Logf("%d small transactions among the streamed ones", small.Load())
}

// TestSlowFlushKeepsTheSession runs flushes that take longer than the
// walsender's timeout while the stream loop waits for them to land (a full
// buffer waits for the flight before it): the daemon keeps answering, so
// Postgres does not end the replication connection and the session never
// replays from its checkpoint.
func TestSlowFlushKeepsTheSession(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	dsn := pgServer.DSN(e.name)
	cfg := strings.Replace(string(src), "max_rows  = 20000", "max_rows  = 5", 1)
	cfg = strings.Replace(cfg, dsn, dsn+"&options=-c%20wal_sender_timeout%3D2s", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := e.startWith(e.config, "REPLICATOR_TEST_FAULT=slow-insert:4")
	walsender := func() int32 {
		var pid *int32
		if err := e.pg.QueryRow(context.Background(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
			"slot_"+e.name).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if pid == nil {
			return 0
		}
		return *pid
	}
	var first int32
	for deadline := time.Now().Add(20 * time.Second); first == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		first = walsender()
	}
	if first == 0 {
		t.Fatal("the daemon did not start streaming")
	}
	for i := 0; i < 20; i++ {
		e.exec("INSERT INTO events (author_id, action) VALUES ($1, 1)", i)
		time.Sleep(100 * time.Millisecond)
	}
	e.converge("slow flushes", 90*time.Second)
	if pid := walsender(); pid != first {
		t.Fatalf("the replication connection was replaced (walsender %d, then %d)", first, pid)
	}
	if logs := d.Logs(); strings.Contains(logs, "reconnecting") || strings.Contains(logs, "starting again") {
		t.Fatalf("the session restarted:\n%s", tail(logs, 3000))
	}
}

// streamedCommit returns the commit LSN of the first streamed transaction
// that a daemon's debug log says committed at or above from.
func streamedCommit(logs string, from uint64) (uint64, bool) {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "streamed transaction committed") {
			continue
		}
		_, after, ok := strings.Cut(line, " commit=")
		if !ok {
			continue
		}
		var hi, lo uint64
		if _, err := fmt.Sscanf(after, "%X/%X", &hi, &lo); err == nil && hi<<32|lo >= from {
			return hi<<32 | lo, true
		}
	}
	return 0, false
}

package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/test/harness"
)

// checkpointRows returns the checkpoint table's rows as "epoch/system/timeline"
// strings, one per distinct history.
func (e *env) checkpointHistories() []string {
	e.t.Helper()
	rows, err := e.ch.Query(context.Background(), fmt.Sprintf(
		"SELECT DISTINCT concat(toString(epoch), '/', toString(system_id), '/', toString(timeline)) AS h "+
			"FROM db_%s.replicator_checkpoints WHERE slot = 'slot_%s' ORDER BY h", e.name, e.name))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// dropSlotUnderDaemon ends the daemon's walsender and drops the slot
// before the daemon reconnects.
func (e *env) dropSlotUnderDaemon() {
	e.t.Helper()
	slot := "slot_" + e.name
	for deadline := time.Now().Add(30 * time.Second); ; {
		e.pg.Exec(context.Background(), "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot)
		_, err := e.pg.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("drop slot %s: %v", slot, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// growingWorkload inserts and updates events (it deletes nothing, so the
// table never shrinks) until ctx ends; wait returns the committed
// statements. It tolerates a server that goes away.
func (e *env) growingWorkload(ctx context.Context, writers int) (wait func() int) {
	var wg sync.WaitGroup
	var total atomic.Int64
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				q := `INSERT INTO events (project_id, author_id, action, target_type, fingerprint)
					SELECT g, g % 50 + 1, g % 10, 'Issue', decode(md5(random()::text), 'hex') FROM generate_series(1, 5) g`
				if i%2 == 1 {
					q = `UPDATE events SET fingerprint = decode(md5(random()::text), 'hex'), action = (action + 1) % 10, updated_at = now()
						WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT 5)`
				}
				if _, err := e.pg.Exec(context.Background(), q); err == nil {
					total.Add(1)
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}
	return func() int { wg.Wait(); return int(total.Load()) }
}

// liveCount returns the rows of view (e.g. "events_live").
func (e *env) liveCount(view string) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.%s", e.name, view)).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// readersNeverBelow polls the live and the committed view of events until
// ctx ends, and fails the test if either returns fewer than floor rows: an
// emptied or partial table. Queries that fail (a view made again in the
// instant of a swap) are counted, not failures.
func (e *env) readersNeverBelow(ctx context.Context, wg *sync.WaitGroup, floor uint64) {
	e.readersOf(ctx, wg, floor, "events_live", "events_committed")
}

// readersOf is readersNeverBelow on views.
func (e *env) readersOf(ctx context.Context, wg *sync.WaitGroup, floor uint64, views ...string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		polls, failed, first := 0, 0, ""
		for ; ctx.Err() == nil; polls++ {
			for _, view := range views {
				var n uint64
				err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.%s", e.name, view)).Scan(&n)
				switch {
				case err != nil:
					if failed++; first == "" {
						first = fmt.Sprintf(" (the first at %s: %v)", time.Now().UTC().Format("15:04:05.000"), err)
					}
				case n < floor:
					e.t.Errorf("%s returned %d rows, fewer than the %d readers saw before (poll %d, at %s)", view, n, floor, polls,
						time.Now().UTC().Format("15:04:05.000"))
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.t.Logf("readers: %d polls, %d queries failed%s, never fewer than %d rows", polls, failed, first, floor)
	}()
}

// breakUnderWriter starts a daemon on e (set up with rows) under a
// growing workload, breaks the history with brk while readers poll, and
// returns the daemon and a function that stops the writer and the readers.
func (e *env) breakUnderWriter(d *daemon, brk func()) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.growingWorkload(ctx, 2)
	e.checkpointPasses(d, e.checkpointLSN(), "streaming")
	floor := min(e.liveCount("events_live"), e.liveCount("events_committed"))
	rctx, rcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.readersNeverBelow(rctx, &wg, floor)
	brk()
	return func() {
		cancel()
		wait()
		rcancel()
		wg.Wait()
	}
}

// healed waits for the end of a recovery not logged before, then for
// every row of events to agree, and for verify to agree.
func (e *env) healed(d *daemon, stop func()) {
	e.t.Helper()
	const done = "complete: every table holds the rows of the server's history"
	for deadline := time.Now().Add(convergeTimeout); strings.Count(d.Logs(), done) <= d.recoveries; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("the daemon's log does not say %q (recovery %d)\n%s", done, d.recoveries+1, tail(d.Logs(), 3000))
		}
	}
	d.recoveries++
	stop()
	e.converge("after the recovery", convergeTimeout)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		e.t.Errorf("verify after the recovery: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestSlotDroppedHeals: the slot is dropped while the daemon streams under
// a writer. The daemon, never restarted, copies every table again from a
// new slot while readers keep seeing the previous copy, and ends exact,
// its positions in history epoch 2.
func TestSlotDroppedHeals(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(3000)
	e.setup()
	if h := e.checkpointHistories(); len(h) != 1 || !strings.HasPrefix(h[0], "1/") || strings.Contains(h[0], "/0/") {
		t.Fatalf("setup's checkpoint has no history: %v", h)
	}
	d := e.start()
	stop := e.breakUnderWriter(d, e.dropSlotUnderDaemon)
	e.healed(d, stop)
	if h := e.checkpointHistories(); len(h) != 2 || !strings.HasPrefix(h[1], "2/") {
		t.Errorf("the new slot's positions are not in epoch 2: %v", h)
	}
	e.insertEvents(10)
	e.converge("streaming after the recovery", convergeTimeout)
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("the daemon exited %d", code)
	}
}

// TestSlotDroppedManualRecovery: with postgres.recovery = "manual" the
// daemon stops with the reason and the command, saving nothing after it;
// `replicator resync --all` is killed once after the first table is in
// place, then run again to the end, readers never seeing fewer rows; the
// daemon then ends exact.
func TestSlotDroppedManualRecovery(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 2000) g")
	e.insertEvents(3000)
	e.manualRecovery()
	e.setup()
	d := e.start()
	stop := e.breakUnderWriter(d, e.dropSlotUnderDaemon)
	e.refuses(d, "slot-missing")
	before := e.checkpointLSN()
	if !strings.Contains(d.Logs(), "replicator resync --all") {
		t.Errorf("the error does not name the command:\n%s", tail(d.Logs(), 2000))
	}
	time.Sleep(2 * time.Second)
	if after := e.checkpointLSN(); after != before {
		t.Fatalf("a checkpoint was saved after the refusal: %d, then %d", before, after)
	}
	cmd := exec.Command(binary, "resync", "--all", "--config", e.config)
	cmd.Env = append(os.Environ(), "REPLICATOR_TEST_FAULT=crash-in-recovery:1")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "1 of 2 tables in place") || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("resync --all did not stop after the first table:\n%s", out)
	}
	if o, errs, _ := e.cli("status", "--config", e.config); !strings.Contains(o, "1 of 2 tables in place") {
		t.Errorf("status does not show the recovery under way:\n%s\n%s", o, errs)
	}
	d = e.start()
	e.refuses(d, "a recovery of slot")
	if o, errs, code := e.cli("resync", "--all", "--config", e.config); code != 0 || !strings.Contains(o, "continuing the recovery") {
		t.Fatalf("resync --all again: exit %d\n%s\n%s", code, o, errs)
	}
	d = e.start()
	e.insertEvents(10)
	stop()
	e.converge("after the recovery", convergeTimeout)
	e.itemsExact("after the recovery")
	d.stop(t)
}

// TestCheckpointsOfAnEarlierVersion: a checkpoint table made by a version
// that recorded no history (no epoch in its sorting key, no identity) is
// brought up to date at start; the daemon records the server's history with
// its positions from then on and says so, and stays exact.
func TestCheckpointsOfAnEarlierVersion(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(200)
	e.setup()
	d := e.start()
	e.insertEvents(50)
	e.converge("before", convergeTimeout)
	d.stop(t)
	db := "db_" + e.name
	if _, err := chServer.Query(context.Background(), fmt.Sprintf(`
CREATE TABLE %[1]s.old_checkpoints (slot String, lsn UInt64, commit UInt8, commit_time DateTime('UTC'), written_at DateTime('UTC'))
  ENGINE = ReplacingMergeTree(lsn) ORDER BY slot;
INSERT INTO %[1]s.old_checkpoints SELECT slot, lsn, commit, commit_time, written_at FROM %[1]s.replicator_checkpoints;
DROP TABLE %[1]s.replicator_checkpoints;
RENAME TABLE %[1]s.old_checkpoints TO %[1]s.replicator_checkpoints`, db)); err != nil {
		t.Fatal(err)
	}
	d = e.start()
	e.insertEvents(50)
	e.converge("after the upgrade", convergeTimeout)
	e.waitLog(d, "recording the Postgres history with the checkpoints")
	e.checkpointPasses(d, e.checkpointLSN(), "after the upgrade")
	d.stop(t)
	var sorting string
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT sorting_key FROM system.tables WHERE database = '%s' AND name = 'replicator_checkpoints'", db)).Scan(&sorting); err != nil {
		t.Fatal(err)
	}
	if sorting != "slot, epoch" {
		t.Errorf("sorting key %q, want slot, epoch", sorting)
	}
	h := e.checkpointHistories()
	if len(h) != 2 || h[0] != "0/0/0" || !strings.HasPrefix(h[1], "0/") || !strings.HasSuffix(h[1], "/1") {
		t.Errorf("histories %v, want the old rows without one and the new ones with the server's", h)
	}
	d = e.start()
	e.insertEvents(10)
	e.converge("after a restart", convergeTimeout)
	if strings.Contains(d.Logs(), "recording the Postgres history") {
		t.Errorf("the history was recorded again at the next start")
	}
	d.stop(t)
}

// privatePrimary starts a Postgres of Debian's version for e alone (the
// tests below kill, promote and put back its servers) and moves e onto
// it.
func (e *env) privatePrimary(ctx context.Context) *harness.Postgres {
	e.t.Helper()
	pg, err := harness.StartPostgres(ctx, harness.Options{Fast: true,
		PGSettings: map[string]string{"logical_decoding_work_mem": testDecodingWorkMem}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { pg.Close() })
	e.onPrivatePostgres(pg)
	return pg
}

// pgCount returns the rows of events on pg.
func (e *env) pgCount(ctx context.Context, pg *harness.Postgres) uint64 {
	e.t.Helper()
	out, err := pg.Psql(ctx, e.name, "SELECT count(*) FROM events")
	if err != nil {
		e.t.Fatal(err)
	}
	var n uint64
	if _, err := fmt.Sscan(out, &n); err != nil {
		e.t.Fatalf("count %q: %v", out, err)
	}
	return n
}

// startHealing starts the daemon; with kill, it dies (SIGKILL) right
// after its recovery made the new slot, and restart starts it again.
func (e *env) startHealing(kill bool) (d *daemon, restart func() *daemon) {
	if !kill {
		d = e.start()
		return d, func() *daemon { return d }
	}
	d = e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-in-recovery:0")
	return d, func() *daemon {
		e.t.Helper()
		if code := d.wait(e.t, 2*convergeTimeout); code == 0 {
			e.t.Fatalf("the daemon did not die in its recovery:\n%s", tail(d.Logs(), 2000))
		}
		if !strings.Contains(d.Logs(), "created replication slot") {
			e.t.Fatalf("the daemon died before its recovery made a slot:\n%s", tail(d.Logs(), 2000))
		}
		return e.start()
	}
}

// healScenario breaks the history of a private primary under a growing
// writer, with the daemon running (live) or killed once in the middle of
// its recovery (killed): prepare runs while the writer goes on and
// ClickHouse then stores more, brk breaks the history. The daemon must
// copy every table again by itself, saying one of reasons, with readers
// never seeing fewer rows than the server kept, and end exact.
func healScenario(t *testing.T, withStandby bool, prepare, brk func(ctx context.Context, t *testing.T, primary, standby *harness.Postgres),
	reasons ...string) {
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "live", true: "killed"}[kill], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			e := newEnv(t, "")
			primary := e.privatePrimary(ctx)
			var standby *harness.Postgres
			if withStandby {
				var err error
				if standby, err = primary.StartStandby(ctx, harness.StandbyOptions{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { standby.Close() })
			}
			e.insertEvents(3000)
			e.setup()
			d, restart := e.startHealing(kill)
			wctx, stopWriter := context.WithCancel(ctx)
			wait := e.growingWorkload(wctx, 2)
			e.checkpointPasses(d, e.checkpointLSN(), "streaming")
			kept := e.pgCount(ctx, primary)
			prepare(ctx, t, primary, standby)
			// ClickHouse stores commits that the server will not have.
			e.checkpointPasses(d, e.checkpointLSN(), "after the preparation")
			e.checkpointPasses(d, e.checkpointLSN(), "after the preparation")
			floor := min(kept, e.liveCount("events_live"), e.liveCount("events_committed"))
			rctx, stopReaders := context.WithCancel(ctx)
			var wg sync.WaitGroup
			e.readersNeverBelow(rctx, &wg, floor)
			brk(ctx, t, primary, standby)
			d = restart()
			e.healed(d, func() { stopWriter(); wait(); stopReaders(); wg.Wait() })
			said := false
			for _, r := range reasons {
				said = said || strings.Contains(d.Logs(), "reason="+r)
			}
			if !said {
				t.Errorf("the recovery does not give the reason %v:\n%s", reasons, tail(d.Logs(), 2000))
			}
			if h := e.checkpointHistories(); len(h) < 2 || !strings.HasPrefix(h[len(h)-1], "2/") {
				t.Errorf("the new slot's positions are not in epoch 2: %v", h)
			}
			d.stop(t)
		})
	}
}

// TestFailoverToStandbyThatMissedCommits: a standby (Debian's Postgres,
// pg_basebackup) stops receiving WAL; the writer commits more on the
// primary and ClickHouse stores it; the primary dies and the standby is
// promoted at its address (timeline 2, no slot). The daemon finds that the
// server does not continue its history, copies every table again, and
// ends equal to the promoted server, the commits it lost gone from
// ClickHouse too.
func TestFailoverToStandbyThatMissedCommits(t *testing.T) {
	healScenario(t, true, func(ctx context.Context, t *testing.T, _, standby *harness.Postgres) {
		if err := standby.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if err := standby.StopReplication(); err != nil {
			t.Fatal(err)
		}
	}, func(ctx context.Context, t *testing.T, primary, standby *harness.Postgres) {
		if err := harness.FailOver(ctx, primary, standby); err != nil {
			t.Fatal(err)
		}
	}, history.ReasonTimeline)
}

// TestDataDirectoryPutBack: Postgres' data directory is copied (server
// stopped), the writer goes on and ClickHouse stores more, and the copy is
// put back: same system, same timeline, the WAL behind the checkpoint. The
// daemon refuses to stream on, copies every table again, and ends equal
// to the server's history: rows only the lost WAL had are gone, rows it
// changed have their earlier values again.
func TestDataDirectoryPutBack(t *testing.T) {
	var copied string
	healScenario(t, false, func(ctx context.Context, t *testing.T, primary, _ *harness.Postgres) {
		var err error
		if copied, err = primary.CopyDataDir(ctx); err != nil {
			t.Fatal(err)
		}
	}, func(ctx context.Context, t *testing.T, primary, _ *harness.Postgres) {
		if err := primary.PutBackDataDir(ctx, copied); err != nil {
			t.Fatal(err)
		}
	}, history.ReasonRollback, history.ReasonDiverged)
}

// TestPutBackWhileStopped: the data directory is put back while the
// daemon is stopped, and the server's WAL grows past the checkpoint again
// before the daemon starts: nothing at connect tells the two histories
// apart, and the first transaction the server streams does. With
// recovery = "manual" the daemon stops saying so, saving nothing.
func TestPutBackWhileStopped(t *testing.T) {
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
	d = e.start()
	for i := 0; i < 20; i++ {
		e.exec("UPDATE events SET action = (action + 1) % 10 WHERE id % 20 = $1", i)
	}
	e.converge("after the copy", convergeTimeout)
	d.stop(t)
	before := e.checkpointLSN()
	if err := primary.PutBackDataDir(ctx, copied); err != nil {
		t.Fatal(err)
	}
	e.pg.Reset() // (the server restarted: its pooled connections are gone)
	// Far more WAL than the daemon stored after the copy.
	e.exec("CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 300000) g")
	e.insertEvents(5)
	d = e.start()
	e.refuses(d, "diverged")
	if after := e.checkpointLSN(); after != before {
		t.Errorf("a checkpoint was saved: %d, then %d", before, after)
	}
}

// TestRecoveryOnCluster: the slot is dropped under a writer while the
// daemon streams into a 2 × 2 ClickHouse cluster, twice. Each time the
// daemon copies events again into shadow local tables replicated under a
// ZooKeeper path of their own (the second shadow must not meet the path
// the first one took into the target's place), renames them in on the
// cluster and makes the Distributed table again; readers never see fewer
// rows, and it ends exact with equal replicas; the second time it is
// killed in the middle of its recovery once. The recovery deletes the
// former history's copy state and truncations: mutations of the
// replicator's own replicated tables, which must finish on a cluster.
func TestRecoveryOnCluster(t *testing.T) {
	e := newEnv(t, "")
	c := e.startCluster()
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	for epoch := 2; epoch <= 3; epoch++ {
		restart := func() *daemon { return d }
		if epoch == 3 {
			// The daemon dies once its recovery made the new slot, and
			// starts the recovery over when started again.
			d.stop(t)
			d, restart = e.startHealing(true)
		}
		stop := e.breakUnderWriter(d, e.dropSlotUnderDaemon)
		d = restart()
		e.healed(d, stop)
		if h := e.checkpointHistories(); len(h) != epoch || !strings.HasPrefix(h[epoch-1], fmt.Sprintf("%d/", epoch)) {
			t.Errorf("the new slot's positions are not in epoch %d: %v", epoch, h)
		}
	}
	e.insertEvents(10)
	e.converge("streaming after the recoveries", convergeTimeout)
	sameReplicas(t, c, "db_"+e.name)
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("the daemon exited %d:\n%s", code, tail(d.Logs(), 3000))
	}
}

// TestSlotDroppedWhileStoppedHeals: the slot is dropped while the daemon
// is stopped, and again after a restarted daemon's recovery made its own
// slot and died (as a kill between a recovery's drop of its slot and the
// creation of the next leaves none). Each start finds no slot; its check
// of the slot's WAL retention, which runs at once, must leave the missing
// slot to the recovery instead of stopping the daemon.
func TestSlotDroppedWhileStoppedHeals(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(2000)
	e.setup()
	d := e.start()
	e.insertEvents(10)
	e.converge("before", convergeTimeout)
	d.stop(t)
	e.dropSlotUnderDaemon()
	e.insertEvents(10)
	d = e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-in-recovery:0")
	if code := d.wait(t, 2*convergeTimeout); code == 0 || !strings.Contains(d.Logs(), "created replication slot") {
		t.Fatalf("the daemon did not die in its recovery once it made a slot (exit %d):\n%s", code, tail(d.Logs(), 3000))
	}
	e.dropSlotUnderDaemon()
	d = e.start()
	e.recoveredThenExact(d)
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("the daemon exited %d:\n%s", code, tail(d.Logs(), 3000))
	}
}

// recoveredThenExact waits until d completes a recovery, failing at once
// if it exits, then until events agree after more inserts.
func (e *env) recoveredThenExact(d *daemon) {
	e.t.Helper()
	for deadline := time.Now().Add(2 * convergeTimeout); !strings.Contains(d.Logs(), "complete: every table holds"); time.Sleep(100 * time.Millisecond) {
		select {
		case <-d.done:
			e.t.Fatalf("the daemon exited %d instead of recovering:\n%s", d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no recovery completed:\n%s", tail(d.Logs(), 3000))
		}
	}
	e.insertEvents(10)
	e.convergeOrExit(d, "after the recovery", convergeTimeout)
}

// TestRecoveryCopyTerminated: the connections that copy a table in a
// recovery are terminated (as by a Postgres restart: SQLSTATE 57P01) in
// the middle of the copy. That is a transient error: the daemon starts the
// recovery over by itself instead of stopping, and ends exact.
func TestRecoveryCopyTerminated(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(200000)
	e.setup()
	d := e.start()
	e.insertEvents(10)
	e.converge("before", convergeTimeout)
	e.dropSlotUnderDaemon()
	terminated := ""
	for deadline := time.Now().Add(2 * convergeTimeout); terminated == "" || terminated == "0"; time.Sleep(10 * time.Millisecond) {
		select {
		case <-d.done:
			t.Fatalf("the daemon exited %d:\n%s", d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no copy of the recovery to terminate:\n%s", tail(d.Logs(), 3000))
		}
		if strings.Contains(d.Logs(), "complete: every table holds") {
			t.Skip("the recovery completed before the test saw its copy")
		}
		var n int
		if err := e.pg.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'COPY (%' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		terminated = fmt.Sprint(n)
	}
	t.Logf("terminated %s copying connections", terminated)
	e.recoveredThenExact(d)
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("the daemon exited %d", code)
	}
}

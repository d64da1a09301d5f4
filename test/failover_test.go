package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/replicator/replicator/test/harness"
)

// onPrivatePostgres moves e to pg: the database e.name with the events
// table there, e.pg a pool on it, and the configuration's DSN pointing at
// it.
func (e *env) onPrivatePostgres(pg *harness.Postgres) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := pg.Psql(ctx, "postgres", "CREATE DATABASE "+e.name); err != nil {
		e.t.Fatal(err)
	}
	if _, err := pg.Psql(ctx, e.name, eventsDDL); err != nil {
		e.t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pg.DSN(e.name))
	if err != nil {
		e.t.Fatal(err)
	}
	e.pg.Close()
	e.pg = pool
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(cfg), pgServer.DSN(e.name), pg.DSN(e.name), 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// failoverWriter writes small transactions (inserts, updates, deletes)
// until ctx is done, through a failover: a statement that fails (the
// server is gone, or not yet back) is not counted, and the writer waits a
// moment and goes on with new connections. It returns the commits that
// succeeded and the statements that failed.
func (e *env) failoverWriter(ctx context.Context, seed uint64) (wait func() (ok, failed int64)) {
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				var q string
				switch p := rng.IntN(100); {
				case p < 50:
					q = fmt.Sprintf(`INSERT INTO events (project_id, author_id, action, target_type, fingerprint)
						SELECT %d, %d, %d, 'Issue', decode(md5(random()::text), 'hex') FROM generate_series(1, %d)`,
						rng.IntN(100), rng.IntN(50)+1, rng.IntN(10), rng.IntN(10)+1)
				case p < 80:
					q = fmt.Sprintf(`UPDATE events SET fingerprint = decode(md5(random()::text), 'hex'), action = %d, target_id = %d,
						updated_at = now() WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT %d)`, rng.IntN(10), rng.IntN(1000), rng.IntN(5)+1)
				default:
					q = fmt.Sprintf(`DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT %d)`, rng.IntN(3)+1)
				}
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := e.pg.Exec(sctx, q)
				cancel()
				if err != nil {
					failed.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				ok.Add(1)
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		}()
	}
	return func() (int64, int64) { wg.Wait(); return ok.Load(), failed.Load() }
}

// TestFailoverToSlotSyncingStandby fails over, under a live writer, from a
// PostgreSQL 17 primary to its slot-syncing standby at the primary's
// address. `replicator setup` makes the slot a failover slot; the
// standby keeps a synced copy, and the primary sends no change the
// standby has not received (synchronized_standby_slots). The daemon,
// never restarted, reconnects to the promoted standby (timeline 2),
// streams on from the synced slot, and ClickHouse ends equal to Postgres,
// every column of every row, with nothing copied again: no setup or resync
// runs, the slot streamed is the synced one, and the only bulk version in
// ClickHouse is setup's copy.
func TestFailoverToSlotSyncingStandby(t *testing.T) { failoverScenario(t, false, 0) }

// TestFailoverToLaggingStandby is TestFailoverToSlotSyncingStandby with
// a standby that stops receiving WAL while the writer goes on committing
// on the primary: those commits are lost in the failover, and since the
// primary sends the daemon nothing its standby has not received, none of
// them reaches ClickHouse either. ClickHouse ends equal to the promoted
// standby, without a copy.
func TestFailoverToLaggingStandby(t *testing.T) { failoverScenario(t, true, 0) }

// TestFailoverServesStandbyFirst is TestFailoverToSlotSyncingStandby
// where the primary's address serves the standby, still in recovery, for
// a few seconds before its promotion: the daemon reconnecting meanwhile
// finds a server whose synced slot cannot be streamed from yet, and must
// wait for the promotion rather than stop.
func TestFailoverServesStandbyFirst(t *testing.T) { failoverScenario(t, false, 8*time.Second) }

func failoverScenario(t *testing.T, lagging bool, standbyFirst time.Duration) {
	requireServers(t)
	bin, major, err := harness.PGBinDirAtLeast(harness.SlotSyncVersion)
	if errors.Is(err, harness.ErrNotInstalled) {
		t.Skipf("failover slots need PostgreSQL %d or later, which is not installed here (bash test/install-pg.sh %d installs it): %v",
			harness.SlotSyncVersion, harness.SlotSyncVersion, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newEnv(t, "")
	primary, err := harness.StartPostgres(ctx, harness.Options{Fast: true, PGBinDir: bin, Dir: t.TempDir(),
		PGSettings: map[string]string{"logical_decoding_work_mem": testDecodingWorkMem}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { primary.Close() })
	if primary.Major != major {
		t.Fatalf("started PostgreSQL %s, want %d", primary.Version, major)
	}
	standby, err := primary.StartStandby(ctx, harness.StandbyOptions{SyncSlots: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Close() })
	e.onPrivatePostgres(primary)
	slot := "slot_" + e.name
	slotRow := func(p *harness.Postgres, cols string) string {
		t.Helper()
		out, err := p.Psql(ctx, "postgres", fmt.Sprintf("SELECT %s FROM pg_replication_slots WHERE slot_name = '%s'", cols, slot))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	maxID := func(p *harness.Postgres) string {
		t.Helper()
		out, err := p.Psql(ctx, e.name, "SELECT max(id) FROM events")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	e.insertEvents(2000)
	out := e.setup()
	if !strings.Contains(out, "as a failover slot") {
		t.Errorf("setup output does not say the slot fails over:\n%s", out)
	}
	if got := slotRow(primary, "failover, synced"); got != "t|f" {
		t.Fatalf("primary: slot failover|synced = %q, want t|f", got)
	}
	d := e.start()
	e.converge("before the failover", convergeTimeout)
	// (status peeks at a slot it finds idle: not while the daemon starts.)
	waitSlotActive(t, primary, slot)
	st := e.status()
	if st["failover_slot"] != true || st["slot_synced"] != false {
		t.Errorf("status before the failover: failover_slot %v, slot_synced %v; want true, false", st["failover_slot"], st["slot_synced"])
	}

	wctx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	wait := e.failoverWriter(wctx, 17)
	time.Sleep(time.Second)
	// The standby's copy of the slot must be permanent and have caught up
	// with what the daemon acknowledged so far.
	if err := standby.WaitSlotSynced(ctx, slot); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	lost := ""
	if lagging {
		if err := standby.StopReplication(); err != nil {
			t.Fatal(err)
		}
		seen := maxID(primary)
		for deadline := time.Now().Add(time.Minute); maxID(primary) == seen; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the writer commits nothing on the primary while the standby is stopped")
			}
		}
		time.Sleep(time.Second)
		lost = maxID(primary) // committed on the primary, missed by the standby
	}
	before := e.checkpointLSN()
	failOver := harness.FailOver
	if standbyFirst > 0 {
		failOver = func(ctx context.Context, primary, standby *harness.Postgres) error {
			return harness.FailOverServingStandby(ctx, primary, standby, standbyFirst)
		}
	}
	if err := failOver(ctx, primary, standby); err != nil {
		t.Fatal(err)
	}
	t.Logf("failed over with checkpoint %s in ClickHouse", lsnString(before))
	if lagging {
		// Its rows are gone, and ClickHouse must not have them either.
		if got, err := primary.Psql(ctx, e.name, "SELECT count(*) FROM events WHERE id = "+lost); err != nil || got != "0" {
			t.Fatalf("the promoted standby has event %s, committed after its replication stopped: %q, %v", lost, got, err)
		}
	}
	time.Sleep(3 * time.Second) // the writer goes on on the promoted standby
	stopWriter()
	commits, failures := wait()
	if tl, err := primary.Timeline(ctx); err != nil || tl != 2 {
		t.Fatalf("timeline after the failover = %d, %v; want 2", tl, err)
	}

	e.convergeOrExit(d, fmt.Sprintf("after the failover (%d commits, %d failed statements)", commits, failures), convergeTimeout)
	if got := slotRow(primary, "synced, failover, active"); got != "t|t|t" {
		t.Errorf("promoted standby: slot synced|failover|active = %q, want t|t|t (the daemon streams from the synced slot)", got)
	}
	if after := e.checkpointLSN(); after <= before {
		t.Errorf("checkpoint %s did not move past %s after the failover", lsnString(after), lsnString(before))
	}
	vout, verrs, code := e.cli("verify", "--config", e.config)
	if code != 0 {
		t.Errorf("verify after the failover: exit %d\n%s\n%s", code, vout, verrs)
	}
	st = e.status()
	if st["failover_slot"] != true || st["slot_synced"] != true {
		t.Errorf("status after the failover: failover_slot %v, slot_synced %v; want true, true", st["failover_slot"], st["slot_synced"])
	}

	// Nothing was copied again: the only version that many rows share is
	// setup's copy (a transaction of the writer touches at most 10 rows).
	bulk := e.chRows(fmt.Sprintf("SELECT _version, count() FROM db_%s.events GROUP BY _version HAVING count() > 100", e.name))
	if len(bulk) != 1 {
		t.Errorf("versions shared by more than 100 rows in ClickHouse: %q, want only setup's copy", bulk)
	}
	logs := d.Logs()
	for _, copied := range []string{"copying the table again", "a resync of the table began", "copy of the table is not complete"} {
		if strings.Contains(logs, copied) {
			t.Errorf("the daemon copied again after the failover (%q)\n%s", copied, tail(logs, 3000))
		}
	}
	if !strings.Contains(logs, "reconnecting") {
		t.Errorf("the daemon does not log a reconnect\n%s", tail(logs, 3000))
	}
	if standbyFirst > 0 {
		// Whether a reconnect fell in the window depends on the backoff's
		// timing: say so rather than assert it.
		t.Logf("the daemon met the standby in recovery %d times", strings.Count(logs, "reason=postgres_in_recovery"))
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit code %d after SIGTERM", code)
	}
	t.Logf("failover under a writer: %d commits, %d failed statements; the daemon went on from the synced slot", commits, failures)
}

// convergeOrExit is converge that fails at once, with the log, when the
// daemon d exits.
func (e *env) convergeOrExit(d *daemon, what string, timeout time.Duration) {
	e.t.Helper()
	want := e.expected()
	deadline := time.Now().Add(timeout)
	for {
		got, err := e.actual()
		if err == nil && equal(want, got) {
			return
		}
		select {
		case <-d.done:
			e.t.Fatalf("%s: the daemon exited with %d:\n%s", what, d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			if err != nil {
				e.t.Fatalf("%s: read clickhouse: %v", what, err)
			}
			e.t.Fatalf("%s: clickhouse did not converge within %s: %s", what, timeout, diff(want, got))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitSlotActive waits until a walsender streams from the slot.
func waitSlotActive(t *testing.T, pg *harness.Postgres, slot string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		out, err := pg.Psql(context.Background(), "postgres", fmt.Sprintf("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", slot))
		if err == nil && out == "t" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not stream from slot %s: active = %q, %v", slot, out, err)
		}
	}
}

func lsnString(l uint64) string { return fmt.Sprintf("%X/%X", l>>32, uint32(l)) }

// TestSetupMakesKeptSlotFailover: on PostgreSQL 17+, a slot that is not a
// failover slot (made by an older replicator, or before a server upgrade)
// becomes one when `replicator setup` runs again while the daemon is
// stopped; while the daemon streams from it, setup leaves it and says to
// run again.
func TestSetupMakesKeptSlotFailover(t *testing.T) {
	requireServers(t)
	bin, _, err := harness.PGBinDirAtLeast(harness.SlotSyncVersion)
	if errors.Is(err, harness.ErrNotInstalled) {
		t.Skipf("failover slots need PostgreSQL %d or later, which is not installed here (bash test/install-pg.sh %d installs it): %v",
			harness.SlotSyncVersion, harness.SlotSyncVersion, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := newEnv(t, "")
	pg, err := harness.StartPostgres(ctx, harness.Options{Fast: true, PGBinDir: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	e.onPrivatePostgres(pg)
	slot := "slot_" + e.name
	failover := func() string {
		t.Helper()
		out, err := pg.Psql(ctx, "postgres", fmt.Sprintf("SELECT failover FROM pg_replication_slots WHERE slot_name = '%s'", slot))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	e.insertEvents(100)
	e.setup()
	if got := failover(); got != "t" {
		t.Fatalf("failover after setup = %q, want t", got)
	}
	// As an older replicator left it.
	repl, err := pgconn.Connect(ctx, pg.DSN(e.name)+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	_, err = repl.Exec(ctx, fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER false)", slot)).ReadAll()
	repl.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := e.status(); st["failover_slot"] != false {
		t.Fatalf("status failover_slot = %v, want false", st["failover_slot"])
	}
	d := e.start()
	e.insertEvents(10)
	e.converge("before setup again", convergeTimeout)
	waitSlotActive(t, pg, slot)
	out := e.setup()
	if !strings.Contains(out, "not a failover slot, and it is in use") || failover() != "f" {
		t.Errorf("setup with the daemon running: failover = %s, output:\n%s", failover(), out)
	}
	d.stop(t)
	out = e.setup()
	if !strings.Contains(out, "is now a failover slot") || failover() != "t" {
		t.Errorf("setup with the daemon stopped: failover = %s, output:\n%s", failover(), out)
	}
	e.insertEvents(10)
	d = e.start()
	e.converge("after setup made the slot a failover slot", convergeTimeout)
	d.stop(t)
}

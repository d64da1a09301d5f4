package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chaosPlan says how many faults of each kind a chaos run injects. `make
// chaos` runs the long plan (CHAOS=long); `make test` the short one.
//
// The crash point between data and checkpoint fires per flush with
// probability crashAfterInsert, and a transaction whose rows need k flushes
// is replayed from its start after each such crash, so it completes with
// probability (1-crashAfterInsert)^k. batch.max_rows (maxRows) is low so
// that the big transactions of events (bigTxnRows) and docs (docsBigRows,
// changed twice each) span several flush chunks, yet few enough chunks that
// they complete at the plan's crash probability.
type chaosPlan struct {
	kills, chRestarts, walsenderKills, pgRestarts int
	chDown                                        time.Duration
	crashAfterInsert                              float64
	bigTxnRows                                    int
	maxRows                                       int
	// maxBytes is batch.max_bytes, empty for the default.
	maxBytes string
	// docs is how many docs (of docSize bytes) exist before setup and
	// after each TRUNCATE.
	docs, docSize int
	// docsBigRows docs are changed twice by a big transaction every
	// docsBigEvery; docs is truncated every truncateEvery.
	docsBigRows                 int
	docsBigEvery, truncateEvery time.Duration
	// converge bounds the catch-up after the faults stop; the crash point
	// stays armed during it, and each crash makes Postgres send the open
	// streamed transactions again from their start.
	converge time.Duration
}

// flushedRows matches the daemon's debug line of a flush that wrote rows.
var flushedRows = regexp.MustCompile(`flushed: .*rows=[1-9]`)

func plan() chaosPlan {
	if os.Getenv("CHAOS") == "long" {
		return chaosPlan{kills: 20, chRestarts: 3, walsenderKills: 3, pgRestarts: 1, chDown: 30 * time.Second,
			crashAfterInsert: 0.1, bigTxnRows: 20000, maxRows: 4000,
			docs: 8000, docSize: 6000, docsBigRows: 6000, docsBigEvery: 5 * time.Second, truncateEvery: 20 * time.Second,
			converge: 10 * time.Minute}
	}
	return chaosPlan{kills: 4, chRestarts: 1, walsenderKills: 1, pgRestarts: 1, chDown: 3 * time.Second,
		crashAfterInsert: 0.05, bigTxnRows: 20000, maxRows: 2000, maxBytes: "8MiB",
		docs: 4000, docSize: 6000, docsBigRows: 3000, docsBigEvery: 2 * time.Second, truncateEvery: 5 * time.Second,
		converge: 4 * convergeTimeout}
}

// TestChaos runs a randomized workload on events and on docs, whose body
// is stored out of line (TOAST), while killing the daemon, restarting and
// cutting off ClickHouse, terminating the walsender, restarting Postgres
// and adding a column to events; afterwards ClickHouse must equal Postgres by the test's own
// comparison and by `replicator verify`, for both tables. The daemon must
// never stop by itself. CHAOS_SEED replays a run.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	p := plan()
	t.Logf("chaos seed %d (replay with CHAOS_SEED=%d), plan %+v", seed, seed, p)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := newEnv(t, docsConfig)
	batch := fmt.Sprintf("max_rows  = %d", p.maxRows)
	if p.maxBytes != "" {
		batch += fmt.Sprintf("\n  max_bytes = %q", p.maxBytes)
	}
	e.setConfig("max_rows  = 20000", batch)
	e.exec(docsDDL)
	e.insertEvents(5000)
	e.insertDocs(1, p.docs, p.docSize)
	e.setup()

	// The supervisor restarts the daemon whenever it dies. A daemon that
	// exits by itself (not SIGKILL) has halted: that fails the run.
	var mu sync.Mutex
	var current *daemon
	killed := map[*daemon]bool{} // SIGKILLed by the test, not by the fault point
	var kills, faultCrashes, restarts, flushes atomic.Int64
	var halted atomic.Bool
	stopSup := make(chan struct{})
	supDone := make(chan struct{})
	var stopOnce sync.Once
	stopSupervisor := func() {
		stopOnce.Do(func() { close(stopSup) })
		<-supDone
	}
	// Also when the test fails early: a supervisor left running would
	// restart daemons after the test's files are gone.
	defer stopSupervisor()
	fault := fmt.Sprintf("REPLICATOR_TEST_FAULT=crash-after-insert:%g", p.crashAfterInsert)
	go func() {
		defer close(supDone)
		for {
			mu.Lock()
			d := e.startWith(e.config, fault)
			current = d
			mu.Unlock()
			select {
			case <-stopSup:
				return
			case <-d.done:
			}
			logs := d.Logs()
			flushes.Add(int64(len(flushedRows.FindAllStringIndex(logs, -1))))
			if st, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() && st.Signal() == syscall.SIGKILL {
				mu.Lock()
				byTest := killed[d]
				mu.Unlock()
				if byTest {
					kills.Add(1)
				} else {
					faultCrashes.Add(1)
				}
			} else if d.cmd.ProcessState.ExitCode() != 0 {
				halted.Store(true)
				t.Errorf("daemon exited with %d (not a crash):\n%s\n%s", d.cmd.ProcessState.ExitCode(), tail(logs, 6000), e.haltReport(logs))
				return
			}
			restarts.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	var txns atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			e.chaosWorkload(ctx, rand.New(rand.NewPCG(seed, uint64(w)+10)), p.bigTxnRows, &txns)
		}(w)
	}
	docs := newDocsChaos(e, p, &txns)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			docs.workload(ctx, rand.New(rand.NewPCG(seed, uint64(w)+20)))
		}(w)
	}
	defer func() { cancel(); wg.Wait() }()

	var faults []string
	for i := 0; i < p.kills; i++ {
		faults = append(faults, "kill -9")
	}
	for i := 0; i < p.chRestarts; i++ {
		faults = append(faults, "restart clickhouse")
	}
	for i := 0; i < p.walsenderKills; i++ {
		faults = append(faults, "terminate walsender")
	}
	for i := 0; i < p.pgRestarts; i++ {
		faults = append(faults, "restart postgres")
	}
	faults = append(faults, "clickhouse unreachable", "add column")
	rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	injected := map[string]int{}
	workStart := time.Now()
	for _, f := range faults {
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		var err error
		switch f {
		case "kill -9":
			mu.Lock()
			d := current
			killed[d] = true
			mu.Unlock()
			d.cmd.Process.Kill()
		case "restart clickhouse":
			err = chServer.Restart(context.Background())
		case "clickhouse unreachable":
			if err = chServer.Stop(); err == nil {
				time.Sleep(p.chDown)
				err = chServer.Restart(context.Background())
			}
		case "terminate walsender":
			_, err = pgServer.Psql(context.Background(), e.name, fmt.Sprintf(
				"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'slot_%s' AND active", e.name))
		case "restart postgres":
			err = pgServer.Restart(context.Background())
		case "add column":
			// A schema change under the workload: older rows read the
			// default on both sides (verify compares the column).
			_, err = e.pg.Exec(context.Background(), "ALTER TABLE events ADD COLUMN chaos_col integer NOT NULL DEFAULT 3")
		}
		if err != nil {
			t.Fatalf("inject %s: %v", f, err)
		}
		injected[f]++
	}
	cancel()
	wg.Wait()
	t.Logf("injected %v in %s; %d workload transactions; %s",
		injected, time.Since(workStart).Round(time.Millisecond), txns.Load(), docs.summary())

	convergeStart := time.Now()
	e.chaosConverge(&halted, p.converge)
	t.Logf("converged %s after the faults stopped", time.Since(convergeStart).Round(time.Millisecond))
	out, errs, code := e.cli("verify", "--config", e.config)
	if code != 0 {
		t.Errorf("verify after chaos: exit %d\n%s\n%s", code, out, errs)
	}
	for _, table := range []string{"public.events", "public.docs"} {
		if !strings.Contains(out, "table "+table+": equal") {
			t.Errorf("verify after chaos does not say %s is equal:\n%s\n%s", table, out, errs)
		}
	}
	t.Logf("verify after chaos:\n%s", out)
	stopSupervisor()
	mu.Lock()
	current.stop(t)
	mu.Unlock()
	t.Logf("daemon SIGKILLed by the test %d times, by the after-insert fault point %d times; %d restarts, %d flushes with rows",
		kills.Load(), faultCrashes.Load(), restarts.Load(), flushes.Load())
	if injected["kill -9"] > 0 && kills.Load()+faultCrashes.Load() < int64(injected["kill -9"]) {
		t.Errorf("%d crashes seen for %d kills", kills.Load()+faultCrashes.Load(), injected["kill -9"])
	}
}

// chaosConverge waits until events and docs in ClickHouse equal Postgres,
// and fails at once when the daemon halted.
func (e *env) chaosConverge(halted *atomic.Bool, timeout time.Duration) {
	e.t.Helper()
	want, wantDocs := e.expected(), e.docsExpected()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if halted.Load() {
			e.t.Fatalf("the daemon halted; ClickHouse cannot converge")
		}
		got, err := e.actual()
		gotDocs, errDocs := e.docsActual()
		if err == nil && errDocs == nil && equal(want, got) && fmt.Sprint(gotDocs) == fmt.Sprint(wantDocs) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Exact comparison of both tables, with the differences on failure.
	e.converge("events after chaos", time.Second)
	e.convergeDocs("docs after chaos", time.Second)
}

// chaosWorkload writes random transactions until ctx is done: inserts with
// NULLs, updates of fingerprints and ids, single and bulk deletes, and now
// and then a big transaction: committed, with a savepoint rolled back, or
// rolled back.
func (e *env) chaosWorkload(ctx context.Context, rng *rand.Rand, bigRows int, txns *atomic.Int64) {
	for ctx.Err() == nil {
		var q string
		switch p := rng.IntN(1000); {
		case p < 3:
			q = fmt.Sprintf(`INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint)
				SELECT NULLIF(g %% 7, 0), g %% 50 + 1, NULLIF(g %% 5, 0), g %% 10, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'Issue' END,
				       CASE WHEN g %% 7 = 0 THEN g END, CASE WHEN g %% 2 = 0 THEN decode(md5(g::text), 'hex') END
				FROM generate_series(1, %d) g`, bigRows)
		case p < 5:
			// Streamed (the test server streams transactions over 64kB)
			// with a rolled-back savepoint.
			q = fmt.Sprintf(`BEGIN;
				INSERT INTO events (author_id, action, target_type) SELECT g %% 50 + 1, 3, 'Saved' FROM generate_series(1, %d) g;
				SAVEPOINT s;
				INSERT INTO events (author_id, action, target_type) SELECT g %% 50 + 1, 4, 'RolledBack' FROM generate_series(1, %d) g;
				UPDATE events SET action = 5 WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT 50);
				ROLLBACK TO s;
				UPDATE events SET action = 6 WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT 50);
				COMMIT`, bigRows/2, bigRows/2)
		case p < 6:
			q = fmt.Sprintf(`BEGIN;
				INSERT INTO events (author_id, action, target_type) SELECT g %% 50 + 1, 7, 'Aborted' FROM generate_series(1, %d) g;
				DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT 50);
				ROLLBACK`, bigRows)
		case p < 450:
			q = fmt.Sprintf(`INSERT INTO events (project_id, author_id, target_id, action, target_type, fingerprint)
				SELECT %s, %d, %s, %d, %s, %s FROM generate_series(1, %d)`,
				nullOr(rng, strconv.Itoa(rng.IntN(100))), rng.IntN(50)+1, nullOr(rng, strconv.Itoa(rng.IntN(1000))), rng.IntN(10),
				nullOr(rng, "'MergeRequest'"), nullOr(rng, "decode(md5(random()::text), 'hex')"), rng.IntN(5)+1)
		case p < 750:
			q = fmt.Sprintf(`UPDATE events SET fingerprint = %s, action = %d, updated_at = now()
				WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT %d)`,
				nullOr(rng, "decode(md5(random()::text), 'hex')"), rng.IntN(10), rng.IntN(5)+1)
		case p < 800:
			q = `UPDATE events SET id = id + 100000000 WHERE id = (SELECT min(id) FROM events WHERE id < 100000000)`
		case p < 900:
			q = `BEGIN; UPDATE events SET action = 1 WHERE id = (SELECT max(id) FROM events);
				UPDATE events SET action = 2, target_type = NULL WHERE id = (SELECT max(id) FROM events); COMMIT`
		case p < 980:
			q = fmt.Sprintf(`DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT %d)`, rng.IntN(3)+1)
		default:
			q = fmt.Sprintf(`DELETE FROM events WHERE author_id = %d`, rng.IntN(50)+1)
		}
		if _, err := e.pg.Exec(context.Background(), q); err == nil {
			txns.Add(1)
		} else if strings.Contains(err.Error(), "duplicate key") {
			continue
		} else {
			time.Sleep(50 * time.Millisecond) // Postgres restarting
		}
	}
}

func nullOr(rng *rand.Rand, v string) string {
	if rng.IntN(4) == 0 {
		return "NULL"
	}
	return v
}

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

	"github.com/replicator/replicator/test/harness"
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
// cutting off ClickHouse, terminating the walsender, restarting Postgres,
// adding a column to events and, once, failing over from the primary to
// its physical standby (caught up, or stopped a moment before so that it
// misses commits ClickHouse may hold): the daemon must recover by itself,
// copying every table again. Afterwards ClickHouse must equal the promoted
// server by the test's own comparison and by `replicator verify`, for both
// tables. The daemon must never stop by itself. CHAOS_SEED replays a run.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	p := plan()
	t.Logf("chaos seed %d (replay with CHAOS_SEED=%d), plan %+v", seed, seed, p)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := newEnv(t, docsConfig)
	// A private primary with a physical standby (Debian's Postgres:
	// pg_basebackup), for the failover; pg is the primary of the moment.
	pgCtx, pgCancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer pgCancel()
	primary, standby := e.chaosPostgres(pgCtx)
	pg := primary
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
	var started []*daemon        // every daemon, in order, for their logs
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
			started = append(started, d)
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
	// paused holds the writers for a moment (see chaosFailOver).
	var paused atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			e.chaosWorkload(ctx, rand.New(rand.NewPCG(seed, uint64(w)+10)), p.bigTxnRows, &txns, &paused)
		}(w)
	}
	docs := newDocsChaos(e, p, &txns)
	docs.paused = &paused
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
	faults = append(faults, "clickhouse unreachable", "add column", "fail over")
	rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	injected := map[string]int{}
	kill := func() {
		mu.Lock()
		d := current
		killed[d] = true
		mu.Unlock()
		d.cmd.Process.Kill()
	}
	// mark is a position in the daemons' logs; since returns what they
	// logged after it.
	type logMark struct{ daemon, offset int }
	mark := func() logMark {
		mu.Lock()
		defer mu.Unlock()
		if len(started) == 0 {
			return logMark{}
		}
		return logMark{len(started) - 1, len(started[len(started)-1].Logs())}
	}
	since := func(m logMark) string {
		mu.Lock()
		ds := started[m.daemon:]
		mu.Unlock()
		var b strings.Builder
		for i, d := range ds {
			l := d.Logs()
			if i == 0 {
				l = l[m.offset:]
			}
			b.WriteString(l)
		}
		return b.String()
	}
	var failedOver logMark
	var failover string
	workStart := time.Now()
	for _, f := range faults {
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		var err error
		switch f {
		case "kill -9":
			kill()
		case "restart clickhouse":
			err = chServer.Restart(context.Background())
		case "clickhouse unreachable":
			if err = chServer.Stop(); err == nil {
				time.Sleep(p.chDown)
				err = chServer.Restart(context.Background())
			}
		case "terminate walsender":
			_, err = pg.Psql(context.Background(), e.name, fmt.Sprintf(
				"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'slot_%s' AND active", e.name))
		case "restart postgres":
			err = pg.Restart(context.Background())
		case "fail over":
			if strings.Contains(since(logMark{}), "recovery of slot") {
				t.Errorf("the daemon began a recovery before the failover:\n%s", tail(since(logMark{}), 6000))
			}
			failedOver = mark()
			if failover, err = e.chaosFailOver(pgCtx, rng, primary, standby, &paused); err == nil {
				pg, standby = standby, nil
				// Sometimes a kill in the middle of the recovery: once it
				// made its slot, or once the first table is in place.
				if at := []string{"", "created replication slot", "now holds the new copy of"}[rng.IntN(3)]; at != "" {
					failover += "; " + e.killWhenLogged(func() string { return since(failedOver) }, at, kill, &halted)
				}
			}
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
	t.Logf("failover: %s", failover)

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
	rec, err := recoveryAfter(since(failedOver))
	if err != nil {
		t.Errorf("after the failover: %v", err)
	}
	t.Logf("recovery after the failover: %s", rec)
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

// chaosWorkload writes random transactions until ctx is done (none while
// paused): inserts with
// NULLs, updates of fingerprints and ids, single and bulk deletes, and now
// and then a big transaction: committed, with a savepoint rolled back, or
// rolled back.
func (e *env) chaosWorkload(ctx context.Context, rng *rand.Rand, bigRows int, txns *atomic.Int64, paused *atomic.Bool) {
	for ctx.Err() == nil {
		if paused.Load() {
			time.Sleep(20 * time.Millisecond)
			continue
		}
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

// chaosPostgres starts a private primary of Debian's Postgres for e, with
// a physical standby (pg_basebackup) that the chaos run fails over to, and
// moves e onto the primary.
func (e *env) chaosPostgres(ctx context.Context) (primary, standby *harness.Postgres) {
	e.t.Helper()
	// wal_keep_size: the standby has no slot on the primary, and must not
	// lose WAL that the primary recycled while it restarted.
	primary, err := harness.StartPostgres(ctx, harness.Options{Fast: true, PGSettings: map[string]string{
		"logical_decoding_work_mem": testDecodingWorkMem, "wal_keep_size": "512MB"}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { primary.Close() })
	e.onPrivatePostgres(primary)
	standby, err = primary.StartStandby(ctx, harness.StandbyOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { standby.Close() })
	return primary, standby
}

// chaosFailOver fails over from primary to standby at the primary's
// address (harness.FailOver) under the workload: with the standby caught
// up, or, chosen by rng, with its replication stopped a moment before, so
// that it misses commits that ClickHouse may already hold: the writers then
// pause (paused) until ClickHouse's checkpoint passes the standby's end, as
// the daemon is often far behind them, and go on before the failover. It
// returns what it did.
func (e *env) chaosFailOver(ctx context.Context, rng *rand.Rand, primary, standby *harness.Postgres, paused *atomic.Bool) (string, error) {
	var what string
	if rng.IntN(2) == 0 {
		if err := standby.StopReplication(); err != nil {
			return "", err
		}
		stopped := time.Now()
		// The standby has nothing past this position.
		out, err := primary.Psql(ctx, "postgres", "SELECT pg_current_wal_insert_lsn() - '0/0'")
		if err != nil {
			return "", err
		}
		end, err := strconv.ParseUint(out, 10, 64)
		if err != nil {
			return "", fmt.Errorf("primary's WAL position %q: %v", out, err)
		}
		// The primary commits more, and ClickHouse stores some of it: the
		// daemon, often far behind under the workload and the faults,
		// catches up past the standby's end while the writers pause (or
		// not, within 45 s).
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		paused.Store(true)
		cp := e.checkpointLSN()
		for deadline := time.Now().Add(45 * time.Second); cp <= end && time.Now().Before(deadline); cp = e.checkpointLSN() {
			time.Sleep(100 * time.Millisecond)
		}
		paused.Store(false)
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		held := "ClickHouse holds none of the commits it missed"
		if cp > end {
			held = "ClickHouse holds commits it missed"
		}
		what = fmt.Sprintf("lagging: the standby stopped at %s, ClickHouse's checkpoint at %s at the failover %s later (%s)",
			lsnString(end), lsnString(cp), time.Since(stopped).Round(time.Millisecond), held)
	} else {
		if err := standby.CatchUp(ctx); err != nil {
			return "", err
		}
		what = "caught up: the standby replayed the primary's WAL a moment before"
	}
	began := time.Now()
	if err := harness.FailOver(ctx, primary, standby); err != nil {
		return "", err
	}
	took := time.Since(began)
	tl, err := standby.Timeline(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s; promoted in %s, timeline %d after", what, took.Round(time.Millisecond), tl), nil
}

// killWhenLogged waits until logs (the daemons' since the failover) has
// the line at, then SIGKILLs the daemon with kill, and says what it did.
func (e *env) killWhenLogged(logs func() string, at string, kill func(), halted *atomic.Bool) string {
	for deadline := time.Now().Add(3 * time.Minute); !halted.Load(); time.Sleep(20 * time.Millisecond) {
		l := logs()
		if strings.Contains(l, at) {
			if strings.Contains(l, "complete: every table holds") {
				return fmt.Sprintf("no kill: the recovery logged %q and completed before the test saw it", at)
			}
			kill()
			return fmt.Sprintf("daemon SIGKILLed in the recovery once it logged %q", at)
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("no kill: the daemons logged no %q in 3 minutes", at)
		}
	}
	return "no kill: the daemon halted"
}

// recoveryLine matches the log lines of a recovery's start, resumption
// and end, with their time.
var recoveryLine = regexp.MustCompile(`(?m)^(\S+) .*?(recovery of slot \S+ began|continuing the recovery of slot|recovery of slot \S+ complete)`)

// breakReason matches the reason of the first history break in a log.
var breakReason = regexp.MustCompile(`does not continue the checkpoint's history.*? reason=(\S+)`)

// recoveryAfter describes the recovery in logs (the daemons' since the
// failover): why it began, how long it took from "recovery of slot ...
// began" to "... complete", and how often a restarted daemon took it up. It is an
// error when none completed or more than one began.
func recoveryAfter(logs string) (string, error) {
	var began, done time.Time
	var begun, resumed, completed int
	for _, m := range recoveryLine.FindAllStringSubmatch(logs, -1) {
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", m[1])
		if err != nil {
			return "", fmt.Errorf("time of log line %q: %v", m[0], err)
		}
		switch {
		case strings.HasPrefix(m[2], "continuing"):
			resumed++
		case strings.HasSuffix(m[2], "began"):
			begun++
			if began.IsZero() {
				began = at
			}
		default:
			completed++
			done = at
		}
	}
	reason := "?"
	if m := breakReason.FindStringSubmatch(logs); m != nil {
		reason = m[1]
	}
	what := fmt.Sprintf("reason %s; %d began, taken up %d times by a restarted daemon, %d complete", reason, begun, resumed, completed)
	switch {
	case begun == 0 || completed == 0:
		return what, fmt.Errorf("no recovery began and completed: %s", what)
	case begun > 1:
		return what, fmt.Errorf("more than one recovery after one failover: %s", what)
	}
	return fmt.Sprintf("%s; %s from began to complete", what, done.Sub(began).Round(time.Millisecond)), nil
}

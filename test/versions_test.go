package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The core of the end-to-end tests runs on every supported PostgreSQL
// version (`make test-matrix`, PG_VERSION=13 ... 18); the whole suite runs
// on Debian's 15. matrixTests is that core: the copy, the stream under
// kill -9, transactions too large for memory (streamed from 14 on, sent
// after their commit on 13), a schema change, a partitioned table, a
// resync, heartbeats, generated columns (sent from 18 on) and prepared
// transactions. The Makefile's test-matrix target runs exactly
// these (TestMatrixListsTests keeps the two lists in step).
var matrixTests = []string{
	"TestCopyInChunks",
	"TestKill9DuringWorkload",
	"TestLargeTransactionsOnEveryProtocol",
	"TestStreamedTransactions",
	"TestSchemaChangesWhileRunning",
	"TestPartitionedTable",
	"TestResyncMarksTheStream",
	"TestHeartbeatAdvancesIdleSlot",
	"TestAddTableAlreadyPublished",
	"TestGeneratedColumns",
	"TestPreparedTransactions",
}

// pgMajor returns the major version of the shared test server.
func pgMajor(t *testing.T) int {
	t.Helper()
	requireServers(t)
	return pgServer.Major
}

// TestLargeTransactionsOnEveryProtocol runs transactions larger than
// logical_decoding_work_mem (64kB on the test server) among small ones,
// with the daemon killed while one is open and again while the largest is
// written. From PostgreSQL 14 on they are streamed while they run
// (protocol version 2); on 13 Postgres sends each after its commit
// (protocol 1), which status shows. ClickHouse ends equal to Postgres.
func TestLargeTransactionsOnEveryProtocol(t *testing.T) {
	spill := filepath.Join(t.TempDir(), "spill")
	e := newEnv(t, streamConfig(spill))
	major := pgMajor(t)
	e.insertEvents(500)
	e.startAudit()
	e.setup()
	d := e.start()
	e.converge("before the large transactions", convergeTimeout)
	st := e.status()
	wantProto := "2 (in-progress transactions streamed)"
	if major < 14 {
		wantProto = fmt.Sprintf("1 (PostgreSQL %d sends a transaction after its commit; streaming needs 14 or later)", major)
	}
	if st["protocol"] != wantProto {
		t.Errorf("PostgreSQL %d: status protocol = %q, want %q", major, st["protocol"], wantProto)
	}
	logged := fmt.Sprintf("protocol=%q", wantProto)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(d.Logs(), logged); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL %d: the daemon does not log protocol %q\n%s", major, wantProto, tail(d.Logs(), 2000))
		}
	}

	ctx := context.Background()
	x, err := e.pg.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Rollback(context.Background())
	run := func(sql string) {
		t.Helper()
		if _, err := x.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	run(`INSERT INTO events (project_id, author_id, action, target_type, fingerprint)
		SELECT g % 100, g % 50 + 1, 10, 'Big', decode(md5(g::text), 'hex') FROM generate_series(1, 20000) g`)
	e.insertEvents(50) // small transactions commit while it is open
	run(`UPDATE events SET action = 11 WHERE target_type = 'Big' AND id % 3 = 0`)
	time.Sleep(500 * time.Millisecond)
	d.kill()
	d = e.start()
	run(`DELETE FROM events WHERE target_type = 'Big' AND id % 5 = 0`)
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// An aborted large one leaves nothing.
	y, err := e.pg.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.Exec(ctx, `INSERT INTO events (author_id, action, target_type) SELECT 1, 1, 'Gone' FROM generate_series(1, 20000)`); err != nil {
		t.Fatal(err)
	}
	y.Rollback(ctx)
	// The largest, killed while it is being written.
	e.exec(`UPDATE events SET action = 12, target_id = 5 WHERE id % 2 = 0`)
	time.Sleep(300 * time.Millisecond)
	d.kill()
	e.checkpointCovered()
	d = e.start()
	e.converge(fmt.Sprintf("large transactions on PostgreSQL %d", major), convergeTimeout)
	d.stop(t)
	e.checkpointCovered()
}

// TestResyncMarksTheStream resyncs a tampered table while the daemon
// streams under a writer. `replicator resync` marks the stream where the
// copy begins: with a logical message from PostgreSQL 14 on, with a row
// of public.replicator_marks on 13 (whose pgoutput sends no messages; setup
// creates the table there). The daemon sees the mark, holds its
// checkpoint, swaps the new copy in, and ClickHouse ends equal to Postgres.
func TestResyncMarksTheStream(t *testing.T) {
	e := newEnv(t, "")
	major := pgMajor(t)
	e.insertEvents(20000)
	out := e.setup()
	if created := strings.Contains(out, "created table public.replicator_marks"); created != (major < 14) {
		t.Errorf("PostgreSQL %d: setup created the mark table: %v, want %v\n%s", major, created, major < 14, out)
	}
	d := e.start()
	e.converge("before the tampering", convergeTimeout)
	db := "db_" + e.name
	for _, q := range []string{
		fmt.Sprintf("INSERT INTO %s.events (id, author_id, _version) SELECT 900000001 + number, 1, 1 FROM system.numbers LIMIT 1", db),
		fmt.Sprintf("ALTER TABLE %s.events UPDATE action = 99 WHERE id %% 10 = 4", db),
	} {
		if err := e.ch.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 5, 2)
	rout, rerr, code := e.cli("resync", "--config", e.config, "--table", "public.events")
	if code != 0 || !strings.Contains(rout, "now holds the new copy") {
		t.Fatalf("PostgreSQL %d: resync exit %d\n%s\n%s\ndaemon:\n%s", major, code, rout, rerr, tail(d.Logs(), 3000))
	}
	if marked := strings.Contains(rout, "by a row of public.replicator_marks"); marked != (major < 14) {
		t.Errorf("PostgreSQL %d: resync marked with a row: %v, want %v\n%s", major, marked, major < 14, rout)
	}
	if !strings.Contains(d.Logs(), "a resync of the table began") {
		t.Errorf("PostgreSQL %d: the daemon did not see the resync's mark\n%s", major, tail(d.Logs(), 3000))
	}
	cancel()
	txns := wait()
	e.converge(fmt.Sprintf("after the resync and %d transactions", txns), convergeTimeout)
	if vout, verrs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify after the resync: exit %d\n%s\n%s", code, vout, verrs)
	}
	// A second resync rewrites the mark row on 13 (an update): the daemon
	// holds and swaps again.
	rout, rerr, code = e.cli("resync", "--config", e.config, "--table", "public.events")
	if code != 0 || !strings.Contains(rout, "now holds the new copy") {
		t.Fatalf("PostgreSQL %d: second resync exit %d\n%s\n%s\ndaemon:\n%s", major, code, rout, rerr, tail(d.Logs(), 3000))
	}
	e.insertEvents(10)
	e.converge("after the second resync", convergeTimeout)
	d.stop(t)
}

// TestMatrixListsTests checks that the Makefile's test-matrix runs exactly
// matrixTests, and that each of them exists.
func TestMatrixListsTests(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^MATRIX_TESTS\s*:=\s*\^\(([^)]*)\)\$\$$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no MATRIX_TESTS := ^(...)$$ line")
	}
	if got := strings.Split(string(m[1]), "|"); !slices.Equal(got, matrixTests) {
		t.Errorf("Makefile's MATRIX_TESTS = %q, want matrixTests %q", got, matrixTests)
	}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	for _, name := range matrixTests {
		if !strings.Contains(src.String(), "func "+name+"(t *testing.T)") {
			t.Errorf("matrix test %s does not exist", name)
		}
	}
}

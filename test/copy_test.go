package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// copyConfig copies in many small chunks with several workers.
const copyConfig = `
load {
  workers    = 3
  chunk_size = "1MiB"
}
`

// tagsDDL is a table without an integer key: a composite key of text and
// an integer.
const tagsDDL = `CREATE TABLE tags (
  name    text,
  project bigint,
  note    text,
  PRIMARY KEY (name, project)
)`

const tagsConfig = `
table "public.tags" {
  order_by = ["name", "project"]
  column "project" { type = "Int64" }
}
`

// sameRows waits until a Postgres query and a ClickHouse query, each
// returning one text column, return the same rows in any order. A
// ClickHouse error (e.g. a column the daemon has not added yet) counts as
// not yet equal.
func (e *env) sameRows(what, pgSQL, chSQL string) {
	e.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		want, got, err := e.bothRows(pgSQL, chSQL)
		if err == nil && strings.Join(want, "\n") == strings.Join(got, "\n") {
			return
		}
		if time.Now().After(deadline) {
			why := fmt.Sprintf("postgres %d rows, clickhouse %d rows", len(want), len(got))
			if err != nil {
				why = err.Error()
			}
			for i := 0; i < len(want) && i < len(got); i++ {
				if want[i] != got[i] {
					why += fmt.Sprintf("; first difference: postgres %q, clickhouse %q", want[i], got[i])
					break
				}
			}
			e.t.Fatalf("%s: did not converge within %s: %s", what, convergeTimeout, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bothRows runs the two queries of sameRows and returns their rows, sorted.
func (e *env) bothRows(pgSQL, chSQL string) (want, got []string, err error) {
	e.t.Helper()
	rows, err := e.pg.Query(context.Background(), pgSQL)
	if err != nil {
		e.t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			e.t.Fatal(err)
		}
		want = append(want, s)
	}
	rows.Close()
	rs, err := e.ch.Query(context.Background(), chSQL)
	if err != nil {
		return want, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			e.t.Fatal(err)
		}
		got = append(got, s)
	}
	sort.Strings(want)
	sort.Strings(got)
	return want, got, rs.Err()
}

// copiedChunks returns how many chunks of the env's copy are done and how
// many there are.
// (0, 0 before setup made the table).
func (e *env) copiedChunks() (done, total int) {
	var d, n uint64
	err := e.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT countIf(lsn > 0), count() FROM db_%s.replicator_copy_chunks FINAL", e.name)).Scan(&d, &n)
	if err != nil {
		return 0, 0
	}
	return int(d), int(n)
}

// seqScans returns the sequential scans Postgres counted on a table.
func (e *env) seqScans(table string) int64 {
	e.t.Helper()
	var n int64
	if err := e.pg.QueryRow(context.Background(), "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = $1::regclass", table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// waitSeqScans waits until Postgres has counted want sequential scans on
// a table (an idle backend may report its counts only 10 s later, and
// does at its exit), and fails at any other count.
func (e *env) waitSeqScans(table string, want int64) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := e.seqScans(table)
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			e.t.Fatalf("%d sequential scans of %s, want %d", n, table, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestCopyInChunks copies events (NULLs, fingerprints, holes left by
// deletes), TOASTed docs and a table keyed by text in many chunks with
// three workers while a writer changes events, then streams: ClickHouse
// equals Postgres.
func TestCopyInChunks(t *testing.T) {
	e := newEnv(t, copyConfig+docsConfig+tagsConfig)
	e.exec(docsDDL)
	e.exec(tagsDDL)
	e.insertEvents(60000)
	e.exec("DELETE FROM events WHERE id % 7 = 0")
	e.insertDocs(1, 2000, 4096)
	e.exec(`INSERT INTO tags SELECT 'tag-' || (g % 997), g / 997, CASE WHEN g % 3 = 0 THEN NULL ELSE md5(g::text) END
		FROM generate_series(1, 30000) g`)

	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 11, 2)
	out := e.setup()
	// Chunks are ranges of pages, which PostgreSQL scans from 14 on; 13
	// copies each table whole.
	minEvents, minTotal := 4, 6
	if pgMajor(t) < 14 {
		minEvents, minTotal = 1, 3
	}
	if m := regexp.MustCompile(`copying public.events with version \S+: (\d+) of (\d+) chunks whole`).FindStringSubmatch(out); m == nil || atoi(m[2]) < minEvents {
		t.Errorf("setup did not copy events in at least %d chunks:\n%s", minEvents, out)
	}
	done, total := e.copiedChunks()
	if done != total || total < minTotal {
		t.Errorf("copy state: %d of %d chunks done, want all of at least %d", done, total, minTotal)
	}
	// The chunks of a table copied whole are read by one sequential scan
	// (TID range scans do not count as one), which Postgres reads through
	// its small buffer ring: two scans of tags in all, with the one that
	// built its primary key.
	if m := regexp.MustCompile(`copying public.tags with version \S+: (\d+) of (\d+) chunks whole`).FindStringSubmatch(out); m == nil || atoi(m[1]) < 2 && pgMajor(t) >= 14 {
		t.Errorf("setup did not copy tags in several chunks:\n%s", out)
	}
	e.waitSeqScans("tags", 2)
	d := e.start()
	time.Sleep(time.Second)
	cancel()
	txns := wait()
	e.converge(fmt.Sprintf("events after the copy and %d transactions", txns), convergeTimeout)
	e.convergeDocs("docs after the copy", convergeTimeout)
	e.sameRows("tags after the copy", "SELECT concat_ws('|', name, project, coalesce(note, '')) FROM tags",
		fmt.Sprintf("SELECT concat(name, '|', toString(project), '|', note) FROM db_%s.tags_live", e.name))
	d.stop(t)
}

// TestCopyResumesAfterKill kills setup with SIGKILL in the middle of its
// copy while writers change events and docs (updates that leave the
// TOASTed body unchanged move rows between pages), lets the writers go on
// between the runs, runs setup again, which copies only what is missing,
// and then streams: ClickHouse equals Postgres and verify agrees.
func TestCopyResumesAfterKill(t *testing.T) {
	e := newEnv(t, strings.Replace(copyConfig, "workers    = 3", "workers    = 1", 1)+docsConfig)
	e.exec(docsDDL)
	e.insertEvents(250000)
	e.insertDocs(1, 4000, 4096)

	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 12, 2)
	var docsWriter sync.WaitGroup
	docsWriter.Add(1)
	go func() {
		defer docsWriter.Done()
		rng := rand.New(rand.NewPCG(5, 5))
		for ctx.Err() == nil {
			var q string
			switch p := rng.IntN(10); {
			case p < 6:
				q = fmt.Sprintf("UPDATE docs SET flag = flag + 1 WHERE id %% 50 = %d", rng.IntN(50))
			case p < 8:
				q = fmt.Sprintf("DELETE FROM docs WHERE id = %d", rng.IntN(4000)+1)
			default:
				id := rng.IntN(100000) + 10000
				q = fmt.Sprintf("INSERT INTO docs (id, body) VALUES (%d, %s) ON CONFLICT DO NOTHING", id, docBody(strconv.Itoa(id), "w", 4096))
			}
			e.pg.Exec(context.Background(), q)
		}
	}()

	setup := exec.Command(binary, "setup", "--config", e.config)
	var firstOut strings.Builder
	setup.Stdout, setup.Stderr = &firstOut, &firstOut
	if err := setup.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- setup.Wait() }()
	killedAt := 0
	for deadline := time.Now().Add(2 * time.Minute); killedAt == 0; {
		select {
		case err := <-exited:
			t.Fatalf("setup finished before it was killed (%v): make the table larger\n%s", err, firstOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("setup copied too little within 2 minutes\n%s", firstOut.String())
		}
		if done, total := e.copiedChunks(); total > 0 && done*10 >= total*3 {
			setup.Process.Kill()
			<-exited
			killedAt = done
			t.Logf("setup killed with %d of %d chunks copied", done, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _, _ := e.statusCode()
	tables, _ := st["tables"].([]any)
	var copyState map[string]any
	for _, tb := range tables {
		if m, _ := tb.(map[string]any); m["source"] == "public.events" {
			copyState, _ = m["copy"].(map[string]any)
		}
	}
	if done, _ := copyState["chunks_done"].(float64); copyState == nil || int(done) < killedAt || done >= copyState["chunks"].(float64) {
		t.Errorf("status after the kill shows copy %v, want %d or more chunks of events done and some not", copyState, killedAt)
	}
	time.Sleep(time.Second) // the writers change rows between the runs

	out := e.setup()
	if !strings.Contains(out, "resuming the copy") {
		t.Errorf("second setup did not resume:\n%s", out)
	}
	m := regexp.MustCompile(`copying public.events with version \S+: (\d+) of (\d+) chunks whole, (\d+) for the rows changed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("second setup output lacks the events plan:\n%s", out)
	}
	if whole, total := atoi(m[1]), atoi(m[2]); whole >= total || atoi(m[3]) == 0 {
		t.Errorf("second setup copied %s of %s chunks whole and %s again: want only the missing ones whole", m[1], m[2], m[3])
	}
	d := e.start()
	time.Sleep(2 * time.Second)
	cancel()
	txns := wait()
	docsWriter.Wait()
	e.converge(fmt.Sprintf("events after a resumed copy and %d transactions", txns), convergeTimeout)
	e.convergeDocs("docs after a resumed copy", convergeTimeout)
	vout, verrs, code := e.cli("verify", "--config", e.config)
	if code != 0 {
		t.Errorf("verify after a resumed copy: exit %d\n%s\n%s", code, vout, verrs)
	}
	d.stop(t)
}

// TestCopyStopsOnUnmappableRow copies a table with a value its target
// type cannot hold: setup stops naming table, column and key and says how
// to go on; once the row is fixed, setup resumes and copies everything.
func TestCopyStopsOnUnmappableRow(t *testing.T) {
	e := newEnv(t, copyConfig)
	e.insertEvents(40000)
	e.exec("UPDATE events SET project_id = -5 WHERE id = 31234")
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 {
		t.Fatalf("setup copied a negative project_id into UInt64:\n%s", out)
	}
	for _, want := range []string{"copied row of table public.events", "column project_id", "key id=31234", "run `replicator setup` again"} {
		if !strings.Contains(errs, want) {
			t.Errorf("setup error lacks %q:\n%s", want, errs)
		}
	}
	e.exec("UPDATE events SET project_id = 5 WHERE id = 31234")
	out = e.setup()
	if !strings.Contains(out, "resuming the copy") {
		t.Errorf("second setup did not resume:\n%s", out)
	}
	d := e.start()
	e.converge("after the fixed row", convergeTimeout)
	d.stop(t)
}

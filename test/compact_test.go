package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tombstonesBelow counts the places of events whose newest row is a
// tombstone below lsn − 1: what a compaction at checkpoint lsn removes.
func (e *env) tombstonesBelow(lsn uint64) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf(`SELECT count() FROM (
		SELECT argMax(_deleted, (_version, _seq)) AS d, max(_version) AS v FROM db_%s.events GROUP BY id)
		WHERE d = 1 AND v + 1 < %d`, e.name, lsn)).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// rowsOf counts the rows of events in ClickHouse, of every version.
func (e *env) rowsOf(where string) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.events WHERE %s", e.name, where)).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// pollDeleted polls events_live for rows matching where until the
// returned function is called, which returns the most rows one poll saw
// and the number of polls.
func (e *env) pollDeleted(where string) (stop func() (uint64, int)) {
	ctx, cancel := context.WithCancel(context.Background())
	var most uint64
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var c uint64
			if err := e.ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM db_%s.events_live WHERE %s", e.name, where)).Scan(&c); err == nil {
				most = max(most, c)
				n++
			}
		}
	}()
	return func() (uint64, int) { cancel(); <-done; return most, n }
}

// compact runs `replicator compact` and returns its output; it fails the
// test unless it exits 0.
func (e *env) compact(args ...string) string {
	e.t.Helper()
	out, errs, code := e.cli(append([]string{"compact", "--config", e.config}, args...)...)
	if code != 0 {
		e.t.Fatalf("compact exited %d\n%s\n%s", code, out, errs)
	}
	return out
}

// waitCheckpointPast waits until the stored checkpoint passes Postgres'
// current WAL position.
func (e *env) waitCheckpointPast() uint64 {
	e.t.Helper()
	var now uint64
	if err := e.pg.QueryRow(context.Background(), "SELECT pg_current_wal_lsn() - '0/0'").Scan(&now); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(convergeTimeout)
	for {
		if l := e.checkpointLSN(); l > now+1 {
			return l
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the checkpoint did not pass %d within %s", now, convergeTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCompact removes deleted keys below the checkpoint under a live
// writer that deletes, inserts again the keys it deleted (also after
// their rows were removed), updates and inserts, while the daemon is
// killed: the tables stay exact, verify finds them equal, and no
// tombstone is left below the checkpoint.
func TestCompact(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	e.converge("initial copy", convergeTimeout)

	// Deleted keys, removed; some inserted again after.
	e.exec(`DELETE FROM events WHERE id <= 200`)
	e.exec(`UPDATE events SET action = 9 WHERE id BETWEEN 201 AND 300`)
	e.converge("deletes", convergeTimeout)
	lsn := e.waitCheckpointPast()
	if n := e.tombstonesBelow(lsn); n != 200 {
		t.Fatalf("%d deleted keys below the checkpoint before compact, want 200", n)
	}
	// A reader never sees a deleted key again while its rows go.
	seen := e.pollDeleted("id <= 200")
	out := e.compact()
	if n, p := seen(); n > 0 {
		t.Fatalf("a reader of events_live saw %d rows of deleted ids 1..200 during compact (%d polls)", n, p)
	} else {
		t.Logf("%d polls of events_live during compact saw no deleted key", p)
	}
	if !strings.Contains(out, "COMPACTED") || !strings.Contains(out, "of 200 deleted keys") {
		t.Fatalf("compact output:\n%s", out)
	}
	if n := e.rowsOf("id <= 200"); n != 0 {
		t.Fatalf("%d rows of deleted ids 1..200 left after compact", n)
	}
	if n := e.rowsOf("id BETWEEN 201 AND 300"); n < 100 {
		t.Fatalf("compact removed rows of updated keys: %d rows of ids 201..300", n)
	}
	e.exec(`INSERT INTO events (id, author_id, action, target_type) SELECT g, 7, 1, 'Issue' FROM generate_series(1, 100) g`)
	e.converge("keys inserted again after their rows were removed", convergeTimeout)
	if out := e.compact(); !strings.Contains(out, "OK no deleted key") {
		t.Fatalf("second compact without new deletes:\n%s", out)
	}

	// A live writer, compactions and kill -9 of the daemon.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var changes int
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 5))
		var deleted []int
		for ctx.Err() == nil {
			var q string
			switch op := rng.IntN(10); {
			case op < 3:
				id := 1 + rng.IntN(3000)
				q = fmt.Sprintf(`DELETE FROM events WHERE id = %d`, id)
				deleted = append(deleted, id)
			case op < 5 && len(deleted) > 0:
				i := rng.IntN(len(deleted))
				q = fmt.Sprintf(`INSERT INTO events (id, author_id, action, target_type) VALUES (%d, %d, 2, 'MergeRequest') ON CONFLICT (id) DO NOTHING`,
					deleted[i], 1+rng.IntN(50))
				deleted = append(deleted[:i], deleted[i+1:]...)
			case op < 6:
				// Delete and insert again in one transaction: one version.
				id := 1 + rng.IntN(3000)
				q = fmt.Sprintf(`BEGIN; DELETE FROM events WHERE id = %[1]d;
					INSERT INTO events (id, author_id, action, target_type) VALUES (%[1]d, 3, 3, 'Issue') ON CONFLICT (id) DO NOTHING; COMMIT`, id)
			case op < 9:
				q = fmt.Sprintf(`UPDATE events SET action = %d, updated_at = now() WHERE id = %d`, rng.IntN(10), 1+rng.IntN(3000))
			default:
				q = `INSERT INTO events (author_id, action, target_type) VALUES (1, 1, 'Issue')`
			}
			if _, err := e.pg.Exec(context.Background(), q); err == nil {
				mu.Lock()
				changes++
				mu.Unlock()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	removed := 0
	for round := 0; round < 6; round++ {
		time.Sleep(1500 * time.Millisecond)
		if round == 2 || round == 4 {
			d.kill()
			d = e.start()
		}
		out := e.compact("--wait", "2m")
		if strings.Contains(out, "COMPACTED") {
			removed++
		}
		t.Logf("round %d: %s", round, strings.TrimSpace(out))
	}
	cancel()
	wg.Wait()
	e.converge("after the writer", convergeTimeout)
	if removed == 0 {
		t.Fatalf("no compaction under the writer removed anything (%d changes)", changes)
	}
	lsn = e.waitCheckpointPast()
	e.compact()
	if n := e.tombstonesBelow(lsn); n != 0 {
		t.Fatalf("%d deleted keys left below checkpoint %d after compact", n, lsn)
	}
	e.converge("after the last compaction", convergeTimeout)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Fatalf("verify after compactions: exit %d\n%s\n%s", code, out, errs)
	}
	// The committed view agrees too.
	got, err := e.actualIn("events_committed")
	if err != nil {
		t.Fatal(err)
	}
	if want := e.expected(); !equal(want, got) {
		t.Fatalf("committed view after compactions: %s", diff(want, got))
	}
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("daemon exited %d", code)
	}
	t.Logf("%d changes; %d compactions removed rows", changes, removed)
}

// TestCompactScheduled is the daemon's compaction.interval: deleted keys
// are removed without a command, and a history table is left whole.
func TestCompactScheduled(t *testing.T) {
	e := newEnv(t, `compaction {
  interval = "1s"
}`)
	e.insertEvents(1000)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.converge("initial copy", convergeTimeout)
	e.exec(`DELETE FROM events WHERE id <= 100`)
	e.converge("deletes", convergeTimeout)
	deadline := time.Now().Add(convergeTimeout)
	for e.rowsOf("id <= 100") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("scheduled compaction left %d rows of deleted ids 1..100", e.rowsOf("id <= 100"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.exec(`INSERT INTO events (id, author_id, action, target_type) SELECT g, 7, 1, 'Issue' FROM generate_series(1, 50) g`)
	e.converge("keys inserted again", convergeTimeout)
	if !strings.Contains(d.Logs(), `replicator.compact: compacted:`) || !strings.Contains(d.Logs(), `rows=200 keys=100`) {
		t.Fatalf("the daemon logged no compaction:\n%s", tail(d.Logs(), 3000))
	}
}

// TestCompactKeepsWhatAReplayReads: a compaction never removes rows at or
// above the checkpoint, which a replay may read. The daemon stores an
// update that leaves a TOASTed body unchanged and a delete of the rows
// after it, and is killed before its checkpoint; compact runs while it is down; the
// replay of the update then needs the body from the row below the
// checkpoint.
func TestCompactKeepsWhatAReplayReads(t *testing.T) {
	e := newEnv(t, `
table "public.docs" {
  order_by = ["id"]
}`)
	e.exec(`CREATE TABLE docs (id integer PRIMARY KEY, n integer NOT NULL, body text NOT NULL)`)
	e.exec(`INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 300) i)
		FROM generate_series(1, 20) g`)
	e.setup()
	// Both transactions in one flush; the replay (at batch.max_rows = 5)
	// flushes between them.
	slow := filepath.Join(e.dir, "slow.hcl")
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), `max_delay = "200ms"`, `max_delay = "3s"`+"\n  min_interval = \"3s\"", 1)
	if err := os.WriteFile(slow, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(e.dir, "small.hcl")
	if err := os.WriteFile(small, []byte(strings.Replace(string(src), `max_rows  = 20000`, `max_rows  = 5`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := e.startWith(slow, "REPLICATOR_TEST_FAULT=crash-after-insert-of-flush:1")
	time.Sleep(time.Second) // streaming
	e.exec(`UPDATE docs SET n = 1 WHERE id <= 10`)
	e.exec(`DELETE FROM docs WHERE id <= 10`)
	if code := d.wait(t, convergeTimeout); code == 0 {
		t.Fatalf("the daemon did not crash after its first flush")
	}
	var tombstones uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.docs WHERE _deleted = 1", e.name)).Scan(&tombstones); err != nil {
		t.Fatal(err)
	}
	if tombstones != 10 {
		t.Fatalf("%d tombstones stored before the crash, want the 10 of the delete ", tombstones)
	}
	if out := e.compact(); !strings.Contains(out, "public.docs: OK no deleted key") {
		t.Fatalf("compact removed rows above the checkpoint:\n%s", out)
	}
	d = e.startWith(small)
	defer d.stop(t)
	deadline := time.Now().Add(convergeTimeout)
	for {
		var live uint64
		if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.docs_live", e.name)).Scan(&live); err == nil && live == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("docs did not converge to 10 live rows:\n%s", tail(d.Logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.compact()
	if out, errs, code := e.cli("verify", "--config", e.config, "--table", "public.docs"); code != 0 {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestHostileProfile runs setup, the daemon (updates that leave TOASTed
// values unchanged, whose images it looks up; deletes; a restart),
// compact, verify and status as a ClickHouse user whose settings profile
// sets every limit 18.16 has to cut results short instead of failing,
// and to skip unavailable shards (the user hostile of the harness): the
// replicator lifts those limits on its sessions, and the tables end
// exact.
func TestHostileProfile(t *testing.T) {
	e := newEnv(t, `
table "public.docs" {
  order_by = ["id"]
}`)
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("database = %q", "db_"+e.name)
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(src), db, db+"\n  username = \"hostile\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.exec(`CREATE TABLE docs (id integer PRIMARY KEY, n integer NOT NULL, body text NOT NULL)`)
	e.exec(`INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 100) i)
		FROM generate_series(1, 300) g`)
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	e.converge("initial copy", convergeTimeout)
	e.exec(`UPDATE docs SET n = n + 1`)
	e.exec(`UPDATE events SET action = 9 WHERE id % 3 = 0`)
	e.exec(`DELETE FROM events WHERE id % 5 = 0`)
	e.exec(`DELETE FROM docs WHERE id % 4 = 0`)
	d.kill()
	d = e.start()
	defer d.stop(t)
	e.exec(`UPDATE docs SET n = n + 1 WHERE id % 2 = 0`)
	e.converge("changes", convergeTimeout)
	e.sameRows("docs", "SELECT id || '|' || n || '|' || md5(body) FROM docs",
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(n), '|', lower(hex(MD5(body)))) FROM db_%s.docs_live", e.name))
	e.waitCheckpointPast()
	out := e.compact()
	if !strings.Contains(out, "public.events: COMPACTED") || !strings.Contains(out, "of 600 deleted keys") {
		t.Fatalf("compact as the hostile user:\n%s", out)
	}
	e.converge("after compact", convergeTimeout)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 || !strings.Contains(out, "2400") {
		t.Fatalf("verify as the hostile user: exit %d\n%s\n%s", code, out, errs)
	}
	status, _, code := e.cli("status", "--config", e.config, "--json")
	if code != 0 || !strings.Contains(status, `"live_rows": 2400`) {
		t.Fatalf("status as the hostile user: exit %d\n%s", code, status)
	}
}

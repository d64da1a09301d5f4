package test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// newDocsEnv is an env with the docs table next to events, n docs with
// bodies of size bytes, and max_rows rows per flush; setup has run.
func newDocsEnv(t *testing.T, n, size, maxRows int) *env {
	t.Helper()
	e := newEnv(t, docsConfig)
	e.exec(docsDDL)
	e.setConfig("max_rows  = 20000", fmt.Sprintf("max_rows  = %d", maxRows))
	if n > 0 {
		e.insertDocs(1, n, size)
	}
	e.setup()
	return e
}

// oneFlush makes the daemon's first flush wait 2 seconds after its start,
// so that it writes every transaction a test made before starting it in
// one flush (complete transactions are otherwise flushed at once).
func (e *env) oneFlush() {
	e.t.Helper()
	e.setConfig(`max_delay = "200ms"`, `max_delay = "2s"
  min_interval = "2s"`)
}

// chRows runs a ClickHouse query and returns its rows as text, sorted.
func (e *env) chRows(q string) []string {
	e.t.Helper()
	rows, err := e.ch.Query(context.Background(), q)
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out []string
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			e.t.Fatal(err)
		}
		parts := make([]string, len(dest))
		for i, d := range dest {
			parts[i] = fmt.Sprint(reflect.ValueOf(d).Elem().Interface())
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// chExec runs a ClickHouse statement.
func (e *env) chExec(q string) {
	e.t.Helper()
	if err := e.ch.Exec(context.Background(), q); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// chCount runs a ClickHouse query that returns one count.
func (e *env) chCount(q string) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.ch.QueryRow(context.Background(), q).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestToastSequences replicates a table with a TOASTed column through
// updates that leave it unchanged (its image from the buffer or from
// ClickHouse), transactions larger than max_rows that change the same keys
// twice (rows of equal version), key moves and deletes after updates, body
// rewrites, and a TRUNCATE of the other table.
func TestToastSequences(t *testing.T) {
	e := newDocsEnv(t, 300, 6000, 100)
	e.insertEvents(50)
	d := e.start()
	e.convergeDocs("initial copy", convergeTimeout)
	db := "db_" + e.name

	// Unchanged bodies of rows flushed long ago: images from ClickHouse.
	e.exec(`UPDATE docs SET flag = 3 WHERE id % 3 = 0`)
	// Bodies rewritten, then unchanged in a later transaction.
	e.exec(`UPDATE docs SET body = ` + docBody("id", "v2", 6000) + ` WHERE id % 7 = 0`)
	e.exec(`UPDATE docs SET flag = 4 WHERE id % 7 = 0`)
	e.convergeDocs("updates leaving the body unchanged", convergeTimeout)

	// Key moves with the body unchanged, alone and after an update in the
	// same transaction.
	e.exec(`UPDATE docs SET id = id + 1000000 WHERE id % 10 = 0`)
	e.exec(`BEGIN; UPDATE docs SET flag = 5 WHERE id = 11; UPDATE docs SET id = 2000011 WHERE id = 11; COMMIT`)
	// Deletes after updates.
	e.exec(`UPDATE docs SET flag = 6 WHERE id IN (13, 17)`)
	e.exec(`DELETE FROM docs WHERE id IN (13, 17)`)
	e.exec(`BEGIN; UPDATE docs SET flag = 7 WHERE id = 19; DELETE FROM docs WHERE id = 19; COMMIT`)
	e.convergeDocs("key moves and deletes", convergeTimeout)

	// A TRUNCATE of the other table leaves docs alone.
	e.exec(`TRUNCATE events`)
	e.insertEvents(20)
	e.exec(`UPDATE docs SET flag = 8 WHERE id % 5 = 1`)
	e.converge("events after TRUNCATE", convergeTimeout)
	e.convergeDocs("docs after the TRUNCATE of events", convergeTimeout)

	// Keep the rows of equal version apart, as they are between merges.
	e.chExec("SYSTEM STOP MERGES " + db + ".docs")
	e.exec(`BEGIN; UPDATE docs SET flag = 11 WHERE id <= 250; UPDATE docs SET flag = 12 WHERE id <= 250; COMMIT`)
	e.convergeDocs("one transaction changing 250 keys twice, 100 rows per flush", convergeTimeout)
	ties := e.chCount(fmt.Sprintf("SELECT count() FROM (SELECT id, _version, count() AS n FROM %s.docs GROUP BY id, _version HAVING n > 1)", db))
	if ties == 0 {
		t.Fatal("no key has two rows of one version: the transaction did not span several flushes")
	}
	live := e.chRows(fmt.Sprintf("SELECT id, flag FROM %s.docs_live", db))
	byTie := e.chRows(fmt.Sprintf("SELECT id, flag FROM (SELECT id, argMax(flag, (_version, _seq)) AS flag, argMax(_deleted, (_version, _seq)) AS d FROM %s.docs GROUP BY id) WHERE d = 0", db))
	if strings.Join(live, ",") != strings.Join(byTie, ",") {
		t.Errorf("argMax over (_version, _seq) differs from the live view on %d keys with equal versions", ties)
	}
	e.chExec("SYSTEM START MERGES " + db + ".docs")

	if logs := d.Logs(); strings.Contains(logs, "[ERROR]") {
		t.Errorf("daemon logged an error:\n%s", tail(logs, 3000))
	}
	d.stop(t)
}

// TestShippedQueriesAgreeOnEqualVersions runs each query of
// sql/clickhouse/queries.sql in its live-view form and its argMax form on
// events where one transaction larger than max_rows changed the same keys
// twice: both forms must return the same rows.
func TestShippedQueriesAgreeOnEqualVersions(t *testing.T) {
	e := newEnv(t, "")
	e.setConfig("max_rows  = 20000", "max_rows  = 100")
	e.exec(`INSERT INTO events (project_id, author_id, action, target_type, created_at)
		SELECT g % 4, g % 3 + 1, g % 8, (ARRAY['Issue', 'MergeRequest', 'WorkItem'])[g % 3 + 1],
		       '2022-06-01'::timestamptz + (g || ' hours')::interval
		FROM generate_series(1, 400) g`)
	e.setup()
	d := e.start()
	e.converge("initial copy", convergeTimeout)
	db := "db_" + e.name
	e.chExec("SYSTEM STOP MERGES " + db + ".events")
	e.exec(`BEGIN;
		UPDATE events SET action = 5, author_id = 1 WHERE id <= 300;
		UPDATE events SET action = 7, target_type = 'MergeRequest', project_id = 2 WHERE id <= 300 AND id % 2 = 0;
		UPDATE events SET author_id = 2 WHERE id <= 300 AND id % 3 = 0;
		COMMIT`)
	e.converge("three updates of 300 keys in one transaction", convergeTimeout)
	if ties := e.chCount(fmt.Sprintf("SELECT count() FROM (SELECT id, _version, count() AS n FROM %s.events GROUP BY id, _version HAVING n > 1)", db)); ties == 0 {
		t.Fatal("no key has two rows of one version")
	}
	queries := statements(t, "../sql/clickhouse/queries.sql", db)
	pairs := 0
	for i := 0; i+1 < len(queries); i++ {
		// (The form grouped by the seed's sorting key is for a table
		// sorted by it; this one is sorted by id.)
		if !strings.Contains(queries[i], "events_live") || !strings.Contains(queries[i+1], "GROUP BY id\n") {
			continue
		}
		live, byArgMax := e.chRows(queries[i]), e.chRows(queries[i+1])
		if len(live) == 0 {
			t.Errorf("query %d returns no rows on the test data", i)
		}
		if strings.Join(live, "\n") != strings.Join(byArgMax, "\n") {
			t.Errorf("queries %d and %d differ: live view %v, argMax form %v", i, i+1, live, byArgMax)
		}
		pairs++
	}
	if pairs < 2 {
		t.Errorf("%d pairs of a live-view query and its argMax form in %d queries, want 2", pairs, len(queries))
	}
	e.chExec("SYSTEM START MERGES " + db + ".events")
	d.stop(t)
}

// TestToastReplaySkipsLaterRows crashes between a flush and its checkpoint
// after the flush stored an update (body unchanged) and a later delete of
// the same key: the replay of the update must take the image before it,
// not the tombstone its first attempt stored; and, after a merge folded the
// older rows into the first attempt's rows, the replay must still go on.
func TestToastReplaySkipsLaterRows(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(fmt.Sprintf("merged=%v", merge), func(t *testing.T) {
			e := newDocsEnv(t, 10, 6000, 20000)
			d := e.start()
			e.convergeDocs("initial copy", convergeTimeout)
			d.stop(t)
			e.exec(`UPDATE docs SET flag = 1 WHERE id = 7`)
			e.exec(`DELETE FROM docs WHERE id = 7`)
			e.exec(`UPDATE docs SET flag = 9 WHERE id = 8`)
			e.exec(`UPDATE docs SET flag = 3 WHERE id = 9`)

			e.oneFlush()
			crashed := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-insert:1")
			crashed.wait(t, convergeTimeout)
			if n := e.chCount(fmt.Sprintf("SELECT count() FROM db_%s.docs WHERE id = 7 AND _deleted = 1", e.name)); n == 0 {
				t.Fatalf("the crashed run did not store the tombstone of id 7:\n%s", tail(crashed.Logs(), 3000))
			}
			if merge {
				e.chExec(fmt.Sprintf("OPTIMIZE TABLE db_%s.docs FINAL", e.name))
			}
			// Converging on this row proves that the replay got past the others.
			e.exec(`INSERT INTO docs (id, body) VALUES (999, 'after the replay')`)
			d = e.start()
			e.convergeDocs("replay after a crash between data and checkpoint", convergeTimeout)
			d.stop(t)
		})
	}
}

// TestTruncateReplay crashes after a TRUNCATE reached ClickHouse and before
// the next checkpoint: the replay of an earlier update with the body
// unchanged must not look for an image in the emptied table.
func TestTruncateReplay(t *testing.T) {
	e := newDocsEnv(t, 10, 6000, 20000)
	d := e.start()
	e.convergeDocs("initial copy", convergeTimeout)
	d.stop(t)
	e.exec(`UPDATE docs SET flag = 1 WHERE id = 3`)
	e.exec(`BEGIN; TRUNCATE docs; INSERT INTO docs (id, body) SELECT g, ` + docBody("g", "new", 6000) + ` FROM generate_series(100, 105) g; COMMIT`)
	e.exec(`UPDATE docs SET flag = 2 WHERE id = 101`)

	e.oneFlush()
	crashed := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-insert:1")
	crashed.wait(t, convergeTimeout)
	// Converging on this row proves that the replay got past the others.
	e.exec(`INSERT INTO docs (id, body) VALUES (999, 'after the replay')`)
	d = e.start()
	e.convergeDocs("replay after a crash that followed a TRUNCATE", convergeTimeout)
	d.stop(t)
}

// TestSkippedTransactionSchemaIsNotChecked restarts after a crash that
// followed a commit checkpoint and a schema change applied to both sides:
// the replayed transaction at the checkpoint, which is skipped, announces
// the old schema; only the transactions that are written must match.
func TestSkippedTransactionSchemaIsNotChecked(t *testing.T) {
	e := newDocsEnv(t, 10, 100, 20000)
	d := e.start()
	e.convergeDocs("initial copy", convergeTimeout)
	d.stop(t)
	e.exec(`UPDATE docs SET flag = 1 WHERE id = 1`)
	crashed := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-checkpoint:1")
	crashed.wait(t, convergeTimeout)

	e.exec(`ALTER TABLE docs ADD COLUMN extra text`)
	if err := e.ch.Exec(context.Background(), fmt.Sprintf("ALTER TABLE db_%s.docs ADD COLUMN extra String AFTER body", e.name)); err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO docs (id, body, extra) VALUES (50, 'fifty', 'x')`)
	d = e.start()
	e.convergeDocs("after a schema change applied to both sides", convergeTimeout)
	d.stop(t)
}

// TestRestartRightAfterKill restarts the daemon at once after kill -9,
// while the old walsender may still hold the slot: the new daemon waits for
// it instead of exiting with "slot in use".
func TestRestartRightAfterKill(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	for i := 0; i < 3; i++ {
		d := e.start()
		e.insertEvents(10)
		e.converge("before kill", convergeTimeout)
		d.kill()
		d = e.start()
		select {
		case <-d.done:
			t.Fatalf("restart %d: daemon exited with %d:\n%s", i, d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 3000))
		case <-time.After(3 * time.Second):
		}
		e.insertEvents(10)
		e.converge("after restart", convergeTimeout)
		d.stop(t)
	}
}

// TestPartitionMove updates the partition column of rows without changing
// their sorting key: the row must be deleted in its old partition.
func TestPartitionMove(t *testing.T) {
	e := newEnv(t, `
table "public.regions" {
  order_by     = ["id"]
  partition_by = "region"
  column "id"     { type = "UInt64" }
  column "region" { type = "UInt8" }
}
`)
	e.exec(`CREATE TABLE regions (id bigint, region smallint, note text, PRIMARY KEY (id, region))`)
	e.exec(`INSERT INTO regions SELECT g, g % 3, 'n' || g FROM generate_series(1, 30) g`)
	e.setup()
	d := e.start()
	e.exec(`UPDATE regions SET region = region + 1 WHERE id % 2 = 0`)
	e.exec(`BEGIN; UPDATE regions SET region = 7 WHERE id = 3; UPDATE regions SET region = 8 WHERE id = 3; UPDATE regions SET region = 0 WHERE id = 3; COMMIT`)
	want := func() []string {
		rows, err := e.pg.Query(context.Background(), `SELECT id, region, note FROM regions`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id int64
			var region int16
			var note string
			if err := rows.Scan(&id, &region, &note); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%d|%d|%s", id, region, note))
		}
		sort.Strings(out)
		return out
	}()
	deadline := time.Now().Add(convergeTimeout)
	for {
		got := e.chRows(fmt.Sprintf("SELECT id, region, note FROM db_%s.regions_live", e.name))
		// What a reader that collapses rows only within a partition sees, as
		// merges do: the old partition must hold a tombstone.
		perPartition := e.chRows(fmt.Sprintf(`SELECT id, region, note FROM (SELECT id, region, argMax(note, (_version, _seq)) AS note,
			argMax(_deleted, (_version, _seq)) AS d FROM db_%s.regions GROUP BY id, region) WHERE d = 0`, e.name))
		if strings.Join(got, ",") == strings.Join(want, ",") && strings.Join(perPartition, ",") == strings.Join(want, ",") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("regions did not converge:\nwant %v\nlive view %v\nper partition %v", want, got, perPartition)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stop(t)
}

// TestMemoryBoundedByBytes replicates one transaction that rewrites 2,000
// rows of 100 kB bodies with the default batch.max_bytes (64 MiB): the
// daemon's peak RSS stays within 2 × max_bytes + 64 MiB.
func TestMemoryBoundedByBytes(t *testing.T) {
	e := newEnv(t, docsConfig)
	e.exec(docsDDL)
	e.setConfig("max_rows  = 20000", "max_rows  = 50000")
	e.insertDocs(1, 2000, 100_000)
	e.setup()
	d := e.start()
	e.convergeDocs("initial copy", convergeTimeout)
	e.exec(`UPDATE docs SET body = ` + docBody("id", "x", 100_000))
	e.convergeDocs("2,000 rows of 100 kB in one transaction", 3*convergeTimeout)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var peakKB int
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d", &peakKB)
		}
	}
	const limit = (2*64 + 64) << 10 // kB
	t.Logf("peak RSS %d MiB (bound %d MiB)", peakKB>>10, limit>>10)
	if peakKB == 0 || peakKB > limit {
		t.Errorf("peak RSS %d MiB, want at most %d MiB", peakKB>>10, limit>>10)
	}
	d.stop(t)
}

// holdSlot streams from the daemon's slot on a connection of its own for
// d without acknowledging anything, as a walsender that has not yet
// noticed its client died would. The returned channel closes when the
// slot is free again.
func (e *env) holdSlot(d time.Duration) <-chan struct{} {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, pgServer.DSN(e.name)+"&replication=database")
	if err != nil {
		e.t.Fatal(err)
	}
	err = pglogrepl.StartReplication(ctx, conn, "slot_"+e.name, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'pub_" + e.name + "'"}})
	if err != nil {
		e.t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(d)
		conn.Close(ctx)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			var active bool
			if err := e.pg.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", "slot_"+e.name).Scan(&active); err == nil && !active {
				return
			}
		}
	}()
	return released
}

// TestStartWhileSlotHeld starts the daemon while the slot is held for two
// seconds: it waits for the slot instead of exiting with "slot in use".
func TestStartWhileSlotHeld(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	released := e.holdSlot(2 * time.Second)
	d := e.start()
	<-released
	e.insertEvents(10)
	e.converge("after the slot was released", convergeTimeout)
	if logs := d.Logs(); !strings.Contains(logs, "waiting for it") {
		t.Errorf("the daemon did not say that it waits for the slot:\n%s", tail(logs, 2000))
	}
	d.stop(t)
}

// TestKeyMoveReplayAfterMerge crashes after a flush stored an update that
// moved a row to another key with its TOASTed body unchanged, and merges
// the old key's image into the update's tombstone: the replay takes the
// body from the rows its first attempt stored under the new key. When a
// later update of the moved row (body unchanged) was stored too, the merge
// also folds the move's own row into that update's row: the replay takes
// the body from the later row, whether it replays both changes in one
// flush (the later one waits for the move's lookup) or in two. A row moved
// twice, of which the first attempt stored only the first move, takes the
// body from the first move's row. A row inserted at the old key after the
// move is another row: its body is never the moved row's.
func TestKeyMoveReplayAfterMerge(t *testing.T) {
	const move, update = `UPDATE docs SET id = id + 1000 WHERE id = 3`, `UPDATE docs SET flag = 1 WHERE id = 1003`
	for _, tc := range []struct {
		name string
		// stored are the changes the crashed run stores; the last one
		// leaves a row of id with flag 1 (0 for a move alone).
		stored []string
		id     int
		// later are changes made after the crash, replayed with the others.
		later []string
		// merged are the rows (id|_deleted) of ids 3 and 1003 left by the merge.
		merged []string
		// split replays with max_rows = 2: each change is a flush of its own.
		split bool
	}{
		{name: "move", stored: []string{move}, id: 1003, merged: []string{"1003|0", "3|1"}},
		{name: "move then update", stored: []string{move, update}, id: 1003, merged: []string{"1003|0", "3|1"}},
		{name: "move then update, replayed in two flushes", stored: []string{move, update}, id: 1003, merged: []string{"1003|0", "3|1"}, split: true},
		{name: "moved twice, the second move after the crash", stored: []string{move}, id: 1003,
			later: []string{`UPDATE docs SET id = 2003, flag = 1 WHERE id = 1003`}, merged: []string{"1003|0", "3|1"}},
		{name: "a new row at the old key after a move", id: 1003, stored: []string{move,
			`INSERT INTO docs (id, body) VALUES (3, 'another row')`, update}, merged: []string{"1003|0", "3|0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newDocsEnv(t, 10, 6000, 20000)
			d := e.start()
			e.convergeDocs("initial copy", convergeTimeout)
			d.stop(t)
			for _, q := range tc.stored {
				e.exec(q)
			}
			db := "db_" + e.name
			e.crashAfterOneFlush(fmt.Sprintf("SELECT count() FROM %s.docs WHERE id = %d AND flag = %d", db, tc.id, min(len(tc.stored)-1, 1)))
			e.chExec(fmt.Sprintf("OPTIMIZE TABLE %s.docs FINAL", db))
			if rows := e.chRows(fmt.Sprintf("SELECT id, _deleted FROM %s.docs WHERE id IN (3, 1003)", db)); strings.Join(rows, ",") != strings.Join(tc.merged, ",") {
				t.Fatalf("after the merge: rows (id|_deleted) %v, want %v", rows, tc.merged)
			}
			for _, q := range tc.later {
				e.exec(q)
			}
			if tc.split {
				e.setConfig("max_rows  = 20000", "max_rows  = 2")
			}
			// Converging on this row proves that the replay got past the others.
			e.exec(`INSERT INTO docs (id, body) VALUES (999, 'after the replay')`)
			d = e.start()
			e.convergeDocsOrExit(d, "replay of a key move after a merge", convergeTimeout)
			d.stop(t)
		})
	}
}

// crashAfterOneFlush runs the daemon until its first flush stored the
// changes made while it was stopped and it crashed before the checkpoint;
// the ClickHouse query counts stored rows that prove it.
func (e *env) crashAfterOneFlush(count string) {
	e.t.Helper()
	e.oneFlush()
	crashed := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-insert:1")
	crashed.wait(e.t, convergeTimeout)
	if n := e.chCount(count); n == 0 {
		e.t.Fatalf("the crashed run did not store the rows (%s):\n%s", count, tail(crashed.Logs(), 3000))
	}
}

// convergeDocsOrExit is convergeDocs that fails at once, with the log,
// when the daemon d exits.
func (e *env) convergeDocsOrExit(d *daemon, what string, timeout time.Duration) {
	e.t.Helper()
	want := e.docsExpected()
	deadline := time.Now().Add(timeout)
	for {
		got, err := e.docsActual()
		if err == nil && fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		select {
		case <-d.done:
			e.t.Fatalf("%s: the daemon exited with %d:\n%s\n%s", what, d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 3000), e.haltReport(d.Logs()))
		default:
		}
		if time.Now().After(deadline) {
			if err != nil {
				e.t.Fatalf("%s: read clickhouse docs: %v", what, err)
			}
			e.t.Fatalf("%s: clickhouse docs did not converge within %s: %s", what, timeout, docsDiff(want, got))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMoveIntoVacatedKeyReplay replays, after merges, a transaction that
// deletes key 5 and moves row 3 there with its body unchanged: the first
// attempt stores it in one flush (the move's tombstone at 3, its row at 5),
// a merge folds row 3's image into that tombstone, and a replay splits the
// transaction after the delete. Stored after the first attempt's row at 5,
// the delete's tombstone would win the next merge (equal versions: the
// last inserted, DESIGN.md invariant 1) and the moved body would be lost
// (ErrNoImage on every restart); the replay must not store it, since a
// stored row of its transaction with a higher _seq supersedes it, and the
// move must find its body in the first attempt's row at 5.
func TestMoveIntoVacatedKeyReplay(t *testing.T) {
	e := newDocsEnv(t, 10, 6000, 20000)
	d := e.start()
	e.convergeDocs("initial copy", convergeTimeout)
	d.stop(t)
	db := "db_" + e.name
	e.exec(`BEGIN; DELETE FROM docs WHERE id = 5; UPDATE docs SET id = 5 WHERE id = 3; COMMIT`)
	e.crashAfterOneFlush(fmt.Sprintf("SELECT count() FROM %s.docs WHERE id = 5 AND _deleted = 0 AND length(body) > 0", db))
	e.chExec(fmt.Sprintf("OPTIMIZE TABLE %s.docs FINAL", db))
	// The replay's first flush holds only the delete's tombstone.
	e.setConfig("max_rows  = 20000", "max_rows  = 1")
	crashed := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-insert:1")
	crashed.wait(t, convergeTimeout)
	e.chExec(fmt.Sprintf("OPTIMIZE TABLE %s.docs FINAL", db))
	e.exec(`INSERT INTO docs (id, body) VALUES (999, 'after the replay')`)
	d = e.start()
	e.convergeDocsOrExit(d, "replay of a move into a deleted key", convergeTimeout)
	d.stop(t)
}

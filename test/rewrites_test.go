package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkRewritesEvery sets monitor.rewrite_check_interval in the env's
// configuration.
func (e *env) checkRewritesEvery(interval string) {
	e.t.Helper()
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := strings.Replace(string(src), `heartbeat_interval = "1s"`,
		`heartbeat_interval = "1s"`+"\n  rewrite_check_interval = \""+interval+"\"", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// waitLog waits until the daemon's log holds each of want.
func (d *daemon) waitLog(t *testing.T, timeout time.Duration, want ...string) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		logs := d.Logs()
		missing := ""
		for _, w := range want {
			if !strings.Contains(logs, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("the daemon's log lacks %q after %s\n%s", missing, timeout, tail(logs, 4000))
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rewriteWriter inserts items and updates the even ones among them until
// ctx ends: the odd rows keep what a rewrite left in them, which no later
// change repairs.
func (e *env) rewriteWriter(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(5, 5))
		next := 100000
		for ctx.Err() == nil {
			next++
			if rng.IntN(2) == 0 {
				e.pg.Exec(context.Background(), "INSERT INTO items (id, qty) VALUES ($1, $2)", next, rng.IntN(100))
			} else {
				e.pg.Exec(context.Background(), "UPDATE items SET qty = qty + 1 WHERE id % 2 = 0 AND id % 97 = $1", rng.IntN(97))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

// rewriteCase is a rewrite of items under a live writer.
type rewriteCase struct {
	// ddl creates items; alter rewrites it (statements run one by one).
	ddl   string
	alter []string
	// pgCols and chCols are every column of items after alter (see
	// convergeItems).
	pgCols, chCols string
	// logs must appear in the daemon's log, absent must not.
	logs, absent []string
	// cluster runs it on a 2 × 2 ClickHouse cluster.
	cluster bool
}

const rewriteFill = "INSERT INTO items (id, qty, note) SELECT g, g % 100, 'n' || g FROM generate_series(1, 2000) g"

// runRewrite sets items up, starts the daemon, runs the rewrite while a
// writer changes items, waits for the daemon's logs, and ends with an
// exact comparison of every column of every row and `replicator verify`.
func runRewrite(t *testing.T, c rewriteCase) {
	e := newEnv(t, itemsConfig)
	if c.cluster {
		e.startCluster()
	}
	e.checkRewritesEvery("2s")
	e.exec(c.ddl)
	e.exec(rewriteFill)
	e.setup()
	d := e.start()
	e.convergeItems("items before the rewrite", "id, qty, coalesce(note, '')", "toString(id), '|', toString(qty), '|', note")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	// The writer inserts and updates: readers of the live view must never
	// see fewer rows, through a copy again too. (A committed view may: an
	// update's newer version, once a merge folds the older one into it,
	// hides the key until the checkpoint covers it, and the checkpoint is
	// held for the copy. TestResyncCommittedView reads it under inserts.)
	floor := e.liveCount("items_live")
	if !c.cluster {
		e.readersOf(ctx, &wg, floor, "items_live")
	}
	time.Sleep(300 * time.Millisecond)
	for _, stmt := range c.alter {
		e.exec(stmt)
	}
	if c.cluster {
		// ClickHouse 18.16's ALTER ... MODIFY COLUMN of replicated tables,
		// which the daemon runs for the type change, lets a read see some
		// parts of the table while the replicas convert them (a reader saw
		// 1,143 of 2,000 rows before any copy began): readers are checked
		// from the end of the copy on, through the swap.
		d.waitLog(t, convergeTimeout, "replicator.resync: copied")
		e.readersOf(ctx, &wg, floor, "items_live")
	}
	d.waitLog(t, convergeTimeout, c.logs...)
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(d.Logs(), 6000))
		}
	}()
	e.convergeItems("items after the rewrite", c.pgCols, c.chCols)
	for _, a := range c.absent {
		if strings.Contains(d.Logs(), a) {
			t.Errorf("the daemon's log holds %q\n%s", a, tail(d.Logs(), 4000))
		}
	}
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify after the rewrite: exit %d\n%s\n%s", code, out, errs)
	}
	// A change is copied again once, not at every check.
	time.Sleep(5 * time.Second)
	if n := strings.Count(d.Logs(), recopied[0]); n > 1 {
		t.Errorf("the table was copied again %d times\n%s", n, tail(d.Logs(), 4000))
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// recopied are the log lines of a table copied again after a rewrite.
var recopied = []string{"copying the table again online", "the table was copied again after a rewrite"}

const itemsCols, itemsChCols = "id, qty, coalesce(note, '')", "toString(id), '|', toString(qty), '|', note"

// TestRewriteDropAndAddColumn drops note and adds it again under the same
// name and type: the Relation message looks the same, Postgres has NULL
// in every row, and ClickHouse would keep the old values.
func TestRewriteDropAndAddColumn(t *testing.T) {
	runRewrite(t, rewriteCase{ddl: itemsDDL,
		alter:  []string{"ALTER TABLE items DROP COLUMN note", "ALTER TABLE items ADD COLUMN note varchar(20)"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs: append([]string{"columns note were dropped and added again"}, recopied...)})
}

// TestRewriteWideningWithUsing widens qty with a USING expression that
// changes every value: ClickHouse's MODIFY COLUMN widens, the old rows
// would keep the old numbers.
func TestRewriteWideningWithUsing(t *testing.T) {
	runRewrite(t, rewriteCase{ddl: itemsDDL,
		alter:  []string{"ALTER TABLE items ALTER COLUMN qty TYPE integer USING qty * 10"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs: append([]string{"columns qty changed type and the table was rewritten"}, recopied...)})
}

// TestRewriteTimestampToTimestamptz changes timestamp to timestamptz in a
// session whose TimeZone is not UTC: Postgres shifts every value, and both
// types map to the same ClickHouse type.
func TestRewriteTimestampToTimestamptz(t *testing.T) {
	runRewrite(t, rewriteCase{
		ddl: "CREATE TABLE items (id bigint PRIMARY KEY, qty smallint NOT NULL, note varchar(20), " +
			"ts timestamp DEFAULT timestamp '2020-01-01 12:00' + random() * interval '100 days')",
		alter:  []string{"BEGIN; SET LOCAL TimeZone = 'Europe/Berlin'; ALTER TABLE items ALTER COLUMN ts TYPE timestamptz; COMMIT"},
		pgCols: itemsCols + ", floor(extract(epoch FROM ts))::bigint",
		chCols: itemsChCols + ", '|', toString(toUnixTimestamp(ts))",
		logs:   append([]string{"columns ts changed type and the table was rewritten"}, recopied...)})
}

// TestRewriteCharToText changes char(n) to text, which trims the blanks
// that pad every value: both map to String.
func TestRewriteCharToText(t *testing.T) {
	runRewrite(t, rewriteCase{
		ddl:    "CREATE TABLE items (id bigint PRIMARY KEY, qty smallint NOT NULL, note varchar(20), code char(8) DEFAULT 'ab')",
		alter:  []string{"ALTER TABLE items ALTER COLUMN code TYPE text"},
		pgCols: itemsCols + ", code", chCols: itemsChCols + ", '|', code",
		logs: append([]string{"columns code changed type and the table was rewritten"}, recopied...)})
}

// TestRewriteSameTypeUsing changes qty to its own type with USING: only
// the table's file changes in the catalog. Verify finds the difference,
// and the table is copied again.
func TestRewriteSameTypeUsing(t *testing.T) {
	runRewrite(t, rewriteCase{ddl: itemsDDL,
		alter:  []string{"ALTER TABLE items ALTER COLUMN qty TYPE smallint USING qty + 1"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs: append([]string{"the table was rewritten: verifying it", "verify found rows that differ"}, recopied...)})
}

// TestRewriteVacuumFull rewrites items without changing a value: verify
// finds nothing, the daemon records the new file, and copies nothing.
func TestRewriteVacuumFull(t *testing.T) {
	runRewrite(t, rewriteCase{ddl: itemsDDL,
		alter:  []string{"VACUUM FULL items"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs:   []string{"the table was rewritten: verifying it", "the table was rewritten and ClickHouse equals Postgres: recorded its new files"},
		absent: []string{"copying the table again"}})
}

// TestRewriteOnCluster: the widening with USING on a 2 × 2 ClickHouse
// cluster. The table is copied again online into shadow local tables and
// swapped in on the cluster, its Distributed table made again over the
// new column types.
func TestRewriteOnCluster(t *testing.T) {
	runRewrite(t, rewriteCase{cluster: true, ddl: itemsDDL,
		alter:  []string{"ALTER TABLE items ALTER COLUMN qty TYPE integer USING qty * 10"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs: append([]string{"columns qty changed type and the table was rewritten"}, recopied...)})
}

// TestAddedColumnGoneBeforeTheDaemonSawIt adds a column, writes rows with
// it and drops it while the daemon is stopped: started again, it adds the
// column it reads in the stream although the catalog no longer has it,
// and goes on.
func TestAddedColumnGoneBeforeTheDaemonSawIt(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(itemsDDL)
	e.exec(rewriteFill)
	e.setup()
	d := e.start()
	e.convergeItems("items before", itemsCols, itemsChCols)
	d.stop(t)
	e.exec("ALTER TABLE items ADD COLUMN tmp int DEFAULT 1")
	e.exec("UPDATE items SET qty = qty")
	e.exec("ALTER TABLE items DROP COLUMN tmp")
	d = e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	e.exec("UPDATE items SET note = 'after' WHERE id % 10 = 0")
	e.convergeItems("items after a column came and went", itemsCols, itemsChCols)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestAddedColumnDefaultChangedBeforeARewrite adds a column with a
// default, changes the default and rewrites items, all while the daemon is
// stopped: the rewrite stored the first default in every older row and the
// catalog no longer says which it was, so the daemon copies items again
// instead of guessing the current one.
func TestAddedColumnDefaultChangedBeforeARewrite(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(itemsDDL)
	e.exec(rewriteFill)
	e.setup()
	d := e.start()
	e.convergeItems("items before", itemsCols, itemsChCols)
	d.stop(t)
	e.exec("ALTER TABLE items ADD COLUMN c int DEFAULT 5")
	e.exec("ALTER TABLE items ALTER COLUMN c SET DEFAULT 6")
	e.exec("VACUUM FULL items")
	e.exec("INSERT INTO items (id, qty) VALUES (50000, 1)")
	d = e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	d.waitLog(t, convergeTimeout, append([]string{"column c was added before a rewrite of the table"}, recopied...)...)
	cancel()
	wg.Wait()
	e.convergeItems("items after a default changed before a rewrite", itemsCols+", coalesce(c, 0)",
		itemsChCols+", '|', toString(c)")
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestAddedColumnDefaultSetLater adds a column without a default and sets
// one, while the daemon is stopped: the older rows read NULL, not the
// default set later, and nothing is copied again.
func TestAddedColumnDefaultSetLater(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(itemsDDL)
	e.exec(rewriteFill)
	e.setup()
	d := e.start()
	e.convergeItems("items before", itemsCols, itemsChCols)
	d.stop(t)
	e.exec("ALTER TABLE items ADD COLUMN c int")
	e.exec("ALTER TABLE items ALTER COLUMN c SET DEFAULT 6")
	e.exec("INSERT INTO items (id, qty) VALUES (50000, 1)")
	d = e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	e.convergeItems("items after a default set later", itemsCols+", coalesce(c, 0)", itemsChCols+", '|', toString(c)")
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(d.Logs(), "copying the table again") {
		t.Errorf("items was copied again\n%s", tail(d.Logs(), 4000))
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestRewritePartitionedTable rewrites a partition (VACUUM FULL: verified,
// nothing copied), then changes a column of the partitioned table with
// USING, which rewrites every partition: the table is copied again, while
// a writer inserts into it.
func TestRewritePartitionedTable(t *testing.T) {
	e := newEnv(t, peventsConfig)
	e.checkRewritesEvery("2s")
	e.exec(peventsDDL)
	e.exec(`INSERT INTO pevents SELECT g, '2026-10-01'::timestamptz + (g % 80000) * interval '10 minutes', g % 50,
		CASE WHEN g % 4 = 0 THEN NULL ELSE md5(g::text) END FROM generate_series(1, 5000) g`)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := 1_000_000; ctx.Err() == nil; id++ {
			e.pg.Exec(context.Background(), "INSERT INTO pevents VALUES ($1, '2026-11-02'::timestamptz + $2 * interval '1 second', 1, 'w')", id, id%100000)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	e.exec("VACUUM FULL pevents_2026_10")
	d.waitLog(t, convergeTimeout, "the table was rewritten and ClickHouse equals Postgres: recorded its new files")
	if strings.Contains(d.Logs(), "copying the table again") {
		t.Errorf("a VACUUM FULL of a partition copied the table again\n%s", tail(d.Logs(), 4000))
	}
	e.exec("ALTER TABLE pevents ALTER COLUMN author_id TYPE bigint USING author_id + 1000")
	d.waitLog(t, convergeTimeout, append([]string{"columns author_id changed type and the table was rewritten"}, recopied...)...)
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	e.convergePevents("pevents after a rewrite of every partition")
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestRewriteRecordMigrated starts the daemon on a store made before the
// storage record existed: it takes the catalog as the record, says so, and
// notices a later rewrite from it.
func TestRewriteRecordMigrated(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(itemsDDL)
	e.exec(rewriteFill)
	e.setup()
	e.chExec(fmt.Sprintf("DROP TABLE db_%s.replicator_storage", e.name))
	d := e.start()
	d.waitLog(t, convergeTimeout, "no record of the table's storage (set up by an earlier version): the catalog now is its record")
	e.exec("ALTER TABLE items DROP COLUMN note")
	e.exec("ALTER TABLE items ADD COLUMN note varchar(20)")
	d.waitLog(t, convergeTimeout, append([]string{"columns note were dropped and added again"}, recopied...)...)
	e.convergeItems("items after a rewrite noticed from a migrated record", itemsCols, itemsChCols)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	d.stop(t)
	// Started again, the daemon finds the record the copy made.
	d = e.start()
	time.Sleep(3 * time.Second)
	if logs := d.Logs(); strings.Contains(logs, "no record of the table's storage") || strings.Contains(logs, recopied[0]) {
		t.Errorf("the record did not survive the restart\n%s", tail(logs, 4000))
	}
	d.stop(t)
}

// TestKeyColumnWidened widens the sorting key column from integer to
// bigint (as GitLab did with its ids) under a writer. ClickHouse refuses an
// ALTER of a key column: the daemon copies the table again online in the
// wider type instead of stopping in the middle of the change.
func TestKeyColumnWidened(t *testing.T) {
	runRewrite(t, rewriteCase{ddl: "CREATE TABLE items (id integer PRIMARY KEY, qty smallint NOT NULL, note varchar(20))",
		alter:  []string{"ALTER TABLE items ALTER COLUMN id TYPE bigint"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs: append([]string{"a key column was widened: the table is copied again online in the new type"}, recopied...)})
}

// TestKeyColumnWidenedThenWideValue widens the key column and at once
// inserts an id that only the wider type holds: the daemon halts on it (the
// old ClickHouse type cannot take it) until the re-copy the widening asked
// for is in place, then tries again by itself and goes on.
func TestKeyColumnWidenedThenWideValue(t *testing.T) {
	runRewrite(t, rewriteCase{ddl: "CREATE TABLE items (id integer PRIMARY KEY, qty smallint NOT NULL, note varchar(20))",
		alter: []string{"ALTER TABLE items ALTER COLUMN id TYPE bigint",
			"INSERT INTO items (id, qty, note) VALUES (3000000000, 7, 'wide')"},
		pgCols: itemsCols, chCols: itemsChCols,
		logs: append([]string{"a key column was widened: the table is copied again online in the new type"}, recopied...)})
}

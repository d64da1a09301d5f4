package test

import (
	"context"
	"fmt"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/replicator/replicator/test/harness"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

// TestResync tampers with the ClickHouse copy of events (rows Postgres
// never had, with a low and a huge version; rows deleted; values changed),
// then resyncs it under a writer while the daemon streams: the first
// resync is killed halfway and the daemon killed and started again, the
// second starts over. Readers see the old copy until the new one is swapped
// in, items keeps replicating meanwhile, and the end state equals Postgres
// exactly.
func TestResync(t *testing.T) {
	e := newEnv(t, strings.Replace(copyConfig, "workers    = 3", "workers    = 1", 1)+itemsConfig)
	e.exec(itemsDDL)
	e.insertEvents(250000)
	e.setup()
	d := e.start()
	e.converge("events before the tampering", convergeTimeout)

	db := "db_" + e.name
	for _, q := range []string{
		fmt.Sprintf("INSERT INTO %s.events (id, author_id, _version) SELECT 900000001 + number, 1, "+
			"if(number = 0, toUInt64(1), toUInt64(18446744073709551000)) FROM system.numbers LIMIT 2", db),
		fmt.Sprintf("ALTER TABLE %s.events DELETE WHERE id %% 10 = 3", db),
		fmt.Sprintf("ALTER TABLE %s.events UPDATE action = 99 WHERE id %% 10 = 4", db),
	} {
		if err := e.ch.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	tampered := func() bool {
		var bogus, changed uint64
		e.ch.QueryRow(context.Background(), fmt.Sprintf(
			"SELECT countIf(id > 900000000), countIf(action = 99) FROM %s.events_live", db)).Scan(&bogus, &changed)
		return bogus > 0 && changed > 0
	}
	for deadline := time.Now().Add(time.Minute); !tampered(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the tampering did not show in ClickHouse")
		}
	}
	if out, _, code := e.cli("verify", "--config", e.config); code == 0 {
		t.Fatalf("verify of a tampered table passed:\n%s", out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 31, 2)
	var wg sync.WaitGroup
	e.itemsWriter(ctx, &wg)

	resync := exec.Command(binary, "resync", "--config", e.config, "--table", "public.events")
	var first strings.Builder
	resync.Stdout, resync.Stderr = &first, &first
	if err := resync.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- resync.Wait() }()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("resync finished before it was killed (%v): make the table larger\n%s", err, first.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("resync copied too little within 2 minutes\n%s", first.String())
		}
		// The old copy's state is replaced by the new copy's plan first.
		var done, total uint64
		e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT countIf(lsn > 0), count() FROM %s.replicator_copy_chunks FINAL "+
			"WHERE source = 'public.events'", db)).Scan(&done, &total)
		if total > 1 && done < total && done*10 >= total*3 {
			resync.Process.Kill()
			<-exited
			t.Logf("resync killed with %d of %d chunks copied", done, total)
			break
		}
	}
	if !strings.Contains(d.Logs(), "a resync of the table began") {
		t.Errorf("the daemon did not see the resync begin\n%s", tail(d.Logs(), 3000))
	}
	// Readers still see the old, complete (tampered) copy.
	if !tampered() {
		t.Error("the old copy is not what readers see during the resync")
	}

	// A daemon started while the copy is pending holds its checkpoint from
	// its start, and keeps replicating the other tables.
	d.kill()
	d = e.start()
	newest := func() (id int64) {
		e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT max(id) FROM %s.items_live", db)).Scan(&id)
		return id
	}
	before := newest()
	time.Sleep(3 * time.Second)
	if now := newest(); now <= before {
		t.Errorf("items did not replicate while events is resynced: newest id %d, then %d", before, now)
	}
	held := e.checkpointLSN()
	if !strings.Contains(d.Logs(), "the copy of the table is not complete: the checkpoint is held") {
		t.Errorf("the daemon started during the resync did not hold its checkpoint\n%s", tail(d.Logs(), 3000))
	}

	out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.events")
	if code != 0 || !strings.Contains(out, "created ClickHouse table db_"+e.name+".events_resync") ||
		!strings.Contains(out, "now holds the new copy") {
		t.Fatalf("second resync: exit %d\n%s\n%s", code, out, errs)
	}
	time.Sleep(time.Second)
	cancel()
	txns := wait()
	wg.Wait()
	e.converge(fmt.Sprintf("events after the resync (%d transactions)", txns), convergeTimeout)
	e.convergeItems("items after the resync", "id, qty, coalesce(note, '')", "toString(id), '|', toString(qty), '|', note")
	if after := e.checkpointLSN(); after <= held {
		t.Errorf("checkpoint %d did not move past the held %d after the resync", after, held)
	}
	if vout, verrs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify after the resync: exit %d\n%s\n%s", code, vout, verrs)
	}
	var left uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT count() FROM system.tables WHERE database = '%s' AND name IN ('events_resync', 'events_replaced')", db)).Scan(&left); err != nil || left != 0 {
		t.Errorf("tables left after the swap: %d (%v)", left, err)
	}
	d.stop(t)
}

// TestResyncAfterStoppedSchemaChange changes a column's type in a way
// ClickHouse cannot follow (smallint to text): the daemon stops and names
// resync. resync copies the table with the new type while the daemon is
// stopped; the daemon started again swaps the copy in, skips the older
// transactions the copy holds (whose schema the new target no longer
// takes) and goes on.
func TestResyncAfterStoppedSchemaChange(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 20000) g")
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.itemsWriter(ctx, &wg)
	time.Sleep(time.Second)
	e.exec("ALTER TABLE items ALTER COLUMN qty TYPE text USING 'q' || qty")
	cancel()
	wg.Wait()
	e.exec("INSERT INTO items (id, qty) VALUES (500000, 'new')")
	e.exec("UPDATE items SET qty = qty || '+' WHERE id % 50 = 0")
	code := d.wait(t, convergeTimeout)
	if logs := d.Logs(); code == 0 || !strings.Contains(logs, "replicator resync --config FILE --table public.items") {
		t.Fatalf("the daemon did not stop naming resync: exit %d\n%s", code, tail(logs, 3000))
	}
	// While the daemon is stopped the type goes back and forth: the replay
	// from its checkpoint holds changes in a schema that the new target
	// does not take.
	e.exec("ALTER TABLE items ALTER COLUMN qty TYPE smallint USING length(qty)")
	e.exec("UPDATE items SET qty = qty + 1 WHERE id % 40 = 0")
	e.exec("ALTER TABLE items ALTER COLUMN qty TYPE text USING 'r' || qty")
	e.exec("UPDATE items SET qty = qty || '+' WHERE id % 60 = 0")

	out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.items")
	if code != 0 || !strings.Contains(out, "puts db_"+e.name+".items_resync in place of") {
		t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("UPDATE items SET qty = qty || '!' WHERE id % 70 = 0")
	e.exec("DELETE FROM items WHERE id % 90 = 0")
	d = e.start()
	e.convergeItems("items after a resync with the new type", "id, qty, coalesce(note, '')",
		"toString(id), '|', qty, '|', note")
	if vout, verrs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify after the resync: exit %d\n%s\n%s", code, vout, verrs)
	}
	d.stop(t)
}

// flushLine matches the daemon's debug line of a flush, with the
// checkpoint it left.
var flushLine = regexp.MustCompile(`flushed: .*checkpoint=([0-9A-F]+/[0-9A-F]+)`)

// TestResyncReplayIsBatched resyncs events under writers of events and
// items, kills the resync once the daemon holds its checkpoint for it, and
// resyncs again seconds later. The daemon holds its checkpoint from the
// first resync's start until the second copy is complete, then starts
// again from it: the replay up to the copy's consistent point interleaves
// changes of events, below its exact copy's horizon, with changes of items.
// The events changes write nothing, and must not flush the buffer one by
// one (each flush is a ClickHouse part per table): the replay is flushed in
// batches, as a stream is.
func TestResyncReplayIsBatched(t *testing.T) {
	e := newEnv(t, strings.Replace(copyConfig, "workers    = 3", "workers    = 1", 1)+itemsConfig)
	e.exec(itemsDDL)
	e.insertEvents(100000)
	e.setup()
	d := e.start()
	e.converge("events before the resync", convergeTimeout)

	// Each INSERT into items takes the next block number: their count is
	// the number of parts written.
	inserts := func() (n int64) {
		t.Helper()
		if err := e.ch.QueryRow(context.Background(), "SELECT max(max_block_number) FROM system.parts WHERE database = ? AND table = 'items'",
			"db_"+e.name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 17, 2)
	var wg sync.WaitGroup
	e.itemsWriter(ctx, &wg)
	time.Sleep(500 * time.Millisecond)
	began, blocks := time.Now(), inserts()
	first := exec.Command(binary, "resync", "--config", e.config, "--table", "public.events")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(d.Logs(), "a resync of the table began"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("the first resync finished (%v) before the daemon held its checkpoint for it", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not see the resync begin\n%s", tail(d.Logs(), 3000))
		}
	}
	first.Process.Kill()
	<-exited
	time.Sleep(3 * time.Second)
	out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.events")
	if code != 0 {
		t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
	}
	// At or above the copy's consistent point: the replay ends below it.
	var copied pglogrepl.LSN
	if err := e.pg.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&copied); err != nil {
		t.Fatal(err)
	}
	const restarted = "the awaited table copies are complete"
	for deadline := time.Now().Add(time.Minute); !strings.Contains(d.Logs(), restarted) ||
		pglogrepl.LSN(e.checkpointLSN()) < copied; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not replay past the copy at %s within a minute\n%s", copied, tail(d.Logs(), 3000))
		}
	}
	parts, took := inserts()-blocks, time.Since(began)
	cancel()
	txns := wait()
	wg.Wait()

	logs := d.Logs()
	replay := logs[strings.Index(logs, restarted):]
	flushes := 0
	for _, m := range flushLine.FindAllStringSubmatch(replay, -1) {
		if lsn, err := pglogrepl.ParseLSN(m[1]); err == nil && lsn < copied {
			flushes++
		}
	}
	t.Logf("%d flushes replaying up to the copy at %s; %d parts of items in %s (%d events transactions in the test)",
		flushes, copied, parts, took.Round(time.Millisecond), txns)
	if flushes > 30 {
		t.Errorf("%d flushes while replaying up to the copy at %s, want a few batches", flushes, copied)
	}
	// At most one flush per min_interval (200ms) streams, plus the replay's.
	if bound := int64(took/(200*time.Millisecond)) + 30; parts > bound {
		t.Errorf("%d parts of items written in %s, want at most %d", parts, took.Round(time.Millisecond), bound)
	}
	e.converge("events after the resync", convergeTimeout)
	e.convergeItems("items after the resync", "id, qty, coalesce(note, '')", "toString(id), '|', toString(qty), '|', note")
	d.stop(t)
}

// TestResyncCommittedView resyncs items while the daemon streams and a
// writer inserts: the committed view, bound by a checkpoint held below the
// copy's snapshot C until the stream passes C again, must show the new
// copy's rows (version C − 1) as soon as it is in place, never fewer rows
// than before. (Only inserts: an update's newer version, once a merge
// folds the older one into it, hides a key from a committed view until the
// checkpoint covers it, resync or not.) The committed view is first made
// as an earlier version made it, which the daemon must make again.
func TestResyncCommittedView(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec(rewriteFill)
	e.setup()
	for _, q := range []string{"DROP TABLE db_%[1]s.items_committed", "CREATE VIEW db_%[1]s.items_committed AS SELECT id, qty, note FROM " +
		"(SELECT id, argMax(qty, (_version, _seq)) AS qty, argMax(note, (_version, _seq)) AS note, argMax(_deleted, (_version, _seq)) AS gone " +
		"FROM db_%[1]s.items WHERE _version < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM db_%[1]s.replicator_checkpoints " +
		"WHERE slot = 'slot_%[1]s') GROUP BY id) WHERE gone = 0"} {
		if err := e.ch.Exec(context.Background(), fmt.Sprintf(q, e.name)); err != nil {
			t.Fatal(err)
		}
	}
	d := e.start()
	// (It drops the earlier version's committed view and makes it again
	// before it streams.)
	d.waitLog(t, convergeTimeout, "replicating:")
	e.convergeItems("items before", itemsCols, itemsChCols)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := 100000; ctx.Err() == nil; id++ {
			e.pg.Exec(context.Background(), "INSERT INTO items (id, qty) VALUES ($1, 1)", id)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	e.readersOf(ctx, &wg, e.liveCount("items_committed"), "items_live", "items_committed")
	for i := 0; i < 2; i++ {
		if out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.items"); code != 0 {
			t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
		}
		d.waitLog(t, convergeTimeout, "starting again from the checkpoint")
		time.Sleep(2 * time.Second)
	}
	cancel()
	wg.Wait()
	e.convergeItems("items after the resyncs", itemsCols, itemsChCols)
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestReplacedCopyTooLargeToDrop: on a ClickHouse server whose
// max_table_size_to_drop is smaller than the table (ClickHouse 18.16 takes
// no override per query), a resync's swap cannot drop the previous copy.
// The swap is done: the daemon keeps that copy under a name of its own,
// says so, and goes on replicating, and a second resync swaps in too. A
// setup that would empty the table says which server setting to change.
func TestReplacedCopyTooLargeToDrop(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	small, err := harness.StartClickHouse(ctx, harness.Options{Log: os.Stderr, MaxTableSizeToDrop: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	e := newEnv(t, itemsConfig)
	e.setConfig(chServer.Addr(), small.Addr())
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{small.Addr()}, Protocol: clickhouse.Native})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	e.ch = ch
	e.exec(itemsDDL)
	e.exec(rewriteFill)
	e.setup()
	d := e.start()
	e.convergeItems("items before", itemsCols, itemsChCols)
	if out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.items"); code != 0 {
		t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
	}
	d.waitLog(t, convergeTimeout, "the previous copy of the table could not be dropped: it is kept under a name of its own")
	e.exec("UPDATE items SET qty = qty + 1 WHERE id % 3 = 0")
	e.convergeItems("items after the swap", itemsCols, itemsChCols)
	// A second resync swaps in too: the replaced name is free.
	if out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.items"); code != 0 {
		t.Fatalf("second resync: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("UPDATE items SET qty = qty + 1 WHERE id % 5 = 0")
	e.convergeItems("items after the second swap", itemsCols, itemsChCols)
	if n := strings.Count(d.Logs(), "could not be dropped"); n != 2 {
		t.Errorf("the daemon said %d times that it could not drop a previous copy, want 2\n%s", n, tail(d.Logs(), 3000))
	}
	var kept uint64
	if err := ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM system.tables WHERE database = 'db_%s' AND name LIKE 'items_replaced_%%'",
		e.name)).Scan(&kept); err != nil || kept != 2 {
		t.Errorf("previous copies kept: %d (%v), want 2", kept, err)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
	// A setup that starts over empties the table first: refused by the
	// server, it names the setting.
	e.exec(fmt.Sprintf("SELECT pg_drop_replication_slot('slot_%s')", e.name))
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 || !strings.Contains(out+errs, "max_table_size_to_drop = 0") {
		t.Errorf("setup on a table too large to empty: exit %d\n%s\n%s", code, out, errs)
	}
}

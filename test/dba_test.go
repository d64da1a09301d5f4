package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Operations on either side that the stream does not show, run while the
// replicator works: tables leaving and joining the publication, targets
// dropped, publications dropped or narrowed, partitions attached and
// detached, copies interrupted, and daemons that lag behind all of it.

// itemsReplicated creates items with rows rows, sets up the replication
// and runs the daemon until ClickHouse has them all, then stops it.
func (e *env) itemsReplicated(rows int) {
	e.t.Helper()
	e.exec(itemsDDL)
	e.exec(fmt.Sprintf("INSERT INTO items SELECT g, g %% 100, 'n' || g FROM generate_series(1, %d) g", rows))
	e.setup()
	d := e.start()
	e.itemsExact("items replicated")
	d.stop(e.t)
}

// refuses waits until the daemon exits, and fails the test unless it does
// within convergeTimeout with an error that says want.
func (e *env) refuses(d *daemon, want string) {
	e.t.Helper()
	if code := d.wait(e.t, convergeTimeout); code == 0 || !strings.Contains(d.Logs(), want) {
		e.t.Fatalf("the daemon does not stop saying %q: exit %d\n%s", want, code, tail(d.Logs(), 3000))
	}
}

// checkpointPasses waits until the checkpoint passes before while events
// are written, and fails the test if it does not within convergeTimeout:
// a daemon that holds its checkpoint for a copy that never completes.
func (e *env) checkpointPasses(d *daemon, before uint64, what string) {
	e.t.Helper()
	for deadline := time.Now().Add(convergeTimeout); e.checkpointLSN() <= before; {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: the checkpoint stays at %d\n%s", what, before, tail(d.Logs(), 1500))
		}
		e.insertEvents(1)
		time.Sleep(500 * time.Millisecond)
	}
}

// TestResyncedTableDroppedFromPublication: a table resynced once (its
// copy state names the new table the resync swapped in) and later dropped
// from the publication, with rows deleted meanwhile: the daemon stops and
// says to run setup, which copies the table again.
func TestResyncedTableDroppedFromPublication(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 1000) g")
	e.setup()
	d := e.start()
	if out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.items"); code != 0 {
		t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("UPDATE items SET qty = 1 WHERE id < 10")
	e.itemsExact("items resynced")
	d.stop(t)

	e.exec("ALTER PUBLICATION pub_" + e.name + " DROP TABLE items")
	e.exec("DELETE FROM items WHERE id BETWEEN 100 AND 199")
	e.exec("UPDATE items SET id = id + 5000 WHERE id BETWEEN 200 AND 210")
	d = e.start()
	e.refuses(d, "no longer publishes table public.items")
	out := e.setup()
	t.Logf("setup after the publication lost items:\n%s", out)
	if !strings.Contains(out, "is copied again") {
		t.Errorf("setup did not copy items again although the publication lost it")
	}
	d = e.start()
	e.exec("UPDATE items SET qty = 2 WHERE id < 20")
	e.itemsExact("items after setup and a restart")
	d.stop(t)
}

// TestLostTableRowWrittenAfterEmpty: setup copies again a table that was
// dropped from the publication while a daemon that names the table lags
// behind (a slow INSERT here, any backlog in life) and still writes its
// changes from before: a row it writes late, of a key that Postgres
// deleted while the table was not published, must not survive next to
// the new copy.
func TestLostTableRowWrittenAfterEmpty(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	// Large enough that the copy outlasts the daemon's slow flight: a
	// daemon that restarts (the copy complete) abandons its flight.
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 400000) g")
	e.setup()
	d := e.start()
	e.exec("UPDATE items SET qty = 1 WHERE id < 10")
	e.itemsExact("items replicated")
	d.stop(t)

	// The daemon lags: every flush waits 1.3 s before its INSERT. The
	// target is emptied before the flight lands, and the daemon restarts
	// (at its hold poll, 2 s after the mark) after it landed.
	d = e.startWith(e.config, "REPLICATOR_TEST_FAULT=slow-insert:1.3")
	e.waitLog(d, "replicating")
	time.Sleep(time.Second)
	e.exec("INSERT INTO items VALUES (900001, 1, 'phantom')")
	e.exec("UPDATE items SET note = 'moved away' WHERE id = 300000")
	inserted := time.Now()
	e.exec("ALTER PUBLICATION pub_" + e.name + " DROP TABLE items")
	e.exec("DELETE FROM items WHERE id = 900001")
	e.exec("UPDATE items SET id = 909300 WHERE id = 300000")
	out := e.setup()
	if !strings.Contains(out, "is copied again") || !strings.Contains(out, "is copied into ClickHouse table items_resync") {
		t.Fatalf("setup did not copy items again:\n%s", out)
	}
	t.Logf("setup returned %s after the insert", time.Since(inserted).Round(time.Millisecond))
	// The slow flight has landed by now; a daemon without the fault
	// finishes the replay.
	time.Sleep(time.Until(inserted.Add(10 * time.Second)))
	d.stop(t)
	d = e.start()
	e.exec("UPDATE items SET qty = 2 WHERE id < 20")
	e.itemsExact("items after the copy of a table that left the publication")
	d.stop(t)
}

// TestAddPartitionedTableWithoutPartitions adds a partitioned table that
// has no partition yet (they come later, as data arrives): its copy is
// complete with no rows, and the daemon's checkpoint moves on after the
// reload.
func TestAddPartitionedTableWithoutPartitions(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(20)
	e.setup()
	d := e.start()
	e.waitLog(d, "replicating")
	e.converge("events", convergeTimeout)
	e.exec(`CREATE TABLE pevents (id bigint NOT NULL, created_at timestamptz NOT NULL, author_id integer NOT NULL, note text,
		PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)`)
	e.appendConfig(peventsConfig)
	out := e.setup()
	t.Logf("setup adding pevents:\n%s", out)
	e.heldUntilReload(d)
	e.exec("CREATE TABLE pevents_2026_10 PARTITION OF pevents FOR VALUES FROM ('2026-10-01') TO ('2026-11-01')")
	e.exec("INSERT INTO pevents VALUES (1, '2026-10-02', 1, 'a')")
	e.insertEvents(5)
	e.converge("events after the reload", convergeTimeout)
	e.checkpointPasses(d, e.checkpointLSN(), "after the reload")
	d.stop(t)
}

// TestDroppedTargetRecreatedEmpty: the ClickHouse target of a replicated
// table is dropped by hand and setup runs again: it creates the target,
// copies the table again, and the daemon's checkpoint moves on.
func TestDroppedTargetRecreatedEmpty(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.itemsReplicated(1000)
	e.chExec(fmt.Sprintf("DROP TABLE db_%s.items", e.name))
	out := e.setup()
	t.Logf("setup after the target was dropped:\n%s", out)
	d := e.start()
	e.waitLog(d, "replicating")
	e.insertEvents(5)
	e.converge("events", convergeTimeout)
	e.checkpointPasses(d, e.checkpointLSN(), "after setup created the target again")
	e.itemsExact("items after setup re-created its target")
	d.stop(t)
}

// TestPublicationDroppedAndCreatedAgain: the publication is dropped while
// the daemon is stopped. Postgres decodes the slot's changes with the
// publication of their time, so the slot cannot go on: the daemon and
// setup both refuse with the command (drop the slot, run setup), which
// copies every table again.
func TestPublicationDroppedAndCreatedAgain(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.itemsReplicated(1000)
	e.exec("DROP PUBLICATION pub_" + e.name)
	e.exec("DELETE FROM items WHERE id BETWEEN 100 AND 199")
	d := e.start()
	if code := d.wait(t, convergeTimeout); code == 0 || !strings.Contains(d.Logs(), "pg_drop_replication_slot('slot_"+e.name+"')") {
		t.Fatalf("daemon on a dropped publication: exit %d\n%s", code, tail(d.Logs(), 2000))
	}
	if out, errs, code := e.cli("setup", "--config", e.config); code == 0 || !strings.Contains(errs, "drop the slot") {
		t.Fatalf("setup on a dropped publication: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("SELECT pg_drop_replication_slot('slot_" + e.name + "')")
	e.setup()
	d = e.start()
	e.exec("UPDATE items SET qty = 2 WHERE id < 20")
	e.itemsExact("items after the slot was made again")
	d.stop(t)
}

// TestPublishActionsNarrowedLater: a publication narrowed to inserts
// (publish = 'insert') after setup sends no updates or deletes: the daemon
// refuses to start with the fix, and once the publication sends every
// action again a resync makes ClickHouse exact.
func TestPublishActionsNarrowedLater(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.itemsReplicated(1000)
	e.exec("ALTER PUBLICATION pub_" + e.name + " SET (publish = 'insert')")
	e.exec("DELETE FROM items WHERE id BETWEEN 100 AND 199")
	e.exec("UPDATE items SET qty = 7 WHERE id < 50")
	d := e.start()
	if code := d.wait(t, convergeTimeout); code == 0 || !strings.Contains(d.Logs(), "does not publish every insert, update, delete and truncate") {
		t.Errorf("the daemon on a publication without updates and deletes: exit %d\n%s", code, tail(d.Logs(), 2000))
	}
	e.exec("ALTER PUBLICATION pub_" + e.name + " SET (publish = 'insert, update, delete, truncate')")
	if out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.items"); code != 0 {
		t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
	}
	d = e.start()
	e.itemsExact("items copied again after the publication sends every action")
	d.stop(t)
}

// TestPartitionAttachedWithRowsOrDetached: logical decoding emits nothing
// for ATTACH PARTITION (the rows it brings) or DETACH PARTITION (the rows
// it takes away). The daemon's storage check notices the partitions that
// joined and left, verifies the table and copies it again: ClickHouse
// ends equal to Postgres, and verify agrees.
func TestPartitionAttachedWithRowsOrDetached(t *testing.T) {
	e := newEnv(t, peventsConfig)
	e.exec(peventsDDL)
	e.exec(`INSERT INTO pevents SELECT g, '2026-10-01'::timestamptz + g * interval '1 minute', 1, 'x' FROM generate_series(1, 1000) g`)
	e.setup()
	d := e.start()
	e.convergePevents("pevents")
	e.exec(`CREATE TABLE pevents_2026_12 (LIKE pevents INCLUDING ALL)`)
	e.exec(`INSERT INTO pevents_2026_12 SELECT g, '2026-12-01'::timestamptz + g * interval '1 minute', 2, 'attached' FROM generate_series(5001, 5100) g`)
	e.exec(`ALTER TABLE pevents ATTACH PARTITION pevents_2026_12 FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')`)
	e.exec(`ALTER TABLE pevents DETACH PARTITION pevents_2026_10`)
	e.exec(`INSERT INTO pevents VALUES (9999, '2026-11-05', 3, 'after')`)
	e.insertEvents(3)
	e.converge("events", convergeTimeout)
	e.sameRows("pevents after ATTACH and DETACH PARTITION", "SELECT concat_ws('|', id, note) FROM pevents",
		fmt.Sprintf("SELECT concat(toString(id), '|', note) FROM db_%s.pevents_live", e.name))
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	d.stop(t)
}

// TestLostOnlyTableSetupStoppedAfterForgettingIt: the only table is dropped
// from the publication, and the replication is left with no copy state at
// all (as one set up before copies kept state, or a setup stopped at the
// wrong moment): setup copies the table again rather than publishing it
// again over the changes it missed.
func TestLostOnlyTableSetupStoppedAfterForgettingIt(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(200)
	e.setup()
	d := e.start()
	e.converge("events", convergeTimeout)
	d.stop(t)
	e.exec("ALTER PUBLICATION pub_" + e.name + " DROP TABLE events")
	e.exec("DELETE FROM events WHERE id % 3 = 0")
	// The first setup, stopped right after DeleteChunks.
	e.chExec(fmt.Sprintf("ALTER TABLE db_%s.replicator_copy_chunks DELETE WHERE slot = 'slot_%s'", e.name, e.name))
	for deadline := time.Now().Add(30 * time.Second); e.chCount(fmt.Sprintf(
		"SELECT count() FROM db_%s.replicator_copy_chunks WHERE slot = 'slot_%s'", e.name, e.name)) > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the copy state was not deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := e.setup()
	t.Logf("setup run again:\n%s", out)
	d = e.start()
	e.insertEvents(5)
	e.converge("events after setup was run again", convergeTimeout)
	d.stop(t)
}

// TestTruncateWrittenAfterTheCopy: a daemon that names a table lags behind
// a TRUNCATE of it while setup copies the table again: the TRUNCATE, when
// the daemon writes it, must not empty the new copy.
func TestTruncateWrittenAfterTheCopy(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.itemsReplicated(1000)

	e.lateTruncate(func() {
		e.exec("ALTER PUBLICATION pub_" + e.name + " DROP TABLE items")
		e.exec("INSERT INTO items SELECT g, 2, 'unpublished' FROM generate_series(501, 1000) g")
	}, "is copied again", "items after the copy of a table truncated before it left the publication")
}

// lateTruncate starts a daemon whose flights take 4 s, truncates and
// refills items behind one of them, runs between, then setup, whose output
// must say wantSetup: the daemon writes the TRUNCATE after setup copied
// items. Restarted, it must leave items exact.
func (e *env) lateTruncate(between func(), wantSetup, what string) {
	e.t.Helper()
	d := e.startWith(e.config, "REPLICATOR_TEST_FAULT=slow-insert:4")
	e.waitLog(d, "replicating")
	time.Sleep(time.Second)
	e.insertEvents(1) // a flight that takes 4 s
	time.Sleep(500 * time.Millisecond)
	e.exec("TRUNCATE items")
	e.exec("INSERT INTO items SELECT g, 1, 'after truncate' FROM generate_series(1, 500) g")
	between()
	if out := e.setup(); !strings.Contains(out, wantSetup) {
		e.t.Fatalf("setup does not say %q:\n%s", wantSetup, out)
	}
	e.waitLog(d, "truncating ClickHouse table after TRUNCATE in Postgres")
	time.Sleep(4 * time.Second) // the TRUNCATE is written
	d.stop(e.t)
	d = e.start()
	e.exec("UPDATE items SET qty = 3 WHERE id < 20")
	e.itemsExact(what)
	d.stop(e.t)
}

// TestTruncateWrittenAfterTheCopyOfARemovedTable: the same in docs/operating.md's
// own flow under a FOR ALL TABLES publication: items removed (setup with a
// file without its block) and added back while the daemon runs on a file
// that still names it; the daemon's late TRUNCATE leaves the new copy
// whole.
func TestTruncateWrittenAfterTheCopyOfARemovedTable(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 1000) g")
	e.exec("CREATE PUBLICATION pub_" + e.name + " FOR ALL TABLES WITH (publish_via_partition_root = true)")
	e.setup()
	src, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	without := filepath.Join(e.dir, "without-items.hcl")
	if err := os.WriteFile(without, []byte(strings.Replace(string(src), itemsConfig, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := e.cli("setup", "--config", without); code != 0 {
		t.Fatalf("setup without items: exit %d\n%s\n%s", code, out, errs)
	}
	e.lateTruncate(func() {}, "copying the added tables public.items", "items added back")
}

// TestSetupFinishesAnUnfinishedCopy: a copy into a new table (a resync's,
// or an added table's) stopped before it was complete, here right after
// its mark; setup run again copies the table again into the new table,
// and the daemon puts it in place: ClickHouse ends equal to Postgres.
func TestSetupFinishesAnUnfinishedCopy(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.itemsReplicated(1000)
	db := "db_" + e.name
	// The mark of a copy into items_resync, as resync and setup save it
	// before anything else, in the load of the copy state.
	e.chExec(fmt.Sprintf("INSERT INTO %s.replicator_copy_chunks (slot, source, chunk, relation, first_page, end_page, "+
		"filenode, load_lsn, lsn, xmin, rows, estimate, updated, whole_lsn, target) SELECT slot, source, 0, '', 0, 0, 0, "+
		"load_lsn, 0, 0, 0, 0, toUInt64(max(updated) + 1), 0, 'items_resync' FROM %s.replicator_copy_chunks "+
		"WHERE source = 'public.items' GROUP BY slot, source, load_lsn", db, db))
	e.chExec(fmt.Sprintf("ALTER TABLE %s.replicator_copy_chunks DELETE WHERE source = 'public.items' AND chunk > 0", db))
	e.exec("DELETE FROM items WHERE id BETWEEN 100 AND 199")
	d := e.start()
	e.waitLog(d, "the copy of the table is not complete: the checkpoint is held")
	out := e.setup()
	if !strings.Contains(out, "did not finish") || !strings.Contains(out, "is copied into ClickHouse table items_resync") {
		t.Errorf("setup after an unfinished copy:\n%s", out)
	}
	e.exec("UPDATE items SET qty = 3 WHERE id < 10")
	e.itemsExact("items after setup finished the copy")
	d.stop(t)
}

package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// itemsChurn deletes items and moves their keys until ctx ends: the
// changes whose loss or replay leaves rows in ClickHouse that Postgres no
// longer has.
func (e *env) itemsChurn(ctx context.Context, wg *sync.WaitGroup, rows int) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			e.pg.Exec(context.Background(), "DELETE FROM items WHERE id = $1", 1+i*7%rows)
			e.pg.Exec(context.Background(), "UPDATE items SET id = id + 1000000 WHERE id = $1", 2+i*11%rows)
			time.Sleep(3 * time.Millisecond)
		}
	}()
}

// heldUntilReload waits until a daemon on a configuration without an
// added table holds its checkpoint, checks that the checkpoint stays for 3
// seconds, and sends the daemon SIGHUP (its file names the table by then).
// It returns the held checkpoint.
func (e *env) heldUntilReload(d *daemon) uint64 {
	e.t.Helper()
	e.waitLog(d, "the checkpoint is held until this daemon runs with that configuration")
	held := e.checkpointLSN()
	time.Sleep(3 * time.Second)
	if now := e.checkpointLSN(); now != held {
		e.t.Errorf("checkpoint moved from %d to %d while held", held, now)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(2 * time.Second)
	return held
}

// itemsExact waits until every column of every row of items agrees, and
// runs verify.
func (e *env) itemsExact(what string) {
	e.t.Helper()
	e.convergeItems(what, "id, qty, coalesce(note, '')", "toString(id), '|', toString(qty), '|', note")
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		e.t.Errorf("verify after %s: exit %d\n%s\n%s", what, code, out, errs)
	}
}

// readersNeverSeeEmpty polls the live view of target until ctx ends and
// fails the test if it ever returns no rows.
func (e *env) readersNeverSeeEmpty(ctx context.Context, wg *sync.WaitGroup, target string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		q := fmt.Sprintf("SELECT count() FROM db_%s.%s_live", e.name, target)
		for polls := 0; ctx.Err() == nil; polls++ {
			var n uint64
			if err := e.ch.QueryRow(context.Background(), q).Scan(&n); err == nil && n == 0 {
				e.t.Errorf("the live view of %s returned no rows (poll %d)", target, polls)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

// waitLog waits until the daemon's log says what.
func (e *env) waitLog(d *daemon, what string) {
	e.t.Helper()
	for deadline := time.Now().Add(convergeTimeout); !strings.Contains(d.Logs(), what); {
		if time.Now().After(deadline) {
			e.t.Fatalf("the daemon's log does not say %q\n%s", what, tail(d.Logs(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAddTableAlreadyPublished adds a table to a running replication
// whose publication sends the table's changes already: FOR ALL TABLES,
// FOR TABLES IN SCHEMA, or a table added to the publication by hand
// before setup. The daemon bound the table as not replicated long before,
// and no new Relation message comes: the mark setup writes into the stream
// must hold its checkpoint, or the changes between the copy and the reload
// are acknowledged and lost. Writers change items throughout (inserts,
// updates, deletes, key moves); ClickHouse ends equal to Postgres, and
// verify agrees.
func TestAddTableAlreadyPublished(t *testing.T) {
	for _, tc := range []struct {
		name string
		// publication creates the publication before the first setup
		// (none: setup does), added changes it while the daemon runs.
		publication, added string
		// since is the first PostgreSQL version that has it.
		since int
	}{
		{name: "for all tables", publication: "CREATE PUBLICATION %s FOR ALL TABLES WITH (publish_via_partition_root = true)"},
		{name: "for tables in schema", publication: "CREATE PUBLICATION %s FOR TABLES IN SCHEMA public", since: 15},
		{name: "added first", added: "ALTER PUBLICATION %s ADD TABLE items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			if major := pgMajor(t); major < tc.since {
				t.Skipf("PostgreSQL %d has no such publication", major)
			}
			e.exec(itemsDDL)
			e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 3000) g")
			if tc.publication != "" {
				e.exec(fmt.Sprintf(tc.publication, "pub_"+e.name))
			}
			e.insertEvents(50)
			e.setup()
			d := e.start()
			if tc.added != "" {
				e.exec(fmt.Sprintf(tc.added, "pub_"+e.name))
			}
			// The daemon meets items as a table it does not replicate.
			e.exec("UPDATE items SET qty = qty + 1 WHERE id % 10 = 0")
			e.insertEvents(10)
			e.converge("events before items is added", convergeTimeout)

			ctx, cancel := context.WithCancel(context.Background())
			wait := e.workload(ctx, 25, 1)
			var wg sync.WaitGroup
			e.itemsWriter(ctx, &wg)
			e.itemsChurn(ctx, &wg, 3000)

			e.appendConfig(itemsConfig)
			out := e.setup()
			if !strings.Contains(out, "copy of public.items marked in the WAL") {
				t.Errorf("setup while the daemon runs:\n%s", out)
			}
			e.heldUntilReload(d)
			cancel()
			txns := wait()
			wg.Wait()
			e.insertEvents(5)
			e.converge(fmt.Sprintf("events (%d transactions)", txns), convergeTimeout)
			e.itemsExact("items added to a running replication")
			d.stop(t)
		})
	}
}

// TestPublicationFilters: a publication that sends some rows or columns
// of a configured table is refused by setup with the reason, since a copy
// reads whole tables; one filtered after setup stops the daemon at start.
func TestPublicationFilters(t *testing.T) {
	e := newEnv(t, itemsConfig)
	if pgMajor(t) < 15 {
		t.Skip("row filters and column lists came with PostgreSQL 15")
	}
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 100) g")
	pub := "pub_" + e.name
	e.exec("CREATE PUBLICATION " + pub + " FOR TABLE events, items WHERE (qty > 50)")
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 || !strings.Contains(errs, "publishes table public.items with a filter (rows WHERE (qty > 50))") ||
		!strings.Contains(errs, `ALTER PUBLICATION "`+pub+`" DROP TABLE "public"."items"`) {
		t.Errorf("setup with a row filter: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("ALTER PUBLICATION " + pub + " SET TABLE events, items (id, qty)")
	if out, errs, code := e.cli("setup", "--config", e.config); code == 0 || !strings.Contains(errs, "columns (id, qty)") {
		t.Errorf("setup with a column list: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("ALTER PUBLICATION " + pub + " SET TABLE events, items")
	e.setup()
	d := e.start()
	e.exec("UPDATE items SET qty = 1 WHERE id = 1")
	e.convergeItems("items", "id, qty, coalesce(note, '')", "toString(id), '|', toString(qty), '|', note")
	d.stop(t)

	// Filtered behind the daemon's back: it refuses to go on.
	e.exec("ALTER PUBLICATION " + pub + " SET TABLE events, items WHERE (id > 10)")
	d = e.start()
	e.refuses(d, "with a filter (rows WHERE (id > 10))")
}

// TestTableDroppedFromPublication: a configured table dropped from the
// publication by hand sends nothing more, and the daemon does not see it
// in the stream. It stops and says to run setup, which publishes the table
// again and copies it again: ClickHouse ends equal to Postgres.
func TestTableDroppedFromPublication(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 1000) g")
	e.setup()
	d := e.start()
	e.exec("UPDATE items SET qty = 1 WHERE id < 10")
	e.itemsExact("an update")
	e.exec("ALTER PUBLICATION pub_" + e.name + " DROP TABLE items")
	e.exec("DELETE FROM items WHERE id BETWEEN 100 AND 199")
	e.exec("UPDATE items SET id = id + 5000 WHERE id BETWEEN 200 AND 210")
	e.insertEvents(5)
	e.converge("events", convergeTimeout)
	d.stop(t)

	d = e.start()
	e.refuses(d, "no longer publishes table public.items")
	if out := e.setup(); !strings.Contains(out, "copied again") || !strings.Contains(out, "is copied into ClickHouse table items_resync") {
		t.Errorf("setup after the publication lost items:\n%s", out)
	}
	d = e.start()
	e.exec("UPDATE items SET qty = 2 WHERE id < 20")
	e.itemsExact("items copied again")
	d.stop(t)
}

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

const itemsDDL = `CREATE TABLE items (id bigint PRIMARY KEY, qty smallint NOT NULL, note varchar(20))`

const itemsConfig = `
table "public.items" {
  order_by = ["id"]
}
`

// convergeItems waits until the given columns of items (SQL expressions
// for Postgres and for ClickHouse, rendered the same) agree.
func (e *env) convergeItems(what, pgCols, chCols string) {
	e.t.Helper()
	e.sameRows(what, "SELECT concat_ws('|', "+pgCols+") FROM items",
		fmt.Sprintf("SELECT concat(%s) FROM db_%s.items_live", chCols, e.name))
}

// itemsWriter inserts and updates items (the columns every step has) until
// ctx ends.
func (e *env) itemsWriter(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 3))
		next := 100000
		for ctx.Err() == nil {
			next++
			if rng.IntN(2) == 0 {
				e.pg.Exec(context.Background(), "INSERT INTO items (id, qty) VALUES ($1, $2)", next, rng.IntN(100))
			} else {
				e.pg.Exec(context.Background(), "UPDATE items SET qty = qty + 1 WHERE id % 97 = $1", rng.IntN(97))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

// TestSchemaChangesWhileRunning adds a column with a default, widens one
// (a rewrite: the table is copied again), changes varchar(n) to text and
// drops one while a writer runs, then adds one more while the daemon is
// stopped: ClickHouse follows, older rows read the default Postgres gives
// them, and nothing stops.
func TestSchemaChangesWhileRunning(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 2000) g")
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.itemsWriter(ctx, &wg)
	time.Sleep(300 * time.Millisecond)

	e.exec("ALTER TABLE items ADD COLUMN price integer NOT NULL DEFAULT 42")
	e.exec("INSERT INTO items (id, qty, price) SELECT g, 1, g FROM generate_series(5000, 5100) g")
	e.exec("ALTER TABLE items ALTER COLUMN qty TYPE integer")
	e.exec("UPDATE items SET qty = 100000 WHERE id = 5000")
	e.exec("ALTER TABLE items ALTER COLUMN note TYPE text")
	e.exec("UPDATE items SET note = repeat('long', 10) WHERE id = 1")
	e.exec("ALTER TABLE items DROP COLUMN note")
	e.exec("INSERT INTO items (id, qty, price) VALUES (6000, 6, 6)")
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	e.convergeItems("after ADD, widen, text, DROP", "id, qty, price", "toString(id), '|', toString(qty), '|', toString(price)")
	types := e.chRows(fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = 'db_%s' AND table = 'items'", e.name))
	// (The widening rewrote the table, which is then copied again: the
	// new copy lacks note if it began after the DROP.)
	for _, want := range []string{"price|Int32", "qty|Int32"} {
		if !slicesContains(types, want) {
			t.Errorf("ClickHouse items columns %v lack %s", types, want)
		}
	}
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("daemon exit %d", code)
	}

	// Across a restart: transactions before and after a schema change the
	// daemon has not seen yet.
	e.exec("INSERT INTO items (id, qty, price) VALUES (7000, 7, 7)")
	e.exec("ALTER TABLE items ADD COLUMN label text DEFAULT 'none'")
	e.exec("INSERT INTO items (id, qty, price, label) VALUES (7001, 7, 7, 'new')")
	d = e.start()
	e.convergeItems("after a restart across ADD COLUMN", "id, qty, price, label",
		"toString(id), '|', toString(qty), '|', toString(price), '|', label")
	d.stop(t)
}

// TestSchemaChangeThatCannotBeApplied renames a column: the daemon stops
// naming the table and the columns, instead of splitting the values.
func TestSchemaChangeThatCannotBeApplied(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items VALUES (1, 1, 'a')")
	e.setup()
	d := e.start()
	e.exec("ALTER TABLE items RENAME COLUMN note TO label")
	e.exec("INSERT INTO items VALUES (2, 2, 'b')")
	if code := d.wait(t, convergeTimeout); code == 0 {
		t.Fatal("daemon exited 0 after a column rename")
	}
	if logs := d.Logs(); !strings.Contains(logs, "table public.items: columns note are gone and label appeared") {
		t.Errorf("daemon log lacks the rename error:\n%s", tail(logs, 3000))
	}
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestRemovedTableBlock removes a table block and runs setup again: the
// table leaves the publication, setup says its target is kept, and the
// other table keeps replicating; added back, the table is copied again.
func TestRemovedTableBlock(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items VALUES (1, 1, 'a')")
	e.insertEvents(10)
	e.setup()
	e.setConfig(itemsConfig, "")
	out := e.setup()
	if !strings.Contains(out, "removed public.items from publication") || !strings.Contains(out, "is kept") {
		t.Errorf("setup after removing the items block:\n%s", out)
	}
	var n int
	if err := e.pg.QueryRow(context.Background(), "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = 'items'",
		"pub_"+e.name).Scan(&n); err != nil || n != 0 {
		t.Errorf("items still published (%d, %v)", n, err)
	}
	d := e.start()
	e.exec("INSERT INTO items VALUES (2, 2, 'b')")
	e.insertEvents(5)
	e.converge("events after the items block was removed", convergeTimeout)
	if got := e.chCount(fmt.Sprintf("SELECT count() FROM db_%s.items", e.name)); got != 1 {
		t.Errorf("items in ClickHouse = %d rows, want the 1 copied row kept", got)
	}

	// While items is not replicated: a delete, a key move and an update,
	// which the stream does not carry.
	e.exec("DELETE FROM items WHERE id = 1")
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(10, 2000) g")
	e.exec("UPDATE items SET id = 5000 WHERE id = 2")
	e.exec("UPDATE items SET qty = 9 WHERE id = 10")
	e.exec("DELETE FROM items WHERE id BETWEEN 100 AND 199")

	// Added back while the daemon runs and writers change items: copied
	// again into a new table, which the daemon puts in place of the old
	// one; readers see rows throughout.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.itemsWriter(ctx, &wg)
	e.itemsChurn(ctx, &wg, 2000)
	rctx, stopReader := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	e.readersNeverSeeEmpty(rctx, &readers, "items")
	e.appendConfig(itemsConfig)
	if out := e.setup(); !strings.Contains(out, "copying the added tables public.items") ||
		!strings.Contains(out, "is copied into ClickHouse table items_resync") {
		t.Errorf("setup after adding items back:\n%s", out)
	}
	e.heldUntilReload(d)
	cancel()
	wg.Wait()
	e.itemsExact("items added back")
	stopReader()
	readers.Wait()
	d.stop(t)

	// Removed and added back once more, this time with the daemon
	// restarted on the configuration that names items before setup runs:
	// it writes items until setup's mark, setup empties the target under
	// it, and the copy is not taken as exact.
	e.setConfig(itemsConfig, "")
	e.setup()
	e.exec("DELETE FROM items WHERE id BETWEEN 200 AND 299")
	e.exec("UPDATE items SET id = id + 2000000 WHERE id BETWEEN 300 AND 310")
	e.appendConfig(itemsConfig)
	d = e.start()
	ctx, cancel = context.WithCancel(context.Background())
	e.itemsWriter(ctx, &wg)
	e.itemsChurn(ctx, &wg, 2000)
	time.Sleep(time.Second)
	e.setup()
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	e.itemsExact("items added back under a daemon that names it")
	d.stop(t)
}

// TestAddTable adds a table block to a running replication: setup copies
// the table while writers change it and the daemon, on the old
// configuration, holds its checkpoint; after SIGHUP the daemon replicates
// it: ClickHouse equals Postgres for both tables.
func TestAddTable(t *testing.T) {
	e := newEnv(t, "")
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 20000) g")
	e.insertEvents(100)
	e.setup()
	d := e.start()
	e.insertEvents(10)
	e.exec("UPDATE items SET qty = qty + 1 WHERE id % 10 = 0")
	e.converge("events before the table is added", convergeTimeout)

	// Writers change both tables throughout: items with inserts, updates,
	// deletes and key moves.
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 21, 1)
	var wg sync.WaitGroup
	e.itemsWriter(ctx, &wg)
	e.itemsChurn(ctx, &wg, 20000)

	// setup on the new configuration while the daemon streams on the old one.
	e.appendConfig(itemsConfig)
	out := e.setup()
	if !strings.Contains(out, "copying the added tables public.items") || !strings.Contains(out, "holds its checkpoint") {
		t.Errorf("setup while the daemon runs:\n%s", out)
	}
	// The old daemon has seen changes of items, which it cannot write: it
	// holds its checkpoint, so that none of them is acknowledged.
	held := e.heldUntilReload(d)
	cancel()
	txns := wait()
	wg.Wait()
	e.insertEvents(5)
	e.itemsExact("items added to a running replication")
	e.converge(fmt.Sprintf("events after the table was added (%d transactions)", txns), convergeTimeout)
	if logs := d.Logs(); !strings.Contains(logs, "configuration reloaded") {
		t.Errorf("the daemon did not reload its configuration\n%s", tail(logs, 3000))
	}
	if after := e.checkpointLSN(); after <= held {
		t.Errorf("checkpoint %d did not move past the held %d after the reload", after, held)
	}
	d.stop(t)
}

// appendConfig adds blocks to the end of the daemon's configuration file.
func (e *env) appendConfig(blocks string) {
	e.t.Helper()
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.config, append(src, blocks...), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

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
	}{
		{name: "for all tables", publication: "CREATE PUBLICATION %s FOR ALL TABLES WITH (publish_via_partition_root = true)"},
		{name: "for tables in schema", publication: "CREATE PUBLICATION %s FOR TABLES IN SCHEMA public"},
		{name: "added first", added: "ALTER PUBLICATION %s ADD TABLE items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
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
			e.waitLog(d, "the checkpoint is held until this daemon runs with that configuration")
			held := e.checkpointLSN()
			time.Sleep(3 * time.Second)
			if now := e.checkpointLSN(); now != held {
				t.Errorf("checkpoint moved from %d to %d while items' changes were not written", held, now)
			}
			d.cmd.Process.Signal(syscall.SIGHUP)
			time.Sleep(2 * time.Second)
			cancel()
			txns := wait()
			wg.Wait()
			e.insertEvents(5)
			e.convergeItems("items added to a running replication", "id, qty, coalesce(note, '')",
				"toString(id), '|', toString(qty), '|', note")
			e.converge(fmt.Sprintf("events (%d transactions)", txns), convergeTimeout)
			if vout, verrs, code := e.cli("verify", "--config", e.config); code != 0 {
				t.Errorf("verify: exit %d\n%s\n%s", code, vout, verrs)
			}
			d.stop(t)
		})
	}
}

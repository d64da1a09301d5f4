package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// placedConfig sorts events the way GitLab's queries read them, by author
// and time, and partitions them by month: keys outside the replica
// identity (id), which deletes do not carry.
const placedConfig = `order_by     = ["author_id", "created_at", "id"]
  partition_by = "toYYYYMM(created_at)"
  column "id"`

// mover moves events between authors and months, twice within one
// transaction at times, until ctx ends.
func (e *env) mover(ctx context.Context, wg *sync.WaitGroup, seed uint64) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, seed))
		for ctx.Err() == nil {
			pick := fmt.Sprintf("SELECT id FROM events ORDER BY random() LIMIT %d", rng.IntN(4)+1)
			var q string
			switch rng.IntN(4) {
			case 0:
				q = fmt.Sprintf("UPDATE events SET author_id = author_id %% 50 + 1, updated_at = now() WHERE id IN (%s)", pick)
			case 1:
				q = fmt.Sprintf("UPDATE events SET created_at = created_at + interval '%d days' WHERE id IN (%s)", rng.IntN(90)-45, pick)
			case 2:
				q = fmt.Sprintf(`BEGIN; CREATE TEMP TABLE IF NOT EXISTS moved (id bigint); TRUNCATE moved; INSERT INTO moved %s;
					UPDATE events SET author_id = author_id + 1 WHERE id IN (SELECT id FROM moved);
					UPDATE events SET created_at = created_at - interval '31 days' WHERE id IN (SELECT id FROM moved);
					DELETE FROM events WHERE id IN (SELECT id FROM moved) AND author_id %% 7 = 0; COMMIT`, pick)
			default:
				q = fmt.Sprintf("UPDATE events SET project_id = %d WHERE id IN (%s)", rng.IntN(1000), pick)
			}
			e.pg.Exec(context.Background(), q)
		}
	}()
}

// TestAnySortingKey replicates events sorted by (author_id, created_at, id)
// and partitioned by month with the default replica identity, under
// writers that insert, update in place, move rows between authors and
// months, change ids and delete, while the daemon is killed with SIGKILL
// again and again: the live view equals Postgres row for row, and verify
// agrees.
func TestAnySortingKey(t *testing.T) {
	e := newEnv(t, copyConfig)
	e.setConfig(`order_by = ["id"]
  column "id"`, placedConfig)
	e.insertEvents(20000)
	e.exec("UPDATE events SET created_at = '2026-01-01'::timestamptz + (id % 300) * interval '1 day' + (id % 1000) * interval '1 minute'")
	e.startAudit()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 11, 2)
	var wg sync.WaitGroup
	e.mover(ctx, &wg, 12)
	e.setup()
	var engine string
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT engine_full FROM system.tables WHERE database = 'db_%s' AND name = 'events'", e.name)).Scan(&engine); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(engine, "PARTITION BY toYYYYMM(created_at) ORDER BY (author_id, created_at, id)") {
		t.Errorf("target engine %q, want the configured partition and sorting keys", engine)
	}
	rng := rand.New(rand.NewPCG(13, 13))
	kills := 5
	for i := 0; i < kills; i++ {
		d := e.start()
		time.Sleep(time.Duration(700+rng.IntN(1500)) * time.Millisecond)
		d.kill()
		e.checkpointCovered()
	}
	cancel()
	txns := wait()
	wg.Wait()
	d := e.start()
	e.converge(fmt.Sprintf("after %d kills and %d workload transactions", kills, txns), convergeTimeout)
	vout, verrs, code := e.cli("verify", "--config", e.config)
	if code != 0 || !strings.Contains(vout, "public.events") {
		t.Errorf("verify: exit %d\n%s\n%s", code, vout, verrs)
	}
	d.stop(t)
	// Every tombstone sits where its row lived: none with the default
	// author, which a tombstone built from the delete alone would have.
	var zero uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.events WHERE _deleted = 1 AND author_id = 0", e.name)).Scan(&zero); err != nil {
		t.Fatal(err)
	}
	if zero != 0 {
		t.Errorf("%d tombstones with author_id 0", zero)
	}
	t.Logf("%d kill -9, %d workload transactions, converged", kills, txns)

	// Back to a table sorted by id alone: the keys of a table cannot
	// change, so the daemon and setup stop and name resync, which copies
	// the table into a new one with the configured keys.
	e.setConfig(placedConfig, `order_by = ["id"]
  column "id"`)
	d = e.start()
	if code := d.wait(t, convergeTimeout); code == 0 || !strings.Contains(d.Logs(), "replicator resync --config FILE --table public.events") {
		t.Errorf("daemon on a target with other keys: exit %d\n%s", code, tail(d.Logs(), 2000))
	}
	if out, errs, code := e.cli("setup", "--config", e.config); code == 0 || !strings.Contains(errs, "is ReplacingMergeTree") && !strings.Contains(errs, "ORDER BY (author_id, created_at, id)") {
		t.Errorf("setup on a target with other keys: exit %d\n%s\n%s", code, out, errs)
	}
	if out, errs, code := e.cli("resync", "--config", e.config, "--table", "public.events"); code != 0 {
		t.Fatalf("resync: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("DELETE FROM events WHERE id % 10 = 3")
	d = e.start()
	e.converge("after the resync to the new keys", convergeTimeout)
	d.stop(t)
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT engine_full FROM system.tables WHERE database = 'db_%s' AND name = 'events'", e.name)).Scan(&engine); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(engine, "PARTITION BY") || !strings.Contains(engine, "ORDER BY id") {
		t.Errorf("target engine after the resync %q, want ORDER BY id alone", engine)
	}
}

// TestPlacedMicroseconds sorts a table whose replica identity holds a
// timestamp with microseconds by (author_id, created_at, id) on a server
// whose DateTime keeps whole seconds: deletes and moves of rows stored
// earlier find them, and a row moved away and back within one flush stays.
func TestPlacedMicroseconds(t *testing.T) {
	e := newEnv(t, `
table "public.pevents" {
  order_by     = ["author_id", "created_at", "id"]
  partition_by = "toYYYYMM(created_at)"
  column "id" { type = "UInt64" }
}
`)
	e.exec(peventsDDL)
	e.exec(`INSERT INTO pevents SELECT g, '2026-10-01 10:00:00.123456+00'::timestamptz + g * interval '1 hour 0.000001 second', g % 5, 'n'
		FROM generate_series(1, 200) g`)
	e.setup()
	d := e.start()
	e.convergePevents("copy")
	e.exec("DELETE FROM pevents WHERE id % 10 = 1")
	e.exec("UPDATE pevents SET author_id = author_id + 10 WHERE id % 10 = 2")
	e.exec("UPDATE pevents SET note = 'x' WHERE id % 10 = 3")
	e.exec(`BEGIN;
		UPDATE pevents SET created_at = created_at + interval '0.4 second' WHERE id % 10 = 4;
		UPDATE pevents SET created_at = created_at - interval '0.4 second' WHERE id % 10 = 4;
		COMMIT`)
	e.convergePevents("deletes and moves of rows with microseconds")
	d.stop(t)
	e.chExec(fmt.Sprintf("OPTIMIZE TABLE db_%s.pevents FINAL", e.name))
	e.convergePevents("after a merge")
}

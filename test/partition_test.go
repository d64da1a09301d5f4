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

// peventsDDL is an events table partitioned by month.
const peventsDDL = `CREATE TABLE pevents (
  id         bigint NOT NULL,
  created_at timestamptz NOT NULL,
  author_id  integer NOT NULL,
  note       text,
  PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE pevents_2026_10 PARTITION OF pevents FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE pevents_2026_11 PARTITION OF pevents FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')`

const peventsConfig = `
table "public.pevents" {
  order_by = ["id", "created_at"]
  column "id" { type = "UInt64" }
}
`

// convergePevents waits until pevents in ClickHouse's live view equals
// Postgres.
func (e *env) convergePevents(what string) {
	e.t.Helper()
	e.sameRows(what, "SELECT concat_ws('|', id, extract(epoch FROM created_at)::bigint, author_id, coalesce(note, '')) FROM pevents",
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(toUnixTimestamp(created_at)), '|', toString(author_id), '|', note) FROM db_%s.pevents_live", e.name))
}

// peventsWriter inserts, updates, moves between partitions and deletes
// pevents rows until ctx ends.
func (e *env) peventsWriter(ctx context.Context, wg *sync.WaitGroup, seed uint64) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, seed))
		next := 1_000_000 + int(seed)*1_000_000
		for ctx.Err() == nil {
			var q string
			switch p := rng.IntN(10); {
			case p < 4:
				next++
				q = fmt.Sprintf("INSERT INTO pevents VALUES (%d, '2026-10-01'::timestamptz + interval '%d minutes', %d, 'w')",
					next, rng.IntN(60*24*60), rng.IntN(100))
			case p < 6:
				q = fmt.Sprintf("UPDATE pevents SET note = md5(random()::text), author_id = author_id + 1 WHERE id %% 997 = %d", rng.IntN(997))
			case p < 8:
				// Moves rows between the October and November partitions.
				q = fmt.Sprintf(`UPDATE pevents SET created_at = CASE WHEN created_at < '2026-11-01' THEN created_at + interval '30 days'
					ELSE created_at - interval '30 days' END WHERE id %% 991 = %d AND created_at >= '2026-10-02' AND created_at < '2026-11-30'`, rng.IntN(991))
			default:
				q = fmt.Sprintf("DELETE FROM pevents WHERE id %% 983 = %d", rng.IntN(983))
			}
			e.pg.Exec(context.Background(), q)
		}
	}()
}

// TestPartitionedTable replicates a table partitioned by month under a
// writer that inserts, updates, moves rows between partitions and deletes,
// while a partition is created and filled: one ClickHouse target equals the
// parent in Postgres.
func TestPartitionedTable(t *testing.T) {
	e := newEnv(t, copyConfig+peventsConfig)
	e.exec(peventsDDL)
	e.exec(`INSERT INTO pevents SELECT g, '2026-10-01'::timestamptz + (g % 80000) * interval '1 minute', g % 50,
		CASE WHEN g % 4 = 0 THEN NULL ELSE md5(g::text) END FROM generate_series(1, 60000) g`)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.peventsWriter(ctx, &wg, 1)
	out := e.setup()
	if !strings.Contains(out, "copying public.pevents") {
		t.Errorf("setup did not copy pevents:\n%s", out)
	}
	var viaRoot bool
	if err := e.pg.QueryRow(context.Background(), "SELECT pubviaroot FROM pg_publication WHERE pubname = $1", "pub_"+e.name).Scan(&viaRoot); err != nil || !viaRoot {
		t.Errorf("publication publishes via the partition root: %v (%v), want true", viaRoot, err)
	}
	d := e.start()
	time.Sleep(500 * time.Millisecond)
	e.exec("CREATE TABLE pevents_2026_12 PARTITION OF pevents FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')")
	e.exec(`INSERT INTO pevents SELECT g, '2026-12-01'::timestamptz + (g - 500000) * interval '1 minute', 7, 'december' FROM generate_series(500000, 505000) g`)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	e.convergePevents("pevents")
	vout, verrs, code := e.cli("verify", "--config", e.config)
	if code != 0 || !strings.Contains(vout, "public.pevents") {
		t.Errorf("verify of the partitioned table: exit %d\n%s\n%s", code, vout, verrs)
	}
	// A row changed behind the replicator's back is found, by its whole key.
	var id int64
	if err := e.pg.QueryRow(context.Background(), "SELECT min(id) FROM pevents").Scan(&id); err != nil {
		t.Fatal(err)
	}
	e.chExec(fmt.Sprintf("INSERT INTO db_%s.pevents (id, created_at, author_id, note, _version, _deleted, _seq) "+
		"SELECT id, created_at, author_id + 1000, note, _version + 1, 0, _seq FROM db_%s.pevents FINAL WHERE id = %d AND _deleted = 0",
		e.name, e.name, id))
	vout, _, code = e.cli("verify", "--config", e.config)
	if code != 1 || !strings.Contains(vout, "different 1") || !strings.Contains(vout, fmt.Sprintf("id=%d, created_at=", id)) {
		t.Errorf("verify after tampering with id %d: exit %d, want 1 and the key\n%s", id, code, vout)
	}
	d.stop(t)
}

// TestPartitionChangesNeverDropped checks both sides of a publication that
// does not publish via the root: setup refuses it with the command that
// fixes it, and a daemon that receives a change under a partition's name
// stops naming the table instead of dropping it.
func TestPartitionChangesNeverDropped(t *testing.T) {
	e := newEnv(t, peventsConfig)
	e.exec(peventsDDL)
	e.exec("CREATE PUBLICATION pub_" + e.name + " FOR TABLE pevents")
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 || !strings.Contains(errs, "publish_via_partition_root = true") {
		t.Fatalf("setup accepted a publication without publish_via_partition_root: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec("ALTER PUBLICATION pub_" + e.name + " SET (publish_via_partition_root = true)")
	e.setup()
	d := e.start()
	e.exec("INSERT INTO pevents VALUES (1, '2026-10-05', 1, 'a')")
	e.convergePevents("first row")
	e.exec("ALTER PUBLICATION pub_" + e.name + " SET (publish_via_partition_root = false)")
	e.exec("INSERT INTO pevents VALUES (2, '2026-11-05', 1, 'b')")
	if code := d.wait(t, convergeTimeout); code == 0 {
		t.Fatalf("daemon exited 0 after a change under a partition's name")
	}
	if logs := d.Logs(); !strings.Contains(logs, "a partition of table public.pevents") {
		t.Errorf("daemon log lacks the partition error:\n%s", tail(logs, 3000))
	}
}

// TestInheritanceChildren configures a plain table whose legacy
// inheritance child (INHERITS) holds rows, under setup's publication and
// under one FOR ALL TABLES: the target holds the parent's own rows, once,
// and the child's changes neither land there nor stop the daemon.
func TestInheritanceChildren(t *testing.T) {
	for _, tc := range []struct{ name, publication string }{
		{"setup publication", ""},
		{"for all tables", "FOR ALL TABLES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, `
table "public.animals" {
  order_by = ["id"]
  column "id" { type = "UInt64" }
}
`)
			e.exec(`CREATE TABLE animals (id bigint PRIMARY KEY, name text NOT NULL)`)
			e.exec(`CREATE TABLE dogs (breed text) INHERITS (animals)`)
			e.exec(`ALTER TABLE dogs ADD PRIMARY KEY (id)`)
			e.exec(`INSERT INTO animals SELECT g, 'a' || g FROM generate_series(1, 100) g`)
			e.exec(`INSERT INTO dogs SELECT g, 'd' || g, 'b' FROM generate_series(1001, 1100) g`)
			if tc.publication != "" {
				e.exec(fmt.Sprintf("CREATE PUBLICATION pub_%s %s", e.name, tc.publication))
			}
			e.setup()
			own := "SELECT concat_ws('|', id, name) FROM ONLY animals"
			live := fmt.Sprintf("SELECT concat(toString(id), '|', name) FROM db_%s.animals_live", e.name)
			e.sameRows("copy", own, live)
			var n uint64
			if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.animals", e.name)).Scan(&n); err != nil || n != 100 {
				t.Fatalf("animals in ClickHouse: %d rows (%v), want the parent's 100, once", n, err)
			}
			d := e.start()
			e.exec(`INSERT INTO dogs VALUES (1101, 'd', 'b')`)
			e.exec(`UPDATE dogs SET name = 'x' WHERE id = 1001`)
			e.exec(`DELETE FROM dogs WHERE id = 1002`)
			e.exec(`INSERT INTO animals VALUES (101, 'a101')`)
			e.exec(`UPDATE ONLY animals SET name = 'y' WHERE id = 1`)
			e.exec(`DELETE FROM ONLY animals WHERE id = 2`)
			e.sameRows("stream", own, live)
			select {
			case <-d.done:
				t.Fatalf("daemon exited: %v", d.err)
			default:
			}
			if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
				t.Fatalf("verify exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
		})
	}
}

// TestPartitionMoveFinalTie moves rows of events, sorted by id and
// partitioned by month, from November to October: each move leaves a
// tombstone in November and the row in October with one version, and FINAL,
// which collapses rows across partitions, keeps the tombstone of the later
// partition. Status counts the live rows and verify finds the tables equal,
// by checksum, before and after a merge.
func TestPartitionMoveFinalTie(t *testing.T) {
	e := newEnv(t, "")
	e.setConfig(`order_by = ["id"]
  column "id"`, `order_by = ["id"]
  partition_by = "toYYYYMM(created_at)"
  column "id"`)
	e.insertEvents(3000)
	e.exec("UPDATE events SET created_at = '2026-11-01'::timestamptz + (id % 1000) * interval '1 minute'")
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.exec("UPDATE events SET created_at = created_at - interval '20 days' WHERE id % 3 = 0")
	e.exec("DELETE FROM events WHERE id % 7 = 0")
	e.converge("after the moves", convergeTimeout)
	var want uint64
	if err := e.pg.QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&want); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"before a merge", "after a merge"} {
		// The arrangement matters: FINAL across partitions loses the moved rows.
		final := e.chCount(fmt.Sprintf("SELECT countIf(_deleted = 0) FROM db_%s.events FINAL", e.name))
		if final >= want {
			t.Fatalf("%s: FINAL shows %d live rows of %d: the arrangement no longer makes FINAL keep a tombstone", stage, final, want)
		}
		tables, _ := e.status()["tables"].([]any)
		if len(tables) != 1 {
			t.Fatalf("%s: status tables %v", stage, tables)
		}
		if live := num(tables[0].(map[string]any), "live_rows"); live != float64(want) {
			t.Errorf("%s: status live_rows %v, want %d (FINAL shows %d)", stage, live, want, final)
		}
		out, errs, code := e.cli("verify", "--config", e.config, "--range-rows", "500")
		if code != 0 || !strings.Contains(out, "public.events: equal") || !strings.Contains(out, "(0 drilled down)") {
			t.Errorf("%s: verify: exit %d, want 0, equal and no range drilled down\n%s\n%s", stage, code, out, errs)
		}
		e.chExec(fmt.Sprintf("OPTIMIZE TABLE db_%s.events FINAL", e.name))
	}
	// Compaction removes the deleted rows and the tombstones the moves left
	// in the partitions the rows moved from, and keeps the moved rows.
	e.waitCheckpointPast()
	if out := e.compact(); !strings.Contains(out, "public.events: COMPACTED") {
		t.Fatalf("compact of a partitioned table:\n%s", out)
	}
	if n := e.chCount(fmt.Sprintf("SELECT count() FROM db_%s.events WHERE _deleted = 1", e.name)); n != 0 {
		t.Errorf("%d tombstones left after compact", n)
	}
	if final := e.chCount(fmt.Sprintf("SELECT countIf(_deleted = 0) FROM db_%s.events FINAL", e.name)); final != want {
		t.Errorf("after compact FINAL shows %d live rows, want %d", final, want)
	}
	e.converge("after compact", convergeTimeout)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify after compact: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestPartitionColumnOfTheIdentity: a table whose primary key is (id,
// region), sorted by id and partitioned by region, holds rows of one id in
// two regions; the views show both, and a row moved to another region
// once.
func TestPartitionColumnOfTheIdentity(t *testing.T) {
	e := newEnv(t, `
table "public.regional" {
  order_by     = ["id"]
  partition_by = "region"
  column "id"     { type = "Int64" }
  column "region" { type = "Int16" }
}`)
	e.exec(`CREATE TABLE regional (id bigint, region smallint, note text, PRIMARY KEY (id, region))`)
	e.exec(`INSERT INTO regional SELECT g % 100, g / 100, 'n' || g FROM generate_series(0, 299) g`)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.exec(`UPDATE regional SET region = 7 WHERE region = 1 AND id % 3 = 0`)
	e.exec(`DELETE FROM regional WHERE region = 2 AND id % 5 = 0`)
	e.exec(`INSERT INTO regional SELECT g, 9, 'new' FROM generate_series(0, 9) g`)
	for _, view := range []string{"regional_live", "regional_committed"} {
		e.sameRows(view, "SELECT id || '|' || region || '|' || note FROM regional",
			fmt.Sprintf("SELECT concat(toString(id), '|', toString(region), '|', note) FROM db_%s.%s", e.name, view))
	}
	if out, errs, code := e.cli("verify", "--config", e.config, "--range-rows", "50"); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	e.waitCheckpointPast()
	e.compact()
	e.sameRows("regional_live after compact", "SELECT id || '|' || region || '|' || note FROM regional",
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(region), '|', note) FROM db_%s.regional_live", e.name))
}

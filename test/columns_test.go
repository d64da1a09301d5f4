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

// oddDDL is a table whose names need quoting everywhere: upper case,
// spaces, a quote, a reserved word.
const oddDDL = `CREATE TABLE "Odd Events" (
  id          bigint PRIMARY KEY,
  "Author Id" integer NOT NULL,
  "select"    text,
  secret      text,
  "we""ird"   integer,
  created_at  timestamptz NOT NULL DEFAULT now()
)`

// oddConfig renames "Author Id", sorts by it (outside the replica
// identity), excludes secret, and names the target with a space and quotes.
const oddConfig = `
table "public.Odd Events" {
  target   = "Odd \"Events\""
  order_by = ["Author", "id"]
  exclude  = ["secret"]
  column "Author Id" { name = "Author" }
}
`

// oddRows compares "Odd Events" in Postgres with its live view.
func (e *env) oddRows(what string) {
	e.t.Helper()
	pg := `concat_ws('|', id, "Author Id", coalesce("select", ''), coalesce("we""ird", 0), coalesce("New Col", 0)`
	ch := "concat(toString(id), '|', toString(`Author`), '|', `select`, '|', toString(`we\"ird`), '|', toString(`New Col`)"
	e.sameRows(what, "SELECT "+pg+`) FROM "Odd Events"`,
		fmt.Sprintf("SELECT %s) FROM `db_%s`.`Odd \"Events\"_live`", ch, e.name))
}

// TestColumnsAndIdentifiers replicates a table with odd names, a renamed
// sorting column and an excluded column under a writer, while the
// excluded column changes type (which the daemon would have to stop on,
// were it replicated) and goes, and a column with a space in its name
// comes.
func TestColumnsAndIdentifiers(t *testing.T) {
	e := newEnv(t, oddConfig)
	e.exec(oddDDL)
	e.exec(`INSERT INTO "Odd Events" (id, "Author Id", "select", secret, "we""ird")
		SELECT g, g % 40, CASE WHEN g % 3 = 0 THEN NULL ELSE 'sel ' || g END, md5(g::text), g % 7 FROM generate_series(1, 5000) g`)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 3))
		next := 100000
		for ctx.Err() == nil {
			var q string
			switch rng.IntN(4) {
			case 0:
				next++
				q = fmt.Sprintf(`INSERT INTO "Odd Events" (id, "Author Id", "select", "we""ird") VALUES (%d, %d, 'new', 1)`, next, rng.IntN(40))
			case 1:
				q = fmt.Sprintf(`UPDATE "Odd Events" SET "Author Id" = "Author Id" + 1, "we""ird" = %d WHERE id %% 97 = %d`, rng.IntN(100), rng.IntN(97))
			case 2:
				q = fmt.Sprintf(`UPDATE "Odd Events" SET "select" = md5(random()::text) WHERE id %% 89 = %d`, rng.IntN(89))
			default:
				q = fmt.Sprintf(`DELETE FROM "Odd Events" WHERE id %% 101 = %d`, rng.IntN(101))
			}
			e.pg.Exec(context.Background(), q)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	e.exec(`ALTER TABLE "Odd Events" ALTER COLUMN secret TYPE bigint USING length(secret)`)
	time.Sleep(300 * time.Millisecond)
	e.exec(`ALTER TABLE "Odd Events" DROP COLUMN secret`)
	e.exec(`ALTER TABLE "Odd Events" ADD COLUMN "New Col" integer DEFAULT 7`)
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	e.exec(`UPDATE "Odd Events" SET "New Col" = 8 WHERE id % 5 = 0`)
	e.oddRows("Odd Events")
	vout, verrs, code := e.cli("verify", "--config", e.config)
	if code != 0 || !strings.Contains(vout, "public.Odd Events") {
		t.Errorf("verify: exit %d\n%s\n%s", code, vout, verrs)
	}
	var cols string
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT arrayStringConcat(groupArray(name), ',') FROM system.columns WHERE database = 'db_%s' AND table = 'Odd \"Events\"'", e.name)).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != `id,Author,select,we"ird,created_at,New Col,_version,_deleted,_seq` {
		t.Errorf("ClickHouse columns %s", cols)
	}
	d.stop(t)
}

// TestStorageNeedsNewerServer asks 18.16 for an index, a projection and a
// TTL: setup refuses, naming the version that has them, before it changes
// anything.
func TestStorageNeedsNewerServer(t *testing.T) {
	e := newEnv(t, "")
	e.setConfig(`order_by = ["id"]`, `order_by = ["id"]
  index "project_id_index" {
    expression  = "project_id"
    type        = "minmax"
    granularity = 10
  }`)
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 || !strings.Contains(errs, "data skipping indexes (index blocks) need ClickHouse 20.1 or later; the server is 18.16") {
		t.Fatalf("setup with an index on 18.16: exit %d\n%s\n%s", code, out, errs)
	}
	var n uint64
	if err := e.ch.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = 'db_"+e.name+"'").Scan(&n); err != nil || n != 0 {
		t.Errorf("setup created %d tables before refusing (%v)", n, err)
	}
}

package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// generatedDDL creates items with a stored generated column g and, from
// PostgreSQL 18 on, a virtual one v (the default kind there).
func generatedDDL(major int) string {
	ddl := "CREATE TABLE items (id bigint PRIMARY KEY, qty smallint NOT NULL, note varchar(20), " +
		"g bigint GENERATED ALWAYS AS (qty * 2) STORED"
	if major >= 18 {
		ddl += ", v bigint GENERATED ALWAYS AS (qty * 3)"
	}
	return ddl + ")"
}

// itemsTargetColumns returns the columns of ClickHouse's items other than
// the replicator's own, in order.
func (e *env) itemsTargetColumns() []string {
	e.t.Helper()
	rows, err := e.ch.Query(context.Background(), fmt.Sprintf("SELECT name FROM system.columns "+
		"WHERE database = 'db_%s' AND table = 'items' AND NOT startsWith(name, '_')", e.name))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			e.t.Fatal(err)
		}
		cols = append(cols, c)
	}
	return cols
}

// wantTargetColumns checks ClickHouse's columns of items.
func (e *env) wantTargetColumns(what string, want ...string) {
	e.t.Helper()
	if got := e.itemsTargetColumns(); !slices.Equal(got, want) {
		e.t.Errorf("%s: ClickHouse items has columns %v, want %v", what, got, want)
	}
}

const genPgCols, genChCols = itemsCols + ", coalesce(g, 0)", itemsChCols + ", '|', toString(g)"

// TestGeneratedColumns: a stored generated column reaches ClickHouse when
// the stream sends it, which from PostgreSQL 18 on the publication that
// setup creates does (publish_generated_columns = stored); before 18 no
// generated column is ever sent, and neither the copy nor the target has
// it. A virtual one (18) is never sent and never copied. The copy and the
// stream agree on every row; then a stored generated column added while
// the daemon runs (a rewrite) follows the same rule: copied again with it
// on 18, verified without it before.
func TestGeneratedColumns(t *testing.T) {
	major := pgMajor(t)
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(generatedDDL(major))
	e.exec(rewriteFill)
	// Setup names what ClickHouse does not get.
	out := e.setup()
	unsent := "generated columns of public.items that the stream does not send"
	switch {
	case major < 18 && !strings.Contains(out, unsent+", so neither the copy nor ClickHouse has them: g (stored: on PostgreSQL 18"):
		t.Errorf("setup does not say that g is left out\n%s", out)
	case major >= 18 && !strings.Contains(out, "has them: v (virtual: never published)"):
		t.Errorf("setup does not say that v is left out\n%s", out)
	case major >= 18 && strings.Contains(out, "g (stored"):
		t.Errorf("setup says that g is left out\n%s", out)
	}
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	time.Sleep(time.Second)
	pgCols, chCols, cols := itemsCols, itemsChCols, []string{"id", "qty", "note"}
	if major >= 18 {
		pgCols, chCols, cols = genPgCols, genChCols, append(cols, "g")
	}
	cancel()
	wg.Wait()
	e.convergeItems("copied and streamed rows", pgCols, chCols)
	e.wantTargetColumns("after the copy", cols...)

	ctx, cancel = context.WithCancel(context.Background())
	e.rewriteWriter(ctx, &wg)
	time.Sleep(300 * time.Millisecond)
	e.exec("ALTER TABLE items ADD COLUMN h bigint GENERATED ALWAYS AS (qty + 1) STORED")
	if major >= 18 {
		d.waitLog(t, convergeTimeout, append([]string{"only Postgres has its older rows' values"}, recopied...)...)
		pgCols, chCols, cols = pgCols+", h", chCols+", '|', toString(h)", append(cols, "h")
	} else {
		d.waitLog(t, convergeTimeout, "the table was rewritten and ClickHouse equals Postgres")
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	e.convergeItems("after a generated column was added", pgCols, chCols)
	e.wantTargetColumns("after a generated column was added", cols...)

	// SET EXPRESSION (17+) rewrites the table with new values of g, and
	// the stream shows no change of a row: the rewrite check verifies
	// it, and copies it again where ClickHouse has g.
	if major >= 17 {
		ctx, cancel = context.WithCancel(context.Background())
		e.rewriteWriter(ctx, &wg)
		time.Sleep(300 * time.Millisecond)
		e.exec("ALTER TABLE items ALTER COLUMN g SET EXPRESSION AS (qty * 5)")
		if major >= 18 {
			d.waitLog(t, convergeTimeout, append([]string{"verify found rows that differ"}, recopied...)...)
		} else {
			time.Sleep(3 * time.Second)
		}
		time.Sleep(time.Second)
		cancel()
		wg.Wait()
		e.convergeItems("after SET EXPRESSION", pgCols, chCols)
	}
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestGeneratedColumnsPublishedLater: on PostgreSQL 18 a publication of
// the user's that does not publish generated columns leaves g out of the
// copy and the target; publish_generated_columns = stored set while the
// daemon runs makes the stream send g, and the table is copied again with
// it (ClickHouse has no value of g for the older rows); set back to none,
// the table is copied again without it (else new rows would read 0).
func TestGeneratedColumnsPublishedLater(t *testing.T) {
	major := pgMajor(t)
	if major < 18 {
		t.Skipf("PostgreSQL %d never publishes generated columns (publish_generated_columns came with 18)", major)
	}
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(generatedDDL(major))
	e.exec(rewriteFill)
	pub := "pub_" + e.name
	e.exec("CREATE PUBLICATION " + pub + " FOR TABLE items")
	e.setup()
	d := e.start()
	e.convergeItems("copied without g", itemsCols, itemsChCols)
	e.wantTargetColumns("copied without g", "id", "qty", "note")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	time.Sleep(300 * time.Millisecond)
	e.exec("ALTER PUBLICATION " + pub + " SET (publish_generated_columns = stored)")
	d.waitLog(t, convergeTimeout, append([]string{"stored generated column that the stream sends from now on"}, recopied...)...)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	e.convergeItems("after g was published", genPgCols, genChCols)
	e.wantTargetColumns("after g was published", "id", "qty", "note", "g")

	ctx, cancel = context.WithCancel(context.Background())
	e.rewriteWriter(ctx, &wg)
	time.Sleep(300 * time.Millisecond)
	e.exec("ALTER PUBLICATION " + pub + " SET (publish_generated_columns = none)")
	d.waitLog(t, convergeTimeout, "generated column g is no longer sent by the stream")
	for deadline := time.Now().Add(convergeTimeout); strings.Count(d.Logs(), recopied[1]) < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("items was not copied again without g\n%s", tail(d.Logs(), 4000))
		}
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	e.convergeItems("after g was no longer published", itemsCols, itemsChCols)
	e.wantTargetColumns("after g was no longer published", "id", "qty", "note")
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestGeneratedColumnDropExpression: ALTER COLUMN g DROP EXPRESSION makes
// g a plain column that keeps its values, without a rewrite. A stream
// that did not send g (before 18) sends it from then on, and ClickHouse
// has none of the older rows' values: the table is copied again with g.
func TestGeneratedColumnDropExpression(t *testing.T) {
	major := pgMajor(t)
	e := newEnv(t, itemsConfig)
	e.checkRewritesEvery("2s")
	e.exec(generatedDDL(major))
	e.exec(rewriteFill)
	e.setup()
	d := e.start()
	pgCols, chCols := itemsCols, itemsChCols
	if major >= 18 {
		pgCols, chCols = genPgCols, genChCols
	}
	e.convergeItems("before DROP EXPRESSION", pgCols, chCols)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.rewriteWriter(ctx, &wg)
	time.Sleep(300 * time.Millisecond)
	e.exec("ALTER TABLE items ALTER COLUMN g DROP EXPRESSION")
	d.waitLog(t, convergeTimeout, append([]string{"ALTER COLUMN ... DROP EXPRESSION"}, recopied...)...)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	e.convergeItems("after DROP EXPRESSION", genPgCols, genChCols)
	e.wantTargetColumns("after DROP EXPRESSION", "id", "qty", "note", "g")
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

// TestGeneratedColumnInKey: a primary key (the replica identity) with a
// generated column that the stream does not send is refused at setup:
// before 18 deletes would carry keys without it, and 18 refuses the
// UPDATE or DELETE itself.
func TestGeneratedColumnInKey(t *testing.T) {
	major := pgMajor(t)
	e := newEnv(t, itemsConfig)
	e.exec("CREATE TABLE items (id bigint, qty smallint NOT NULL, note varchar(20), " +
		"g bigint GENERATED ALWAYS AS (qty * 2) STORED, PRIMARY KEY (id, g))")
	if major >= 18 {
		e.exec("CREATE PUBLICATION pub_" + e.name + " FOR TABLE items")
	}
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 {
		t.Fatalf("setup of a key with an unpublished generated column succeeded\n%s", out)
	}
	for _, want := range []string{"column g of the replica identity is a generated column", "REPLICA IDENTITY USING INDEX"} {
		if !strings.Contains(errs, want) {
			t.Errorf("setup's error lacks %q\n%s", want, errs)
		}
	}
}

// TestGeneratedColumnInOrderBy: order_by naming a generated column that
// the stream does not send is refused at setup, saying why.
func TestGeneratedColumnInOrderBy(t *testing.T) {
	major := pgMajor(t)
	e := newEnv(t, `
table "public.items" {
  order_by = ["g", "id"]
}
`)
	e.exec(generatedDDL(major))
	if major >= 18 {
		e.exec("CREATE PUBLICATION pub_" + e.name + " FOR TABLE items")
	}
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 {
		t.Fatalf("setup with order_by on an unsent generated column succeeded\n%s", out)
	}
	for _, want := range []string{`order_by column "g" does not exist in Postgres`, "generated columns that the stream does not send are not replicated: g (stored"} {
		if !strings.Contains(errs, want) {
			t.Errorf("setup's error lacks %q\n%s", want, errs)
		}
	}
}

package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// docsDDL is a table whose body is stored out of line (TOAST, no
// compression): an update that leaves body alone sends it as "unchanged".
const docsDDL = `CREATE TABLE docs (
  id   bigint PRIMARY KEY,
  flag smallint NOT NULL DEFAULT 0,
  body text
);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL`

// docsConfig is the replicator's table block for docs.
const docsConfig = `
table "public.docs" {
  order_by = ["id"]
  column "id"   { type = "UInt64" }
  column "flag" { type = "UInt8" }
}
`

// docBody is an SQL expression of a body of about size bytes for the row
// whose id is the expression id, different for each salt.
func docBody(id, salt string, size int) string {
	return fmt.Sprintf("repeat(md5(%s::text || '%s'), %d)", id, salt, max(size/32, 1))
}

// insertDocs inserts docs ids [from, from+n) with bodies of size bytes.
func (e *env) insertDocs(from, n, size int) {
	e.t.Helper()
	e.exec(fmt.Sprintf("INSERT INTO docs (id, body) SELECT g, %s FROM generate_series(%d, %d) g",
		docBody("g", "v1", size), from, from+n-1))
}

// setConfig replaces old by new in the daemon's configuration file.
func (e *env) setConfig(old, new string) {
	e.t.Helper()
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.Contains(string(src), old) {
		e.t.Fatalf("config lacks %q", old)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(src), old, new, 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// docRow is a doc as both sides should show it: the body by its MD5.
type docRow struct {
	ID   uint64
	Flag uint8
	MD5  string
}

func (e *env) docsExpected() []docRow {
	e.t.Helper()
	rows, err := e.pg.Query(context.Background(), `SELECT id, flag, md5(coalesce(body, '')) FROM docs ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []docRow
	for rows.Next() {
		var id int64
		var flag int16
		var sum string
		if err := rows.Scan(&id, &flag, &sum); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, docRow{ID: uint64(id), Flag: uint8(flag), MD5: sum})
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) docsActual() ([]docRow, error) {
	rows, err := e.ch.Query(context.Background(), fmt.Sprintf(
		"SELECT id, flag, lower(hex(MD5(body))) FROM db_%s.docs_live ORDER BY id", e.name))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []docRow
	for rows.Next() {
		var r docRow
		if err := rows.Scan(&r.ID, &r.Flag, &r.MD5); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// convergeDocs waits until the live docs in ClickHouse equal Postgres.
func (e *env) convergeDocs(what string, timeout time.Duration) {
	e.t.Helper()
	want := e.docsExpected()
	deadline := time.Now().Add(timeout)
	var got []docRow
	var err error
	for {
		got, err = e.docsActual()
		if err == nil && fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("%s: read clickhouse docs: %v", what, err)
	}
	e.t.Fatalf("%s: clickhouse docs did not converge within %s: %s", what, timeout, docsDiff(want, got))
}

func docsDiff(want, got []docRow) string {
	w, g := map[uint64]docRow{}, map[uint64]docRow{}
	for _, r := range want {
		w[r.ID] = r
	}
	for _, r := range got {
		g[r.ID] = r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "postgres %d docs, clickhouse %d docs", len(want), len(got))
	n := 0
	for _, r := range want {
		if x, ok := g[r.ID]; (!ok || x != r) && n < 5 {
			fmt.Fprintf(&b, "\n  id %d: postgres flag %d body %s, clickhouse %+v (present %v)", r.ID, r.Flag, r.MD5, x, ok)
			n++
		}
	}
	for _, r := range got {
		if _, ok := w[r.ID]; !ok && n < 10 {
			fmt.Fprintf(&b, "\n  id %d: extra in clickhouse", r.ID)
			n++
		}
	}
	return b.String()
}

// TestLargeFlushIsOnePart: a flush of more than one INSERT block (4 MiB)
// of large rows is one INSERT, which ClickHouse writes as one part. Before,
// a flush above 16 MiB was split into INSERTs of one part each.
func TestLargeFlushIsOnePart(t *testing.T) {
	e := newEnv(t, docsConfig)
	e.exec(docsDDL)
	e.setup()
	e.oneFlush()
	e.chExec(fmt.Sprintf("SYSTEM STOP MERGES %s.docs", "db_"+e.name))
	e.insertDocs(1, 1000, 32768) // 32 MB in one transaction, below max_bytes
	d := e.start()
	defer d.stop(t)
	e.convergeDocs("after one flush of 1,000 rows of 32 KB", time.Minute)
	parts := e.chCount(fmt.Sprintf("SELECT count() FROM system.parts WHERE database = '%s' AND table = 'docs' AND active AND rows > 0", "db_"+e.name))
	if parts != 1 {
		t.Errorf("one flush of 32 MB left %d parts, want 1", parts)
	}
}

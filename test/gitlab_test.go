package test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// statements returns the SQL statements of a shipped file, without
// comments, with the example database replaced by db.
func statements(t *testing.T, path, db string) []string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, stmt := range strings.Split(string(src), ";") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if q := strings.TrimSpace(strings.Join(lines, "\n")); q != "" {
			out = append(out, strings.ReplaceAll(q, "analytics.", db+"."))
		}
	}
	return out
}

// pgRows runs a Postgres query and returns its rows as chRows does.
func (e *env) pgRows(q string) []string {
	e.t.Helper()
	rows, err := e.pg.Query(context.Background(), q)
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			e.t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			if tm, ok := v.(time.Time); ok {
				v = tm.UTC()
			}
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestGitLabQueries replicates events into the seed's design (sorted by
// author and time, partitioned by month) under writers that move events
// between authors and months, change ids and delete, then runs every
// query of sql/clickhouse/queries.sql and its twin in
// sql/postgres/queries.sql: each pair returns the same rows.
func TestGitLabQueries(t *testing.T) {
	e := newEnv(t, "")
	e.setConfig(`order_by = ["id"]
  column "id"`, placedConfig)
	e.exec(`INSERT INTO events (project_id, author_id, target_id, action, target_type, created_at)
		SELECT CASE WHEN g % 7 = 0 THEN NULL ELSE g % 5 + 1 END, g % 6 + 1, g, g % 10,
		       (ARRAY['Issue', 'WorkItem', 'MergeRequest', NULL])[g % 4 + 1],
		       '2022-01-01'::timestamptz + (g * 3407 % (730 * 86400)) * interval '1 second'
		FROM generate_series(1, 20000) g`)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 31, 1)
	var wg sync.WaitGroup
	e.mover(ctx, &wg, 32)
	time.Sleep(2 * time.Second)
	cancel()
	txns := wait()
	wg.Wait()
	// The writers use now(): keep the test's time range.
	e.exec("UPDATE events SET created_at = '2022-06-01'::timestamptz + (id % 500) * interval '1 day' WHERE created_at > '2024-01-01'")
	e.converge(fmt.Sprintf("after %d transactions", txns), convergeTimeout)
	time.Sleep(1500 * time.Millisecond) // a checkpoint past the last transaction, for the committed view
	db := "db_" + e.name
	ch := statements(t, "../sql/clickhouse/queries.sql", db)
	pg := statements(t, "../sql/postgres/queries.sql", db)
	if len(ch) != len(pg) || len(ch) < 7 {
		t.Fatalf("%d ClickHouse queries and %d Postgres queries, want as many and at least 7", len(ch), len(pg))
	}
	for i := range ch {
		got, want := e.chRows(ch[i]), e.pgRows(pg[i])
		if len(want) == 0 {
			t.Errorf("query %d returns no rows on the test data", i)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("query %d: ClickHouse %d rows, Postgres %d rows\n%s\nClickHouse: %.400v\nPostgres:   %.400v", i, len(got), len(want), ch[i], got, want)
		}
	}
	d.stop(t)
}

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
// comments, with the example database replaced by db and the example
// slot by the test's (db without its "db_" prefix, after "slot_").
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
			q = strings.ReplaceAll(q, "'replicator_events'", "'slot_"+strings.TrimPrefix(db, "db_")+"'")
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
	// The writers use now(): keep the test's time range. They may have
	// deleted every event of the queried authors: add some, and move and
	// delete some of those.
	e.exec("UPDATE events SET created_at = '2022-06-01'::timestamptz + (id % 500) * interval '1 day' WHERE created_at > '2024-01-01'")
	e.exec(`INSERT INTO events (project_id, author_id, target_id, action, target_type, created_at)
		SELECT g % 4 + 1, CASE WHEN g % 2 = 0 THEN 1 ELSE 4 END, g, g % 8, (ARRAY['Issue', 'WorkItem', 'MergeRequest'])[g % 3 + 1],
		       '2022-01-20'::timestamptz + g * interval '7 hours'
		FROM generate_series(1, 1000) g`)
	e.exec("UPDATE events SET author_id = 5 - author_id, created_at = created_at + interval '40 days' WHERE author_id IN (1, 4) AND id % 5 = 0")
	e.exec("DELETE FROM events WHERE author_id IN (1, 4) AND id % 7 = 0")
	e.converge(fmt.Sprintf("after %d transactions", txns), convergeTimeout)
	db := "db_" + e.name
	ch := statements(t, "../sql/clickhouse/queries.sql", db)
	pg := statements(t, "../sql/postgres/queries.sql", db)
	if len(ch) != len(pg) || len(ch) < 7 {
		t.Fatalf("%d ClickHouse queries and %d Postgres queries, want as many and at least 7", len(ch), len(pg))
	}
	for i := range ch {
		want := e.pgRows(pg[i])
		// (The committed forms show the last transaction once a
		// checkpoint covers it.)
		got := e.chRows(ch[i])
		for deadline := time.Now().Add(30 * time.Second); strings.Join(got, "\n") != strings.Join(want, "\n") && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			got = e.chRows(ch[i])
		}
		if len(want) == 0 {
			t.Errorf("query %d returns no rows on the test data", i)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("query %d: ClickHouse %d rows, Postgres %d rows\n%s\nClickHouse: %.400v\nPostgres:   %.400v", i, len(got), len(want), ch[i], got, want)
		}
	}
	d.stop(t)
}

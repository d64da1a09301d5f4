package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// viewRows is the size of the events table the views section reads.
const viewRows = 1000000

// views times the reads of sql/clickhouse/queries.sql on the seed's design
// (sorted by author and time, partitioned by month) after a tenth of the
// rows moved to another author and a twentieth were deleted: every query
// on the live view beside the same query on the committed view, which
// shows the table as of the newest checkpoint. Best of 5 runs each.
func (b *bench) views(ctx context.Context) error {
	for _, partitioned := range []bool{true, false} {
		if err := b.viewsOn(ctx, partitioned); err != nil {
			return err
		}
	}
	return nil
}

// viewsOn is views on the seed's design, partitioned by month or not (the
// live view of an unpartitioned table reads FINAL, that of a partitioned
// one GROUP BY, as the committed view).
func (b *bench) viewsOn(ctx context.Context, partitioned bool) error {
	db := fmt.Sprintf("bench_views_%d", time.Now().UnixNano()%1e9)
	if _, err := b.pg.Psql(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return err
	}
	init := eventsDDL + fmt.Sprintf(`; INSERT INTO events (project_id, author_id, target_id, action, target_type, created_at)
		SELECT g %% 1000 + 1, g %% 500 + 1, g, g %% 10, (ARRAY['Issue', 'WorkItem', 'MergeRequest'])[g %% 3 + 1],
		       '2022-01-01'::timestamptz + (g::bigint * 3407 %% (730 * 86400)) * interval '1 second'
		FROM generate_series(1, %d) g`, viewRows)
	if _, err := b.pg.Psql(ctx, db, init); err != nil {
		return err
	}
	cfg, err := b.config(db, "")
	if err != nil {
		return err
	}
	if err := b.seedKeys(cfg); err != nil {
		return err
	}
	design := "partitioned by month"
	if !partitioned {
		design = "not partitioned"
		src, err := os.ReadFile(cfg)
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg, []byte(strings.Replace(string(src), `partition_by = "toYYYYMM(created_at)"`, "", 1)), 0o644); err != nil {
			return err
		}
	}
	if out, err := b.cmd("setup", "--config", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("setup: %v\n%s", err, out)
	}
	d := b.cmd("run", "--config", cfg)
	if err := d.Start(); err != nil {
		return err
	}
	if _, err := b.pg.Psql(ctx, db, `UPDATE events SET author_id = author_id % 500 + 1 WHERE id % 10 = 0;
		DELETE FROM events WHERE id % 20 = 1`); err != nil {
		d.Process.Kill()
		return err
	}
	marker, err := b.pg.Psql(ctx, db, "INSERT INTO events (author_id, action) VALUES (424242, 1) RETURNING id")
	if err != nil {
		d.Process.Kill()
		return err
	}
	q := fmt.Sprintf("SELECT count() FROM %s.events_committed WHERE author_id = 424242 AND id = %s", db, marker)
	for t0 := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		var c uint64
		if err := b.chConn.QueryRow(ctx, q).Scan(&c); err == nil && c == 1 {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			d.Process.Kill()
			return fmt.Errorf("the changes did not arrive in 10 minutes")
		}
	}
	d.Process.Signal(syscall.SIGTERM)
	d.Wait()

	src, err := os.ReadFile("sql/clickhouse/queries.sql")
	if err != nil {
		return err
	}
	b.printf("\nreads of %d events sorted by (author_id, created_at, id), %s, 10%% moved, 5%% deleted; best of 5:\n", viewRows, design)
	b.printf("%-64s %10s %12s %7s\n", "query", "live ms", "committed ms", "ratio")
	n := 0
	for _, stmt := range strings.Split(string(src), ";") {
		var lines []string
		var title string
		inBlock := false
		for _, l := range strings.Split(stmt, "\n") {
			t := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(t, "--"):
				if !inBlock {
					title = strings.TrimSpace(strings.TrimPrefix(t, "--"))
				}
				inBlock = true
			default:
				inBlock = false
				lines = append(lines, l)
			}
		}
		query := strings.TrimSpace(strings.Join(lines, "\n"))
		if query == "" {
			continue
		}
		n++
		query = strings.ReplaceAll(strings.ReplaceAll(query, "analytics.", db+"."), "'replicator_events'", "'repl_"+db+"'")
		live, err := b.bestOf(ctx, query, 5)
		if err != nil {
			return fmt.Errorf("query %d: %w", n, err)
		}
		form := "argMax form"
		if strings.Contains(query, ".events_live") {
			form = "live view"
		} else if strings.Contains(query, ".events_committed") {
			form = "committed view"
		}
		label := fmt.Sprintf("%d (%s) %s", n, form, title)
		if len(label) > 64 {
			label = label[:61] + "..."
		}
		if form != "live view" {
			b.printf("%-64s %10.1f\n", label, ms(live))
			continue
		}
		committed, err := b.bestOf(ctx, strings.ReplaceAll(query, ".events_live", ".events_committed"), 5)
		if err != nil {
			return fmt.Errorf("query %d on the committed view: %w", n, err)
		}
		b.printf("%-64s %10.1f %12.1f %7.2f\n", label, ms(live), ms(committed), committed.Seconds()/live.Seconds())
	}
	return nil
}

// bestOf runs query runs times and returns the shortest time to read all its rows.
func (b *bench) bestOf(ctx context.Context, query string, runs int) (time.Duration, error) {
	best := time.Duration(1<<63 - 1)
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		rows, err := b.chConn.Query(ctx, query)
		if err != nil {
			return 0, err
		}
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return 0, err
		}
		best = min(best, time.Since(t0))
	}
	return best, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

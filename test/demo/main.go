// Command demo shows replicator end to end on private servers: it starts
// Postgres and ClickHouse in a temp dir, creates public.events with some
// rows, runs `replicator setup` and `replicator run` under a live workload,
// prints `replicator status` and a ClickHouse query, and stops everything.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/replicator/replicator/test/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	binary := flag.String("binary", "bin/replicator", "replicator binary")
	seconds := flag.Int("seconds", 15, "how long the live workload runs")
	flag.Parse()
	bin, err := filepath.Abs(*binary)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("starting private PostgreSQL 15 (wal_level=logical) and ClickHouse")
	pg, err := harness.StartPostgres(ctx, harness.Options{})
	if err != nil {
		return err
	}
	defer pg.Close()
	ch, err := harness.StartClickHouse(ctx, harness.Options{})
	if err != nil {
		return err
	}
	defer ch.Close()
	fmt.Printf("postgres on 127.0.0.1:%d, clickhouse native protocol on %s\n", pg.Port, ch.Addr())

	step("creating public.events with 50,000 rows")
	if _, err := pg.Psql(ctx, "postgres", eventsDDL+`;
		INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint, created_at)
		SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE g % 1000 END, g % 500 + 1, NULLIF(g % 5, 0) * g, g % 10,
		       (ARRAY['Issue', 'MergeRequest', 'Note', NULL])[g % 4 + 1], CASE WHEN g % 3 = 0 THEN g % 77 END,
		       CASE WHEN g % 4 = 0 THEN decode(md5(g::text), 'hex') END, now() - (g || ' minutes')::interval
		FROM generate_series(1, 50000) g`); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "replicator-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src, err := os.ReadFile("config.example.hcl")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "replicator.hcl")
	if err := os.WriteFile(cfgPath, src, 0o644); err != nil {
		return err
	}
	// The example config is used as is; the private servers' addresses come
	// from the environment overrides.
	env := append(os.Environ(),
		"REPLICATOR_POSTGRES_DSN="+pg.DSN("postgres"),
		"REPLICATOR_CLICKHOUSE_ADDR="+ch.Addr())

	step("replicator setup --config config.example.hcl")
	if err := command(ctx, env, bin, "setup", "--config", cfgPath).Run(); err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	step("replicator run --config config.example.hcl (in the background)")
	daemon := command(ctx, env, bin, "run", "--config", cfgPath)
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()

	step(fmt.Sprintf("live workload for %ds: inserts, fingerprint updates, deletes", *seconds))
	deadline := time.Now().Add(time.Duration(*seconds) * time.Second)
	for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		if _, err := pg.Psql(ctx, "postgres", fmt.Sprintf(`
			INSERT INTO events (project_id, author_id, action, target_type, fingerprint)
			  SELECT g %% 100, g %% 50 + 1, 1, 'Issue', decode(md5(random()::text), 'hex') FROM generate_series(1, 500) g;
			UPDATE events SET fingerprint = decode(md5(random()::text), 'hex'), updated_at = now() WHERE id %% 97 = %d;
			DELETE FROM events WHERE author_id = %d AND id %% 10 = 0;`, i%97, i%50+1)); err != nil {
			return err
		}
		if i%10 == 0 {
			fmt.Println()
			command(ctx, env, bin, "status", "--config", cfgPath).Run()
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)

	step("replicator status (caught up)")
	command(ctx, env, bin, "status", "--config", cfgPath).Run()

	step("a few lines of the daemon's /metrics (127.0.0.1:9721)")
	if resp, err := http.Get("http://127.0.0.1:9721/metrics"); err == nil {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "replicator_changes_total") || strings.HasPrefix(l, "replicator_lag_") ||
				strings.HasPrefix(l, "replicator_flushes_total") || strings.HasPrefix(l, "replicator_transactions_total") {
				fmt.Println(l)
			}
		}
		resp.Body.Close()
	} else {
		fmt.Println("metrics unavailable:", err)
	}

	step("ClickHouse: live rows per target_type, from the events_live view")
	out, err := ch.Query(ctx, "SELECT target_type, count() AS events, uniqExact(author_id) AS authors FROM analytics.events_live GROUP BY target_type ORDER BY target_type FORMAT PrettyCompactNoEscapes")
	if err != nil {
		return err
	}
	fmt.Println(out)
	pgCount, err := pg.Psql(ctx, "postgres", "SELECT count(*) FROM events")
	if err != nil {
		return err
	}
	chCount, err := ch.Query(ctx, "SELECT count() FROM analytics.events_live")
	if err != nil {
		return err
	}
	fmt.Printf("rows in Postgres: %s, live rows in ClickHouse: %s\n", pgCount, chCount)

	step("stopping the daemon (SIGTERM) and the servers")
	return nil
}

func command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	return cmd
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

const eventsDDL = `CREATE TABLE events (
  id          bigserial PRIMARY KEY,
  project_id  integer,
  author_id   integer NOT NULL,
  target_id   integer,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  action      smallint NOT NULL,
  target_type varchar,
  group_id    bigint,
  fingerprint bytea
)`

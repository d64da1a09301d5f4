package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// visibleFigures are the figures of one run of the commit-to-visible
// measure.
type visibleFigures struct {
	// run is the transaction's time, visible the time from its commit until
	// its last row is in ClickHouse, drain pg_recvlogical's time.
	run, visible, drain time.Duration
	rows                uint64 // events in ClickHouse
	cpu                 float64
	rss                 int64 // bytes
	// arrival, when arrived, is the time from the commit until the
	// streamed commit reached the daemon.
	arrival time.Duration
	arrived bool
	// own is ClickHouse's own time to write the same rows (INSERT ...
	// SELECT into a table of the same definition): the floor under the
	// daemon's writing after the commit arrived.
	own time.Duration
}

// visible measures the commit-to-visible time of one 1,000,000-row
// transaction with the daemon running and caught up (Postgres streams the
// transaction while it runs), against pg_recvlogical (protocol 1) draining
// the same WAL from a slot made before the transaction: the time any
// client of a protocol that sends a transaction after its commit needs. It
// runs b.runs times, each in a new database, and prints the medians.
func (b *bench) visible(ctx context.Context, streaming bool) error {
	runs, err := repeat(b, "commit to visible, "+visibleMode(streaming), func() (visibleFigures, error) {
		return b.visibleRun(ctx, streaming)
	})
	if err != nil {
		return err
	}
	b.printVisible(streaming, runs)
	return nil
}

// visibleMode names the protocol of the daemon's stream.
func visibleMode(streaming bool) string {
	if streaming {
		return "streaming (protocol 2)"
	}
	return "stream.enabled = false (protocol 1)"
}

// visibleRun is one run of visible in a new database.
func (b *bench) visibleRun(ctx context.Context, streaming bool) (visibleFigures, error) {
	var f visibleFigures
	db, cfg, err := b.prepareVisible(ctx, streaming)
	if err != nil {
		return f, err
	}
	d := b.cmd("run", "--config", cfg)
	logf, _ := os.Create(filepath.Join(b.dir, db+".log"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return f, err
	}
	exited := make(chan struct{})
	go func() { d.Wait(); close(exited) }()
	stopped := false
	stop := func() {
		if !stopped {
			d.Process.Signal(syscall.SIGTERM)
			<-exited
			stopped = true
		}
	}
	defer stop()
	time.Sleep(2 * time.Second)

	// The transaction ends with a marker row; it is visible when the marker is.
	t0 := time.Now()
	if _, err := b.pg.Psql(ctx, db, `BEGIN;
		INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint)
			SELECT g % 1000, g % 500 + 1, g, g % 10, 'Issue', NULL, decode(md5(g::text), 'hex') FROM generate_series(1, 999999) g;
		INSERT INTO events (author_id, action) VALUES (434343, 1);
		COMMIT`); err != nil {
		return f, err
	}
	committed := time.Now()
	f.run = committed.Sub(t0)
	q := fmt.Sprintf("SELECT count() FROM %s.events WHERE author_id = 434343", db)
	if err := b.waitVisible(ctx, q, exited, logf.Name(), committed, 10*time.Minute, 10*time.Millisecond); err != nil {
		return f, fmt.Errorf("the transaction: %w", err)
	}
	f.visible = time.Since(committed)
	if err := b.chConn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.events", db)).Scan(&f.rows); err != nil {
		return f, err
	}
	stop()
	f.rss = d.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	f.cpu = (d.ProcessState.UserTime() + d.ProcessState.SystemTime()).Seconds()
	if f.own, err = b.chOwnWrite(ctx, db, "events"); err != nil {
		return f, err
	}
	end, err := b.pg.Psql(ctx, db, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return f, err
	}
	if f.drain, err = b.drain(ctx, db, "baseline_"+db, end); err != nil {
		return f, err
	}
	if at, ok := commitReceived(logf.Name()); ok && streaming {
		f.arrival, f.arrived = at.Sub(committed), true
	}
	_, err = b.pg.Psql(ctx, db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
	return f, err
}

// prepareVisible creates a database with an empty events table, sets the
// replication up with the daemon's debug log (which says when a streamed
// transaction's commit arrived), streaming or not, and creates the
// baseline slot. It returns the database and the daemon's config.
func (b *bench) prepareVisible(ctx context.Context, streaming bool) (string, string, error) {
	db := fmt.Sprintf("bench_visible_%d", time.Now().UnixNano()%1e9)
	if _, err := b.pg.Psql(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return db, "", err
	}
	if _, err := b.pg.Psql(ctx, db, eventsDDL); err != nil {
		return db, "", err
	}
	extra := ""
	if !streaming {
		extra = "stream {\n  enabled = false\n}\n"
	}
	cfg, err := b.config(db, extra)
	if err != nil {
		return db, cfg, err
	}
	src, err := os.ReadFile(cfg)
	if err != nil {
		return db, cfg, err
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(src), `level = "warn"`, `level = "debug"`, 1)), 0o644); err != nil {
		return db, cfg, err
	}
	if out, err := b.cmd("setup", "--config", cfg).CombinedOutput(); err != nil {
		return db, cfg, fmt.Errorf("setup: %v\n%s", err, out)
	}
	_, err = b.pg.Psql(ctx, db, "SELECT pg_create_logical_replication_slot('baseline_"+db+"', 'pgoutput')")
	return db, cfg, err
}

// printVisible prints the medians of visible's runs: the transaction's
// time, the time until it was visible, the rows, pg_recvlogical's time,
// their ratio with its range, the daemon's CPU and peak RSS, and, when
// streaming, when the commit reached the daemon.
func (b *bench) printVisible(streaming bool, runs []visibleFigures) {
	secs := func(f func(visibleFigures) time.Duration) float64 {
		return over(runs, func(r visibleFigures) float64 { return f(r).Seconds() }).med
	}
	ratio := over(runs, func(r visibleFigures) float64 { return r.visible.Seconds() / r.drain.Seconds() })
	b.printf("\ncommit to visible, one 1,000,000-row transaction, daemon caught up, %s:\n", visibleMode(streaming))
	b.printf("  transaction ran %.2fs; visible %.2fs after its commit (%s rows); pg_recvlogical (protocol 1) drains its WAL in %.2fs: ratio %s; "+
		"CPU %.1fs, peak RSS %d MiB%s\n", secs(func(r visibleFigures) time.Duration { return r.run }),
		secs(func(r visibleFigures) time.Duration { return r.visible }),
		count(over(runs, func(r visibleFigures) float64 { return float64(r.rows) })),
		secs(func(r visibleFigures) time.Duration { return r.drain }), ratio.text("%.2f"),
		over(runs, func(r visibleFigures) float64 { return r.cpu }).med,
		mib(over(runs, func(r visibleFigures) float64 { return float64(r.rss) }).med), arrivalText(runs))
}

// arrivalText says when the streamed commit reached the daemon and how
// long writing took after that, medians of the runs whose log said so.
func arrivalText(runs []visibleFigures) string {
	var arrived []visibleFigures
	for _, r := range runs {
		if r.arrived {
			arrived = append(arrived, r)
		}
	}
	if len(arrived) == 0 {
		return ""
	}
	at := over(arrived, func(r visibleFigures) float64 { return r.arrival.Seconds() }).med
	writing := over(arrived, func(r visibleFigures) float64 { return (r.visible - r.arrival).Seconds() }).med
	own := over(arrived, func(r visibleFigures) float64 { return r.own.Seconds() }).med
	return fmt.Sprintf("; its commit reached the daemon %.2fs after the commit (Postgres decoding the rest), so writing took %.2fs%s; "+
		"ClickHouse's own INSERT ... SELECT of the same rows took %.2fs",
		at, writing, ofRuns(len(arrived), len(runs)), own)
}

// chOwnWrite times ClickHouse's own write of every row of a table into a
// new table of the same definition, which it then drops.
func (b *bench) chOwnWrite(ctx context.Context, db, table string) (time.Duration, error) {
	if err := b.chConn.Exec(ctx, fmt.Sprintf("CREATE TABLE %[1]s.%[2]s_ref AS %[1]s.%[2]s", db, table)); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := b.chConn.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s.%[2]s_ref SELECT * FROM %[1]s.%[2]s", db, table)); err != nil {
		return 0, err
	}
	own := time.Since(t0)
	return own, b.chConn.Exec(ctx, fmt.Sprintf("DROP TABLE %s.%s_ref", db, table))
}

// count renders a count that should be the same in every run: the count,
// or its least and greatest when the runs differ.
func count(s spread) string {
	if s.min == s.max {
		return fmt.Sprintf("%.0f", s.min)
	}
	return fmt.Sprintf("%.0f–%.0f", s.min, s.max)
}

// commitReceived returns when the daemon's log says the streamed
// transaction's commit arrived (the last such line).
func commitReceived(path string) (time.Time, bool) {
	src, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	var at time.Time
	found := false
	for _, l := range strings.Split(string(src), "\n") {
		if !strings.Contains(l, "streamed transaction commit received") {
			continue
		}
		if t, err := time.Parse("2006-01-02T15:04:05.000Z0700", strings.Fields(l)[0]); err == nil {
			at, found = t, true
		}
	}
	return at, found
}

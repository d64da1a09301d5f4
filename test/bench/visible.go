package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// visible measures the commit-to-visible time of one 1,000,000-row
// transaction with the daemon running and caught up (Postgres streams the
// transaction while it runs), against pg_recvlogical (protocol 1) draining
// the same WAL from a slot made before the transaction: the time any
// client of a protocol that sends a transaction after its commit needs.
func (b *bench) visible(ctx context.Context, streaming bool) error {
	db := fmt.Sprintf("bench_visible_%d", time.Now().UnixNano()%1e9)
	if _, err := b.pg.Psql(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return err
	}
	if _, err := b.pg.Psql(ctx, db, eventsDDL); err != nil {
		return err
	}
	extra := ""
	if !streaming {
		extra = "stream {\n  enabled = false\n}\n"
	}
	cfg, err := b.config(db, extra)
	if err != nil {
		return err
	}
	// The debug log says when the streamed transaction's commit arrived.
	src, err := os.ReadFile(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(src), `level = "warn"`, `level = "debug"`, 1)), 0o644); err != nil {
		return err
	}
	if out, err := b.cmd("setup", "--config", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("setup: %v\n%s", err, out)
	}
	if _, err := b.pg.Psql(ctx, db, "SELECT pg_create_logical_replication_slot('baseline_"+db+"', 'pgoutput')"); err != nil {
		return err
	}
	d := b.cmd("run", "--config", cfg)
	logf, _ := os.Create(filepath.Join(b.dir, db+".log"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return err
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
		return err
	}
	committed := time.Now()
	run := committed.Sub(t0)
	q := fmt.Sprintf("SELECT count() FROM %s.events WHERE author_id = 434343", db)
	if err := b.waitVisible(ctx, q, exited, logf.Name(), committed, 10*time.Minute, 10*time.Millisecond); err != nil {
		return fmt.Errorf("the transaction: %w", err)
	}
	visible := time.Since(committed)
	var rows uint64
	if err := b.chConn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.events", db)).Scan(&rows); err != nil {
		return err
	}
	stop()
	ru := d.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := (d.ProcessState.UserTime() + d.ProcessState.SystemTime()).Seconds()
	end, err := b.pg.Psql(ctx, db, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return err
	}
	t1 := time.Now()
	rl := exec.CommandContext(ctx, "pg_recvlogical", "-d", b.pg.DSN(db), "-S", "baseline_"+db, "--start",
		"-o", "proto_version=1", "-o", "publication_names=pub_"+db, "-E", strings.TrimSpace(end), "-f", "/dev/null")
	if out, err := rl.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_recvlogical: %v\n%s", err, out)
	}
	drain := time.Since(t1)
	mode := "streaming (protocol 2)"
	arrival := ""
	if !streaming {
		mode = "stream.enabled = false (protocol 1)"
	} else if at, ok := commitReceived(logf.Name()); ok {
		arrival = fmt.Sprintf("; its commit reached the daemon %.2fs after the commit (Postgres decoding the rest), so writing took %.2fs",
			at.Sub(committed).Seconds(), visible.Seconds()-at.Sub(committed).Seconds())
	}
	b.printf("\ncommit to visible, one 1,000,000-row transaction, daemon caught up, %s:\n", mode)
	b.printf("  transaction ran %.2fs; visible %.2fs after its commit (%d rows); pg_recvlogical (protocol 1) drains its WAL in %.2fs: ratio %.2f; "+
		"CPU %.1fs, peak RSS %d MiB%s\n", run.Seconds(), visible.Seconds(), rows, drain.Seconds(), visible.Seconds()/drain.Seconds(), cpu, ru.Maxrss/1024, arrival)
	_, err = b.pg.Psql(ctx, db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
	return err
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

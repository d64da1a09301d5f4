// Command bench measures replicator against the source's own limit, in one
// run, on private Postgres and ClickHouse servers.
//
// For each workload it lets the WAL accumulate with the daemon stopped, then
// measures (a) pg_recvlogical draining the same WAL with pgoutput from an
// identical slot to /dev/null, and (b) replicator from the start of its slot
// until the workload's last change is visible in ClickHouse. It prints rows/s
// of both, the ratio (b)/(a), and the replicator's peak RSS and CPU seconds
// per million changes. A sustained-load run then samples commit-to-visible
// lag. An initial-load run compares `replicator setup` copying a table with
// COPY TO STDOUT of the same table, and times a setup restarted after a
// kill. Results go to stdout and to a file. --only limits the run to some
// workloads (and "load", "lag"), by their short names. --runs N runs each
// workload N times and prints the median of each figure, ratios and lags
// with their range.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/test/harness"
)

type bench struct {
	bin    string
	dir    string
	pg     *harness.Postgres
	ch     *harness.ClickHouse
	chConn driver.Conn
	// chAddr is the ClickHouse address the daemon dials: the server's, or
	// the delaying proxy's (--ch-delay).
	chAddr string
	out    io.Writer
	// runs is how many times each workload runs; its figures are the
	// medians of the runs.
	runs int
}

func main() {
	binary := flag.String("binary", "bin/replicator", "replicator binary")
	output := flag.String("out", "bench-results/latest.txt", "results file")
	lagSeconds := flag.Int("lag-seconds", 60, "duration of the sustained-load lag run")
	lagRate := flag.Int("lag-rate", 1000, "target transactions/s of the sustained-load run")
	keep := flag.Bool("keep", false, "keep the working directory (daemon logs and configs) and print its path")
	loadRows := flag.Int("load-rows", 5000000, "rows of the events table that the initial-load run copies")
	chDelay := flag.Duration("ch-delay", 0, "delay each direction of the daemon's ClickHouse connections by this much "+
		"(a proxy; e.g. 10ms: ClickHouse 20 ms away)")
	runs := flag.Int("runs", 1, "run each workload this many times and print the median of each figure, with the ratio's range")
	only := flag.String("only", "", "comma-separated short names of the workloads to run ("+strings.Join(workloadKeys(), ", ")+
		", load, views, visible, lag); empty: all")
	flag.Parse()
	selected, err := selection(*only)
	if err == nil && *runs < 1 {
		err = fmt.Errorf("--runs %d: at least 1", *runs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(*binary, *output, *lagSeconds, *lagRate, *loadRows, *runs, *chDelay, selected, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// workloadKeys returns the short names of the workloads, for --only.
func workloadKeys() []string {
	var keys []string
	for _, w := range workloads() {
		keys = append(keys, w.key)
	}
	return keys
}

// selection parses --only: nil runs everything.
func selection(only string) (map[string]bool, error) {
	if strings.TrimSpace(only) == "" {
		return nil, nil
	}
	known := map[string]bool{"load": true, "lag": true, "views": true, "visible": true}
	for _, k := range workloadKeys() {
		known[k] = true
	}
	sel := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		k = strings.TrimSpace(k)
		if !known[k] {
			return nil, fmt.Errorf("--only: unknown workload %q (known: %s, load, views, visible, lag)", k, strings.Join(workloadKeys(), ", "))
		}
		sel[k] = true
	}
	return sel, nil
}

func run(binary, output string, lagSeconds, lagRate, loadRows, runs int, chDelay time.Duration, selected map[string]bool, keep bool) error {
	ctx := context.Background()
	bin, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(output), 0o755); err != nil {
		return err
	}
	f, err := os.Create(output)
	if err != nil {
		return err
	}
	defer f.Close()
	dir, err := os.MkdirTemp("", "replicator-bench-")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Fprintln(os.Stderr, "bench: kept daemon logs and configs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	// Durable settings (fsync on) as in production; the harness's Fast mode is off.
	pg, err := harness.StartPostgres(ctx, harness.Options{PGSettings: map[string]string{"max_wal_size": "4GB", "shared_buffers": "512MB"}})
	if err != nil {
		return err
	}
	defer pg.Close()
	ch, err := harness.StartClickHouse(ctx, harness.Options{})
	if err != nil {
		return err
	}
	defer ch.Close()
	chConn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, Protocol: clickhouse.Native})
	if err != nil {
		return err
	}
	b := &bench{bin: bin, dir: dir, pg: pg, ch: ch, chConn: chConn, chAddr: ch.Addr(), out: io.MultiWriter(os.Stdout, f), runs: runs}
	b.printf("replicator benchmark, %s, %d cores; Postgres 15 and ClickHouse %s on this machine\n",
		time.Now().UTC().Format(time.RFC3339), numCPU(), chVersion(ctx, chConn))
	if runs > 1 {
		b.printf("each workload ran %d times: every figure is the median of its runs, ratios and lags with their range (least–greatest)\n", runs)
	}
	if chDelay > 0 {
		if b.chAddr, err = delayProxy(ch.Addr(), chDelay); err != nil {
			return err
		}
		b.printf("the daemon reaches ClickHouse through a proxy that delays each direction by %s\n", chDelay)
	}
	header := false
	for _, w := range workloads() {
		if selected != nil && !selected[w.key] {
			continue
		}
		if !header {
			b.printf("%-36s %12s %12s %*s %10s %11s %10s\n", "workload", "source rows/s", "repl rows/s", b.ratioWidth(), "ratio",
				"changes", "CPU s/1M", "peak RSS")
			header = true
		}
		if err := b.workload(ctx, w); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	if selected == nil || selected["load"] {
		if err := b.load(ctx, loadRows); err != nil {
			return fmt.Errorf("initial load: %w", err)
		}
	}
	if selected == nil || selected["visible"] {
		for _, streaming := range []bool{true, false} {
			if err := b.visible(ctx, streaming); err != nil {
				return fmt.Errorf("commit to visible: %w", err)
			}
		}
	}
	if selected == nil || selected["views"] {
		if err := b.views(ctx); err != nil {
			return fmt.Errorf("views: %w", err)
		}
	}
	if selected != nil && !selected["lag"] {
		return nil
	}
	return b.lag(ctx, lagSeconds, lagRate)
}

func (b *bench) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

// repeat calls measure b.runs times and returns the figures of each run.
// With more than one run it says on stderr which run starts.
func repeat[T any](b *bench, name string, measure func() (T, error)) ([]T, error) {
	runs := make([]T, 0, b.runs)
	for i := range b.runs {
		if b.runs > 1 {
			fmt.Fprintf(os.Stderr, "bench: %s, run %d of %d\n", name, i+1, b.runs)
		}
		f, err := measure()
		if err != nil {
			if b.runs > 1 {
				err = fmt.Errorf("run %d: %w", i+1, err)
			}
			return nil, err
		}
		runs = append(runs, f)
	}
	return runs, nil
}

type workload struct {
	key     string // short name, for --only
	name    string
	prefill int // events rows inserted before setup
	// docs, when not 0, is the number of rows of a docs table (body stored
	// out of line) inserted before setup, with bodies of docSize bytes; the
	// workload's changes and its marker are then those of docs.
	docs    int
	docSize int
	run     func(ctx context.Context, b *bench, db string) error
	// seedKeys sorts events by the seed's key, (author_id, created_at,
	// id), partitioned by month: deletes and updates find their rows'
	// old places.
	seedKeys bool
	// note, when set, is printed after the peak RSS (in bytes).
	note func(peakRSS int64) string
}

// defaultMaxBytes is the daemon's default batch.max_bytes, which the bench
// config keeps.
const defaultMaxBytes = 64 << 20

// rssBound is the peak RSS docs/benchmark.md states for batch.max_bytes: about
// 2 × max_bytes + 64 MiB (the buffer, its copy in flight to ClickHouse, and
// the rest).
const rssBound = 2*defaultMaxBytes + 64<<20

func workloads() []workload {
	return []workload{
		{key: "insert-1m", name: "1: one 1,000,000-row transaction", run: func(ctx context.Context, b *bench, db string) error {
			_, err := b.pg.Psql(ctx, db, `INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint)
				SELECT g % 1000, g % 500 + 1, g, g % 10, 'Issue', NULL, decode(md5(g::text), 'hex') FROM generate_series(1, 1000000) g`)
			return err
		}},
		{key: "single-row", name: "2: 200,000 single-row txns, 4 clients", run: func(ctx context.Context, b *bench, db string) error {
			return b.pgbench(ctx, db, []string{"-c", "4", "-j", "2", "-t", "50000"}, map[string]string{
				"insert.sql": `\set a random(1, 500)
INSERT INTO events (project_id, author_id, action, target_type, fingerprint) VALUES (:a, :a, 1, 'Issue', '\x0102');`,
			})
		}},
		{key: "mix", name: "3: mix 50% ins 35% upd 15% del", prefill: 200000, run: mixWorkload},
		// The mix on the seed's design: each update and delete, which
		// carries only the id, finds the row's place (author and time) in
		// the buffer or in ClickHouse.
		{key: "mix-seed", name: "3b: mix, sorted by author and time", prefill: 200000, seedKeys: true,
			run: func(ctx context.Context, b *bench, db string) error {
				return mixWorkload(ctx, b, db)
			}},
		// Every change of the update lacks body (unchanged TOAST): the daemon
		// takes it from the image stored in ClickHouse by the copy.
		{key: "toast-update", name: "4: 100k-row update, TOAST unchanged", docs: 100000, docSize: 4096,
			run: func(ctx context.Context, b *bench, db string) error {
				_, err := b.pg.Psql(ctx, db, "UPDATE docs SET flag = flag + 1")
				return err
			}},
		// The same update of rows whose 32-byte body is stored inline: every
		// change carries the whole row, nothing is looked up.
		{key: "plain-update", name: "5: 100k-row update, no TOAST", docs: 100000, docSize: 32,
			run: func(ctx context.Context, b *bench, db string) error {
				_, err := b.pg.Psql(ctx, db, "UPDATE docs SET flag = flag + 1")
				return err
			}},
		// The same rows of 4 KB with every body rewritten: an ordinary
		// update of rows of that size, which carries the body and writes as
		// much to ClickHouse as workload 4, without any lookup.
		{key: "body-update", name: "5b: 100k-row update, 4 KB body sent", docs: 100000, docSize: 4096,
			run: func(ctx context.Context, b *bench, db string) error {
				_, err := b.pg.Psql(ctx, db, "UPDATE docs SET flag = flag + 1, body = "+docBody("id", "b", 4096))
				return err
			}},
		// One transaction of 2,000 new bodies of 100 KiB (200 MB) with the
		// default batch.max_bytes: peak RSS against its bound.
		{key: "big-rows", name: "6: 2,000 × 100 KB transaction", docs: 2000, docSize: 4096,
			run: func(ctx context.Context, b *bench, db string) error {
				_, err := b.pg.Psql(ctx, db, "UPDATE docs SET body = "+docBody("id", "x", 3200*32))
				return err
			},
			note: func(peakRSS int64) string {
				verdict := "within"
				if peakRSS > rssBound {
					verdict = "ABOVE"
				}
				return fmt.Sprintf("  %s bound 2×max_bytes+64 MiB = %d MiB", verdict, rssBound>>20)
			}},
	}
}

// mixWorkload is 4 clients that insert (50%), update (35%) and delete
// (15%) 1 to 50 events per transaction.
func mixWorkload(ctx context.Context, b *bench, db string) error {
	return b.pgbench(ctx, db, []string{"-c", "4", "-j", "2", "-t", "2000"}, map[string]string{
		"insert.sql@50": `\set n random(1, 50)
INSERT INTO events (project_id, author_id, action, target_type, fingerprint) SELECT g, :n, 1, 'Issue', '\x0102' FROM generate_series(1, :n) g;`,
		"update.sql@35": `\set n random(1, 50)
\set s random(1, 200000)
UPDATE events SET fingerprint = '\x0304', action = 2, updated_at = now() WHERE id BETWEEN :s AND :s + :n - 1;`,
		"delete.sql@15": `\set n random(1, 50)
\set s random(1, 200000)
DELETE FROM events WHERE id BETWEEN :s AND :s + :n - 1;`,
	})
}

// seedKeys is the events table block's keys for the seed's design.
const seedKeys = `order_by     = ["author_id", "created_at", "id"]
  partition_by = "toYYYYMM(created_at)"`

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

// docBody is an SQL expression of a body of about size bytes (at least 32)
// for the row whose id is the expression id, different for each salt.
func docBody(id, salt string, size int) string {
	return fmt.Sprintf("repeat(md5(%s::text || '%s'), %d)", id, salt, max(size/32, 1))
}

const eventsDDL = `CREATE TABLE events (
  id bigserial PRIMARY KEY, project_id integer, author_id integer NOT NULL, target_id integer,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  action smallint NOT NULL, target_type varchar, group_id bigint, fingerprint bytea)`

// workloadFigures are the figures of one run of a workload.
type workloadFigures struct {
	changes int64
	// source is the rate of the faster pg_recvlogical drain, repl the
	// daemon's, in rows/s.
	source, repl float64
	cpu          float64 // the daemon's CPU seconds
	rss          int64   // the daemon's peak RSS, in bytes
	// ref, for a docs workload, is ClickHouse's own write of the same rows.
	ref *refFigures
}

// refFigures are ClickHouse's INSERT ... SELECT of the rows that a docs
// workload wrote.
type refFigures struct {
	rate  float64 // rows/s
	ratio float64 // the INSERT ... SELECT's time over the daemon's
	rows  uint64
	bytes uint64 // row data written
}

// workload runs w b.runs times and prints the medians of its figures.
func (b *bench) workload(ctx context.Context, w workload) error {
	runs, err := repeat(b, w.name, func() (workloadFigures, error) { return b.workloadRun(ctx, w) })
	if err != nil {
		return err
	}
	b.printWorkload(w, runs)
	return nil
}

// workloadRun is one run of w in a new database: the WAL of the workload
// accumulates with the daemon stopped, then pg_recvlogical drains it from
// one baseline slot, the daemon replicates it until its marker is visible,
// and pg_recvlogical drains it again from the other baseline slot.
func (b *bench) workloadRun(ctx context.Context, w workload) (workloadFigures, error) {
	var f workloadFigures
	p, err := b.prepareWorkload(ctx, w)
	if err != nil {
		return f, err
	}
	db := p.db
	before, err := b.changes(ctx, db, p.table)
	if err != nil {
		return f, err
	}
	if err := w.run(ctx, b, db); err != nil {
		return f, err
	}
	marker, err := b.pg.Psql(ctx, db, p.markerSQL)
	if err != nil {
		return f, err
	}
	after, err := b.changes(ctx, db, p.table)
	if err != nil {
		return f, err
	}
	f.changes = after - before
	end, err := b.pg.Psql(ctx, db, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return f, err
	}

	// (a) the source limit.
	source, err := b.drain(ctx, db, "baseline_a_"+db, end)
	if err != nil {
		return f, err
	}

	// (b) the replicator, from slot start to the marker visible in ClickHouse.
	q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE id = %s AND _deleted = 0", db, p.table, marker)
	repl, ps, err := b.replicate(ctx, p.cfg, db, q)
	if err != nil {
		return f, err
	}
	if again, err := b.drain(ctx, db, "baseline_b_"+db, end); err != nil {
		return f, err
	} else if again < source {
		source = again // the faster of the two drains is the limit
	}
	f.source, f.repl = float64(f.changes)/source.Seconds(), float64(f.changes)/repl.Seconds()
	f.cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	f.rss = ps.SysUsage().(*syscall.Rusage).Maxrss * 1024
	if w.docs > 0 {
		if err := b.checkDocs(ctx, db); err != nil {
			return f, err
		}
		ref, err := b.chReference(ctx, db, repl)
		if err != nil {
			return f, err
		}
		f.ref = &ref
	}
	_, err = b.pg.Psql(ctx, db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
	return f, err
}

// preparedWorkload is a database made ready for a workload: its table,
// the SQL that inserts the marker row, and the daemon's config.
type preparedWorkload struct {
	db, table, markerSQL, cfg string
}

// prepareWorkload creates a database with the tables and rows of w, sets
// the replication up with `replicator setup`, and creates two baseline
// slots.
func (b *bench) prepareWorkload(ctx context.Context, w workload) (preparedWorkload, error) {
	p := preparedWorkload{db: fmt.Sprintf("bench_%d", time.Now().UnixNano()%1e9), table: "events",
		markerSQL: "INSERT INTO events (author_id, action) VALUES (424242, 1) RETURNING id"}
	db := p.db
	if _, err := b.pg.Psql(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return p, err
	}
	init := eventsDDL
	if w.prefill > 0 {
		init += fmt.Sprintf(`; INSERT INTO events (project_id, author_id, action, target_type) SELECT g, g %% 500 + 1, 1, 'Issue' FROM generate_series(1, %d) g`, w.prefill)
	}
	extra, vacuum := "", "VACUUM ANALYZE events"
	if w.docs > 0 {
		init += fmt.Sprintf("; %s; INSERT INTO docs (id, body) SELECT g, %s FROM generate_series(1, %d) g",
			docsDDL, docBody("g", "v1", w.docSize), w.docs)
		p.table, extra, vacuum = "docs", docsConfig, vacuum+", docs"
		p.markerSQL = "INSERT INTO docs (id, body) VALUES (0, 'marker') RETURNING id"
	}
	if _, err := b.pg.Psql(ctx, db, init); err != nil {
		return p, err
	}
	if _, err := b.pg.Psql(ctx, db, vacuum); err != nil {
		return p, err
	}
	cfg, err := b.config(db, extra)
	if err != nil {
		return p, err
	}
	p.cfg = cfg
	if w.seedKeys {
		if err := b.seedKeys(cfg); err != nil {
			return p, err
		}
	}
	if out, err := b.cmd("setup", "--config", cfg).CombinedOutput(); err != nil {
		return p, fmt.Errorf("setup: %v\n%s", err, out)
	}
	// Two identical baseline slots: one drained before the replicator runs,
	// one after, so that neither side profits alone from a warm cache.
	for _, sl := range []string{"a", "b"} {
		if _, err := b.pg.Psql(ctx, db, "SELECT pg_create_logical_replication_slot('baseline_"+sl+"_"+db+"', 'pgoutput')"); err != nil {
			return p, err
		}
	}
	return p, nil
}

// drain times pg_recvlogical (protocol 1) draining slot of db up to the
// WAL position end into /dev/null.
func (b *bench) drain(ctx context.Context, db, slot, end string) (time.Duration, error) {
	t0 := time.Now()
	rl := exec.CommandContext(ctx, "pg_recvlogical", "-d", b.pg.DSN(db), "-S", slot, "--start",
		"-o", "proto_version=1", "-o", "publication_names=pub_"+db, "-E", strings.TrimSpace(end), "-f", "/dev/null")
	if out, err := rl.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pg_recvlogical: %v\n%s", err, out)
	}
	return time.Since(t0), nil
}

// replicate runs the daemon with cfg until q counts one row, stops it, and
// returns the time from its start and its process state.
func (b *bench) replicate(ctx context.Context, cfg, db, q string) (time.Duration, *os.ProcessState, error) {
	t0 := time.Now()
	d := b.cmd("run", "--config", cfg)
	logf, _ := os.Create(filepath.Join(b.dir, db+".log"))
	defer logf.Close()
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return 0, nil, err
	}
	exited := make(chan struct{})
	go func() { d.Wait(); close(exited) }()
	if err := b.waitVisible(ctx, q, exited, logf.Name(), t0, 30*time.Minute, 20*time.Millisecond); err != nil {
		d.Process.Signal(syscall.SIGTERM)
		<-exited
		return 0, nil, fmt.Errorf("the workload: %w", err)
	}
	took := time.Since(t0)
	d.Process.Signal(syscall.SIGTERM)
	<-exited
	return took, d.ProcessState, nil
}

// ratioWidth is the width of the ratio column: wider when it shows the
// range of several runs.
func (b *bench) ratioWidth() int {
	if b.runs > 1 {
		return 26
	}
	return 9
}

// printWorkload prints the medians of the runs of w as a row of the table:
// rates, the ratio with its range, changes, the daemon's CPU seconds per
// million changes and its peak RSS; for a docs workload a second row, the
// ClickHouse reference.
func (b *bench) printWorkload(w workload, runs []workloadFigures) {
	rss := over(runs, func(f workloadFigures) float64 { return float64(f.rss) })
	note := ""
	if w.note != nil {
		// The bound holds only if it held in every run.
		note = w.note(int64(rss.max))
		if rss.n > 1 {
			note += fmt.Sprintf(" (largest of %d runs %d MiB)", rss.n, mib(rss.max))
		}
	}
	b.printf("%-36s %12.0f %12.0f %*s %10.0f %11.1f %7d MiB%s\n", w.name,
		over(runs, func(f workloadFigures) float64 { return f.source }).med,
		over(runs, func(f workloadFigures) float64 { return f.repl }).med,
		b.ratioWidth(), over(runs, func(f workloadFigures) float64 { return f.repl / f.source }).text("%.2f"),
		over(runs, func(f workloadFigures) float64 { return float64(f.changes) }).med,
		over(runs, func(f workloadFigures) float64 { return f.cpu / float64(f.changes) * 1e6 }).med,
		mib(rss.med), note)
	if runs[0].ref != nil {
		b.printReference(runs)
	}
}

// printReference prints the medians of the ClickHouse reference of a docs
// workload's runs: ClickHouse's rate, the daemon's, the ratio of their
// times with its range, the rows, the daemon's CPU seconds per GB of row
// data and the MB written.
func (b *bench) printReference(runs []workloadFigures) {
	b.printf("%-36s %12.0f %12.0f %*s %10.0f %11s  %.1f CPU s per GB of row data (%d MB written)\n",
		"  ClickHouse INSERT ... SELECT",
		over(runs, func(f workloadFigures) float64 { return f.ref.rate }).med,
		over(runs, func(f workloadFigures) float64 { return f.repl }).med,
		b.ratioWidth(), over(runs, func(f workloadFigures) float64 { return f.ref.ratio }).text("%.2f"),
		over(runs, func(f workloadFigures) float64 { return float64(f.ref.rows) }).med, "",
		over(runs, func(f workloadFigures) float64 { return f.cpu / (float64(f.ref.bytes) / 1e9) }).med,
		int64(over(runs, func(f workloadFigures) float64 { return float64(f.ref.bytes) }).med/1e6))
}

// waitVisible polls q until it counts one row. It fails when the daemon
// exits first (with the daemon's log) or limit after start.
func (b *bench) waitVisible(ctx context.Context, q string, exited <-chan struct{}, logPath string, start time.Time,
	limit, poll time.Duration) error {
	for {
		var c uint64
		if err := b.chConn.QueryRow(ctx, q).Scan(&c); err == nil && c == 1 {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("replicator exited before it was visible:\n%s", log)
		default:
		}
		if time.Since(start) > limit {
			return fmt.Errorf("not visible after %s", limit)
		}
		time.Sleep(poll)
	}
}

// checkDocs compares the live docs in ClickHouse with Postgres by count,
// flags and body lengths, so that a workload whose bodies were delivered
// wrong or empty fails rather than reports a rate.
func (b *bench) checkDocs(ctx context.Context, db string) error {
	want, err := b.pg.Psql(ctx, db, "SELECT count(*) || ' ' || coalesce(sum(flag), 0) || ' ' || coalesce(sum(length(body)), 0) FROM docs")
	if err != nil {
		return err
	}
	var rows, flags, length uint64
	q := fmt.Sprintf("SELECT count(), sum(toUInt64(flag)), sum(length(body)) FROM %s.docs_live", db)
	if err := b.chConn.QueryRow(ctx, q).Scan(&rows, &flags, &length); err != nil {
		return fmt.Errorf("read docs from ClickHouse: %w", err)
	}
	if got := fmt.Sprintf("%d %d %d", rows, flags, length); got != want {
		return fmt.Errorf("docs in ClickHouse differ from Postgres after delivery: rows, sum(flag), sum(length(body)) %s, want %s", got, want)
	}
	return nil
}

// chReference measures ClickHouse's own write rate for the rows the
// daemon wrote for a docs workload (every row the stream wrote has _seq >
// 0, the copy's 0): INSERT ... SELECT of the same rows into a table of the
// same definition, the fastest ClickHouse takes those bytes. It returns
// that rate, its time over the daemon's, repl, and the rows and bytes of
// row data written.
func (b *bench) chReference(ctx context.Context, db string, repl time.Duration) (refFigures, error) {
	var r refFigures
	q := fmt.Sprintf("SELECT count(), sum(length(body) + 8 + 1 + 8 + 1 + 8) FROM %s.docs WHERE _seq > 0", db)
	if err := b.chConn.QueryRow(ctx, q).Scan(&r.rows, &r.bytes); err != nil {
		return r, fmt.Errorf("read the written docs: %w", err)
	}
	if err := b.chConn.Exec(ctx, fmt.Sprintf("CREATE TABLE %[1]s.docs_ref AS %[1]s.docs", db)); err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := b.chConn.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s.docs_ref SELECT * FROM %[1]s.docs WHERE _seq > 0", db)); err != nil {
		return r, err
	}
	ref := time.Since(t0)
	r.rate, r.ratio = float64(r.rows)/ref.Seconds(), ref.Seconds()/repl.Seconds()
	return r, b.chConn.Exec(ctx, fmt.Sprintf("DROP TABLE %s.docs_ref", db))
}

// changes returns the row changes made to table so far.
func (b *bench) changes(ctx context.Context, db, table string) (int64, error) {
	out, err := b.pg.Psql(ctx, db, "SELECT pg_stat_force_next_flush(); SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = '"+table+"'")
	if err != nil {
		return 0, err
	}
	lines := strings.Fields(out)
	return strconv.ParseInt(lines[len(lines)-1], 10, 64)
}

func (b *bench) pgbench(ctx context.Context, db string, args []string, scripts map[string]string) error {
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		file, weight, _ := strings.Cut(name, "@")
		path := filepath.Join(b.dir, file)
		if err := os.WriteFile(path, []byte(scripts[name]+"\n"), 0o644); err != nil {
			return err
		}
		if weight != "" {
			path += "@" + weight
		}
		args = append(args, "-f", path)
	}
	args = append([]string{"-n", "-h", "127.0.0.1", "-p", strconv.Itoa(b.pg.Port), "-U", "postgres"}, args...)
	out, err := exec.CommandContext(ctx, "/usr/lib/postgresql/15/bin/pgbench", append(args, db)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	return nil
}

func (b *bench) config(db, extra string) (string, error) {
	return b.configAs(db, db, extra)
}

// configAs writes a config for the Postgres database db whose slot,
// publication and ClickHouse database are named after name, so that one
// Postgres database can be set up again from scratch under a new name.
func (b *bench) configAs(db, name, extra string) (string, error) {
	src := fmt.Sprintf(`postgres {
  dsn = %q
  slot = "repl_%s"
  publication = "pub_%s"
}
clickhouse {
  addr = [%q]
  database = %q
}
monitor {
  listen = ""
}
log {
  level = "warn"
}
table "public.events" {
  order_by = ["id"]
  column "id"          { type = "UInt64" }
  column "project_id"  { type = "UInt64" }
  column "group_id"    { type = "UInt64" }
  column "author_id"   { type = "UInt64" }
  column "target_id"   { type = "UInt64" }
  column "target_type" { type = "LowCardinality(String)" }
  column "action"      { type = "UInt8" }
  column "fingerprint" {
    type      = "UInt64"
    transform = "xxhash64"
  }
}
%s`, b.pg.DSN(db), name, name, b.chAddr, name, extra)
	path := filepath.Join(b.dir, name+".hcl")
	return path, os.WriteFile(path, []byte(src), 0o644)
}

// seedKeys makes the config at path sort events by the seed's key.
func (b *bench) seedKeys(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strings.Replace(string(src), `order_by = ["id"]`, seedKeys, 1)), 0o644)
}

func (b *bench) cmd(args ...string) *exec.Cmd {
	return exec.Command(b.bin, args...)
}

// loadRSSBound is the peak RSS that setup stays within while it copies.
const loadRSSBound = 256 << 20

// loadTarget is the setup ÷ COPY ratio that the initial load aims for.
const loadTarget = 0.66

// loadKillAt is the share of the full setup's wall time after which the
// resume scenario kills its first setup.
const loadKillAt = 0.6

// loadFigures are the figures of one run of the initial load.
type loadFigures struct {
	rows int64  // rows that COPY read
	size string // the table's size, as Postgres prints it
	// copy is the best COPY's time, copyPG the Postgres CPU it took.
	copy, copyPG time.Duration
	setup        setupRun
	// pg and ch are the servers' CPU during the setup.
	pg, ch time.Duration
	check  rowCheck
	resume resumeFigures
}

// resumeFigures are the figures of one run of the resume scenario.
type resumeFigures struct {
	killAt time.Duration
	// first is the setup killed at killAt (unless it finished before),
	// again the setup started after it.
	first, again setupRun
	check        rowCheck
}

// rowCheck is the rows that reached ClickHouse against Postgres'.
type rowCheck struct {
	got  uint64
	want int64
}

// load measures the initial copy of an events table of rows rows, b.runs
// times, each in a new database, and prints the medians. The reference is
// COPY TO STDOUT (binary) into io.Discard from this process, the rate at
// which Postgres reads and sends the table, best of two after a warm-up
// read so that both sides read a warm cache. Against it, `replicator
// setup` copies the table: its rows/s, peak RSS and CPU, the servers' CPU
// during the copy, and the rows that reached ClickHouse. The resume
// scenario then sets the same table up under a fresh slot and ClickHouse
// database, kills that setup with SIGKILL at loadKillAt of the full run's
// wall time, and times the setup started after the kill.
func (b *bench) load(ctx context.Context, rows int) error {
	runs, err := repeat(b, "initial load", func() (loadFigures, error) { return b.loadRun(ctx, rows) })
	if err != nil {
		return err
	}
	b.printLoad(runs)
	b.printResume(runs)
	return nil
}

// loadRun is one run of the initial load in a new database.
func (b *bench) loadRun(ctx context.Context, rows int) (loadFigures, error) {
	var f loadFigures
	db, err := b.fillLoad(ctx, rows)
	if err != nil {
		return f, err
	}
	if f.size, err = b.pg.Psql(ctx, db, "SELECT pg_size_pretty(pg_table_size('events'))"); err != nil {
		return f, err
	}
	servers, err := b.servers()
	if err != nil {
		return f, err
	}
	if f.rows, f.copy, f.copyPG, err = b.copyBest(ctx, db, servers); err != nil {
		return f, err
	}

	// The full setup, on a warm cache.
	cfg, err := b.config(db, "")
	if err != nil {
		return f, err
	}
	before, err := servers.cpu()
	if err != nil {
		return f, err
	}
	if f.setup, err = b.setup(cfg, db+".setup.log", 0); err != nil {
		return f, err
	}
	b.waitBackends(ctx, db)
	after, err := servers.cpu()
	if err != nil {
		return f, err
	}
	f.pg, f.ch = after.pg-before.pg, after.ch-before.ch
	f.check.want = f.rows
	if f.check.got, err = b.liveRows(ctx, db); err != nil {
		return f, err
	}
	if f.resume, err = b.resume(ctx, db, f.setup.wall, f.rows); err != nil {
		return f, err
	}
	_, err = b.pg.Psql(ctx, db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
	return f, err
}

// fillLoad creates a database with an events table of rows rows, vacuumed
// and checkpointed, and returns its name.
func (b *bench) fillLoad(ctx context.Context, rows int) (string, error) {
	db := fmt.Sprintf("bench_load_%d", time.Now().UnixNano()%1e9)
	if _, err := b.pg.Psql(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return db, err
	}
	fill := fmt.Sprintf(`; INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint)
		SELECT g %% 1000, g %% 500 + 1, g, g %% 10, 'Issue', NULL, decode(md5(g::text), 'hex') FROM generate_series(1, %d) g`, rows)
	for _, sql := range []string{eventsDDL + fill, "VACUUM ANALYZE events", "CHECKPOINT"} {
		if _, err := b.pg.Psql(ctx, db, sql); err != nil {
			return db, err
		}
	}
	return db, nil
}

// copyBest reads events of db with COPY TO STDOUT (binary) into a discard
// writer three times, and returns the rows read, the best time of the last
// two and the Postgres CPU of that read.
func (b *bench) copyBest(ctx context.Context, db string, servers serverProcs) (int64, time.Duration, time.Duration, error) {
	conn, err := pgx.Connect(ctx, b.pg.DSN(db))
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(ctx)
	var rows int64
	var best, bestPG time.Duration
	for i := range 3 {
		before, err := servers.cpu()
		if err != nil {
			return 0, 0, 0, err
		}
		t0 := time.Now()
		tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY events TO STDOUT (FORMAT binary)")
		took := time.Since(t0)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("copy events to stdout: %w", err)
		}
		after, err := servers.cpu()
		if err != nil {
			return 0, 0, 0, err
		}
		rows = tag.RowsAffected()
		if i > 0 && (best == 0 || took < best) {
			best, bestPG = took, after.pg-before.pg
		}
	}
	return rows, best, bestPG, conn.Close(ctx)
}

// resume drops the slot and ClickHouse database of db's full setup, which
// took full, sets the same table up under a fresh name, kills that setup
// with SIGKILL at loadKillAt of full, sets it up again, and counts the rows
// in ClickHouse against want.
func (b *bench) resume(ctx context.Context, db string, full time.Duration, want int64) (resumeFigures, error) {
	r := resumeFigures{killAt: time.Duration(loadKillAt * float64(full)), check: rowCheck{want: want}}
	if _, err := b.pg.Psql(ctx, db, fmt.Sprintf("SELECT pg_drop_replication_slot('repl_%s')", db)); err != nil {
		return r, err
	}
	if err := b.chConn.Exec(ctx, "DROP DATABASE "+db); err != nil {
		return r, fmt.Errorf("drop ClickHouse database %s: %w", db, err)
	}
	name := db + "_resume"
	cfg, err := b.configAs(db, name, "")
	if err != nil {
		return r, err
	}
	if r.first, err = b.setup(cfg, name+".setup-killed.log", r.killAt); err != nil {
		return r, err
	}
	if r.first.killed {
		if err := b.waitSlotIdle(ctx, db, "repl_"+name); err != nil {
			return r, err
		}
		if r.again, err = b.setup(cfg, name+".setup.log", 0); err != nil {
			return r, err
		}
	}
	r.check.got, err = b.liveRows(ctx, name)
	return r, err
}

// printLoad prints the medians of the initial load's runs: COPY's rate,
// time and Postgres CPU; setup's rate, time and ratio to COPY with its
// range; setup's peak RSS against its bound (ABOVE if any run was), its
// CPU and the servers'; and the rows in ClickHouse of every run.
func (b *bench) printLoad(runs []loadFigures) {
	med := func(f func(loadFigures) float64) float64 { return over(runs, f).med }
	secs := func(f func(loadFigures) time.Duration) float64 {
		return med(func(r loadFigures) float64 { return f(r).Seconds() })
	}
	copySecs, setupSecs := secs(func(r loadFigures) time.Duration { return r.copy }), secs(func(r loadFigures) time.Duration { return r.setup.wall })
	ratio := over(runs, func(r loadFigures) float64 { return r.copy.Seconds() / r.setup.wall.Seconds() })
	b.printf("\ninitial load: %d events rows (%s), COPY TO STDOUT (binary) into io.Discard vs replicator setup, warm cache\n", runs[0].rows, runs[0].size)
	b.printf("  %-34s %12.0f rows/s %8.2f s  Postgres CPU %.1f s\n", "COPY, best of 2 after a warm-up",
		med(func(r loadFigures) float64 { return float64(r.rows) / r.copy.Seconds() }), copySecs, secs(func(r loadFigures) time.Duration { return r.copyPG }))
	b.printf("  %-34s %12.0f rows/s %8.2f s  ratio %s (target >= %.2f)\n", "replicator setup",
		med(func(r loadFigures) float64 { return float64(r.rows) / r.setup.wall.Seconds() }), setupSecs, ratio.text("%.2f"), loadTarget)
	rss := over(runs, func(r loadFigures) float64 { return float64(r.setup.maxRSS) })
	verdict := "within"
	if rss.max > loadRSSBound {
		verdict = "ABOVE"
	}
	b.printf("    peak RSS %d MiB, %s bound %d MiB; CPU %.1f s (user %.1f, sys %.1f); servers' CPU Postgres %.1f s, ClickHouse %.1f s\n",
		mib(rss.med), verdict, loadRSSBound>>20, secs(func(r loadFigures) time.Duration { return r.setup.user + r.setup.sys }),
		secs(func(r loadFigures) time.Duration { return r.setup.user }), secs(func(r loadFigures) time.Duration { return r.setup.sys }),
		secs(func(r loadFigures) time.Duration { return r.pg }), secs(func(r loadFigures) time.Duration { return r.ch }))
	b.printf("    %s\n", rowsVerdict(checks(runs, func(r loadFigures) rowCheck { return r.check })))
}

// printResume prints the medians of the resume scenario's runs: for the
// runs whose first setup was killed, the kill's time, the time of the
// setup after it and its share of the full run with its range, and its
// peak RSS; for the runs whose first setup finished before the kill, its
// time; then the rows in ClickHouse of every run.
func (b *bench) printResume(runs []loadFigures) {
	var killed, finished []loadFigures
	for _, r := range runs {
		if r.resume.first.killed {
			killed = append(killed, r)
		} else {
			finished = append(finished, r)
		}
	}
	secs := func(rs []loadFigures, f func(loadFigures) time.Duration) float64 {
		return over(rs, func(r loadFigures) float64 { return f(r).Seconds() }).med
	}
	if len(finished) > 0 {
		b.printf("  resume: setup finished in %.2f s, before the kill at %.2f s; nothing to resume%s\n",
			secs(finished, func(r loadFigures) time.Duration { return r.resume.first.wall }),
			secs(finished, func(r loadFigures) time.Duration { return r.resume.killAt }), ofRuns(len(finished), len(runs)))
	}
	if len(killed) > 0 {
		share := over(killed, func(r loadFigures) float64 { return r.resume.again.wall.Seconds() / r.setup.wall.Seconds() })
		b.printf("  resume: SIGKILL at %.2f s (%.0f%% of the full run), setup again %.2f s = %s of the full run; peak RSS %d MiB%s\n",
			secs(killed, func(r loadFigures) time.Duration { return r.resume.killAt }), loadKillAt*100,
			secs(killed, func(r loadFigures) time.Duration { return r.resume.again.wall }), share.text("%.2f"),
			mib(over(killed, func(r loadFigures) float64 { return float64(r.resume.again.maxRSS) }).med), ofRuns(len(killed), len(runs)))
	}
	b.printf("    %s\n", rowsVerdict(checks(runs, func(r loadFigures) rowCheck { return r.resume.check })))
}

// ofRuns says in how many of all runs a line's figures were measured,
// when not in all.
func ofRuns(some, all int) string {
	if some == all {
		return ""
	}
	return fmt.Sprintf(" (%d of %d runs)", some, all)
}

// checks returns the row check that f reads from each run.
func checks[T any](runs []T, f func(T) rowCheck) []rowCheck {
	c := make([]rowCheck, len(runs))
	for i, r := range runs {
		c[i] = f(r)
	}
	return c
}

// rowsVerdict compares the rows counted in ClickHouse with Postgres' in
// each run: one statement when they match in every run, otherwise every
// run where they differ, marked MISMATCH.
func rowsVerdict(runs []rowCheck) string {
	var bad []string
	for i, c := range runs {
		if int64(c.got) == c.want {
			continue
		}
		s := fmt.Sprintf("rows in ClickHouse %d, Postgres %d: MISMATCH", c.got, c.want)
		if len(runs) > 1 {
			s = fmt.Sprintf("run %d: %s", i+1, s)
		}
		bad = append(bad, s)
	}
	if len(bad) > 0 {
		return strings.Join(bad, "; ")
	}
	s := fmt.Sprintf("rows in ClickHouse %d = Postgres %d", runs[0].got, runs[0].want)
	if len(runs) > 1 {
		s += fmt.Sprintf(" in each of %d runs", len(runs))
	}
	return s
}

// liveRows counts the live events of the ClickHouse database chDB.
func (b *bench) liveRows(ctx context.Context, chDB string) (uint64, error) {
	var n uint64
	if err := b.chConn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.events_live", chDB)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count live events in ClickHouse: %w", err)
	}
	return n, nil
}

// setupRun is one run of `replicator setup`.
type setupRun struct {
	wall      time.Duration
	user, sys time.Duration
	maxRSS    int64 // bytes
	killed    bool  // by SIGKILL, after killAfter
}

// setup runs `replicator setup --config cfg` with its output in logName of
// the working directory. When killAfter is not 0 and setup still runs after
// that long, it kills it with SIGKILL; otherwise setup must succeed.
func (b *bench) setup(cfg, logName string, killAfter time.Duration) (setupRun, error) {
	logf, err := os.Create(filepath.Join(b.dir, logName))
	if err != nil {
		return setupRun{}, err
	}
	defer logf.Close()
	c := b.cmd("setup", "--config", cfg)
	c.Stdout, c.Stderr = logf, logf
	t0 := time.Now()
	if err := c.Start(); err != nil {
		return setupRun{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	var kill <-chan time.Time
	if killAfter > 0 {
		timer := time.NewTimer(killAfter)
		defer timer.Stop()
		kill = timer.C
	}
	var r setupRun
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-kill:
		c.Process.Kill()
		<-exited
		r.killed = true
	}
	r.wall = time.Since(t0)
	r.user, r.sys = c.ProcessState.UserTime(), c.ProcessState.SystemTime()
	r.maxRSS = c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
	if waitErr != nil {
		out, _ := os.ReadFile(logf.Name())
		return r, fmt.Errorf("setup: %v\n%s", waitErr, out)
	}
	return r, nil
}

// waitBackends waits up to 5 s until no backend is connected to db, so that
// the Postgres server has reaped, and counts, the backends of a setup that
// exited.
func (b *bench) waitBackends(ctx context.Context, db string) {
	q := fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'", db)
	for t0 := time.Now(); time.Since(t0) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if out, err := b.pg.Psql(ctx, "postgres", q); err != nil || out == "0" {
			return
		}
	}
}

// waitSlotIdle waits up to 10 s until the backend of a killed setup has let
// go of slot, so that the next setup does not find it in use.
func (b *bench) waitSlotIdle(ctx context.Context, db, slot string) error {
	q := fmt.Sprintf("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s' AND active", slot)
	for t0 := time.Now(); time.Since(t0) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		out, err := b.pg.Psql(ctx, db, q)
		if err != nil {
			return err
		}
		if out == "0" {
			return nil
		}
	}
	return fmt.Errorf("slot %s still active 10 s after its setup was killed", slot)
}

// serverProcs names the root processes of the two servers.
type serverProcs struct {
	pg   int   // the postmaster
	ch   []int // clickhouse-server (and its watchdog, if any)
	tick float64
}

// servers finds the servers' processes: the postmaster from its pid file,
// ClickHouse by its config file on the command line.
func (b *bench) servers() (serverProcs, error) {
	s := serverProcs{tick: clockTick()}
	pidFile, err := os.ReadFile(filepath.Join(b.pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		return s, err
	}
	first, _, _ := strings.Cut(string(pidFile), "\n")
	if s.pg, err = strconv.Atoi(strings.TrimSpace(first)); err != nil {
		return s, fmt.Errorf("postmaster.pid: %w", err)
	}
	procs, err := readProcs()
	if err != nil {
		return s, err
	}
	flag := "--config-file=" + filepath.Join(b.ch.Dir, "config.xml")
	isCH := func(pid int) bool {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return strings.Contains(string(cmdline), flag)
	}
	for pid, p := range procs {
		if isCH(pid) && !isCH(p.ppid) {
			s.ch = append(s.ch, pid)
		}
	}
	if len(s.ch) == 0 {
		return s, fmt.Errorf("no clickhouse-server process with %s", flag)
	}
	return s, nil
}

// serverCPU is CPU time used so far by each server's process tree.
type serverCPU struct{ pg, ch time.Duration }

// cpu returns the CPU time of each server's processes, their live
// descendants, and the children they have reaped.
func (s serverProcs) cpu() (serverCPU, error) {
	procs, err := readProcs()
	if err != nil {
		return serverCPU{}, err
	}
	ticks := func(roots ...int) time.Duration {
		var sum int64
		for pid, p := range procs {
			for a, hops := pid, 0; a > 0 && hops < 64; a, hops = procs[a].ppid, hops+1 {
				if slices.Contains(roots, a) {
					sum += p.ticks
					break
				}
			}
		}
		return time.Duration(float64(sum) / s.tick * float64(time.Second))
	}
	return serverCPU{pg: ticks(s.pg), ch: ticks(s.ch...)}, nil
}

// proc is a process's parent and CPU ticks from /proc/<pid>/stat: utime +
// stime + cutime + cstime.
type proc struct {
	ppid  int
	ticks int64
}

// readProcs reads every process's /proc/<pid>/stat.
func readProcs() (map[int]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if p, ok := parseStat(string(stat)); ok {
			procs[pid] = p
		}
	}
	return procs, nil
}

// parseStat reads the parent and the CPU ticks of a /proc/<pid>/stat line,
// whose second field, the command in parentheses, may hold spaces.
func parseStat(stat string) (proc, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, state
	if len(f) < 15 {
		return proc{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return proc{}, false
	}
	p := proc{ppid: ppid}
	for _, v := range f[11:15] { // utime, stime, cutime, cstime
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return proc{}, false
		}
		p.ticks += n
	}
	return p, true
}

// clockTick returns the clock ticks per second of /proc's times.
func clockTick() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || n <= 0 {
		return 100
	}
	return float64(n)
}

// lagFigures are the figures of one run of the sustained load.
type lagFigures struct {
	// tps is the rate pgbench achieved, when it printed one.
	tps      float64
	tpsKnown bool
	samples  int
	// p50, p99 and max are the commit-to-visible lags of the samples.
	p50, p99, max time.Duration
	// parts is the active parts of events at the end, maxParts the most in
	// one partition.
	parts, maxParts uint64
}

// lag runs a sustained insert load with the daemon streaming and samples,
// from a separate connection, the time from a marker row's commit until it
// is visible in ClickHouse. It runs b.runs times, each in a new database,
// and prints the medians.
func (b *bench) lag(ctx context.Context, seconds, rate int) error {
	runs, err := repeat(b, "sustained load", func() (lagFigures, error) { return b.lagRun(ctx, seconds, rate) })
	if err != nil {
		return err
	}
	b.printLag(seconds, rate, runs)
	return nil
}

// lagRun is one run of lag in a new database.
func (b *bench) lagRun(ctx context.Context, seconds, rate int) (lagFigures, error) {
	var f lagFigures
	db, cfg, err := b.prepareLag(ctx)
	if err != nil {
		return f, err
	}
	d := b.cmd("run", "--config", cfg)
	logPath := filepath.Join(b.dir, db+".log")
	logf, _ := os.Create(logPath)
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		return f, err
	}
	exited := make(chan struct{})
	go func() { d.Wait(); close(exited) }()
	defer func() { d.Process.Signal(syscall.SIGTERM); <-exited; logf.Close() }()
	time.Sleep(2 * time.Second)

	load := b.lagLoad(ctx, db, seconds, rate)
	lags, err := b.sampleLag(ctx, db, seconds)
	if err != nil {
		return f, err
	}
	res := <-load
	if res.err != nil {
		return f, fmt.Errorf("pgbench: %v\n%s", res.err, res.out)
	}
	if len(lags) == 0 {
		return f, fmt.Errorf("no lag sample became visible")
	}
	f.tps, f.tpsKnown = pgbenchTPS(res.out)
	f.samples, f.p50, f.p99, f.max = len(lags), pct(lags, 50), pct(lags, 99), lags[len(lags)-1].Round(time.Millisecond)
	// Parts: a flush per min_interval must leave ClickHouse able to merge.
	if err := b.chConn.QueryRow(ctx, fmt.Sprintf(`SELECT max(c), sum(c) FROM (SELECT partition, count() AS c FROM system.parts
		WHERE database = '%s' AND table = 'events' AND active GROUP BY partition)`, db)).Scan(&f.maxParts, &f.parts); err != nil {
		return f, err
	}
	select {
	case <-exited:
		return f, fmt.Errorf("the daemon exited during the sustained load (see %s)", logPath)
	default:
	}
	return f, nil
}

// prepareLag creates a database with an empty events table and sets the
// replication up. It returns the database and the daemon's config.
func (b *bench) prepareLag(ctx context.Context) (string, string, error) {
	db := fmt.Sprintf("bench_lag_%d", time.Now().UnixNano()%1e9)
	if _, err := b.pg.Psql(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		return db, "", err
	}
	if _, err := b.pg.Psql(ctx, db, eventsDDL); err != nil {
		return db, "", err
	}
	cfg, err := b.config(db, "")
	if err != nil {
		return db, cfg, err
	}
	if out, err := b.cmd("setup", "--config", cfg).CombinedOutput(); err != nil {
		return db, cfg, fmt.Errorf("setup: %v\n%s", err, out)
	}
	return db, cfg, nil
}

// pgbenchResult is the output and the error of a pgbench run.
type pgbenchResult struct {
	out []byte
	err error
}

// lagLoad starts pgbench inserting into events of db at rate transactions/s
// for seconds from 4 clients; its result arrives on the channel.
func (b *bench) lagLoad(ctx context.Context, db string, seconds, rate int) <-chan pgbenchResult {
	done := make(chan pgbenchResult, 1)
	go func() {
		path := filepath.Join(b.dir, "lag.sql")
		os.WriteFile(path, []byte("INSERT INTO events (project_id, author_id, action, target_type) VALUES (1, 1, 1, 'Issue');\n"), 0o644)
		cmd := exec.CommandContext(ctx, "/usr/lib/postgresql/15/bin/pgbench", "-n", "-h", "127.0.0.1", "-p", strconv.Itoa(b.pg.Port),
			"-U", "postgres", "-c", "4", "-j", "2", "-R", strconv.Itoa(rate), "-T", strconv.Itoa(seconds), "-f", path, db)
		out, err := cmd.CombinedOutput()
		done <- pgbenchResult{out: out, err: err}
	}()
	return done
}

// sampleLag commits a marker row every 200 ms for seconds and times each
// until it is visible in ClickHouse; it returns the times sorted.
func (b *bench) sampleLag(ctx context.Context, db string, seconds int) ([]time.Duration, error) {
	conn, err := pgx.Connect(ctx, b.pg.DSN(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var mu sync.Mutex
	var lags []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for time.Now().Before(deadline) {
		var id int64
		if err := conn.QueryRow(ctx, "INSERT INTO events (author_id, action) VALUES (777777, 1) RETURNING id").Scan(&id); err != nil {
			return nil, err
		}
		committed := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := fmt.Sprintf("SELECT count() FROM %s.events WHERE id = %d", db, id)
			for time.Since(committed) < 2*time.Minute {
				var c uint64
				if err := b.chConn.QueryRow(ctx, q).Scan(&c); err == nil && c > 0 {
					mu.Lock()
					lags = append(lags, time.Since(committed))
					mu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	return lags, nil
}

// pgbenchTPS reads the transactions/s from pgbench's output.
func pgbenchTPS(out []byte) (float64, bool) {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "tps = ") {
			if tps, err := strconv.ParseFloat(strings.Fields(l)[2], 64); err == nil {
				return tps, true
			}
		}
	}
	return 0, false
}

// printLag prints the medians of the sustained load's runs: the achieved
// rate, the samples, the p50, p99 and greatest lags with their ranges, and
// the active parts at the end.
func (b *bench) printLag(seconds, rate int, runs []lagFigures) {
	var known []lagFigures
	for _, r := range runs {
		if r.tpsKnown {
			known = append(known, r)
		}
	}
	tps := "?"
	if len(known) > 0 {
		tps = over(known, func(r lagFigures) float64 { return r.tps }).text("%.1f")
	}
	lag := func(f func(lagFigures) time.Duration) string {
		return over(runs, func(r lagFigures) float64 { return f(r).Seconds() }).textWith(millis)
	}
	b.printf("\nsustained load: target %d tx/s for %ds, achieved %s tx/s (pgbench, 4 clients); %.0f sampled rows, commit -> visible in ClickHouse:\n",
		rate, seconds, tps, over(runs, func(r lagFigures) float64 { return float64(r.samples) }).med)
	b.printf("  p50 %s  p99 %s  max %s  (default batch settings: min_interval 200ms, max_delay 1s)\n",
		lag(func(r lagFigures) time.Duration { return r.p50 }), lag(func(r lagFigures) time.Duration { return r.p99 }),
		lag(func(r lagFigures) time.Duration { return r.max }))
	b.printf("  active parts of events at the end: %.0f (most in one partition: %.0f); the daemon ran throughout\n",
		over(runs, func(r lagFigures) float64 { return float64(r.parts) }).med,
		over(runs, func(r lagFigures) float64 { return float64(r.maxParts) }).med)
}

func pct(s []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))].Round(time.Millisecond)
}

func chVersion(ctx context.Context, c driver.Conn) string {
	var v string
	c.QueryRow(ctx, "SELECT version()").Scan(&v)
	return v
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

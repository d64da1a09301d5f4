package test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/replicator/replicator/test/harness"
)

// The servers and binary shared by every end-to-end test of this package.
var (
	pgServer *harness.Postgres
	chServer *harness.ClickHouse
	binary   string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// skipReason is why the end-to-end tests of this run are skipped; empty
// when they run.
var skipReason string

func runMain(m *testing.M) int {
	flag.Parse()
	var err error
	if skipReason, err = harness.E2E(testing.Short()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if skipReason != "" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "replicator-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "replicator")
	build := exec.Command("go", "build", "-o", binary, "../cmd/replicator")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build replicator:", err)
		return 1
	}
	pgServer, err = harness.StartPostgres(ctx, harness.Options{Fast: true, Log: os.Stderr,
		PGSettings: map[string]string{"logical_decoding_work_mem": testDecodingWorkMem, "max_prepared_transactions": "10"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start postgres:", err)
		return 1
	}
	defer pgServer.Close()
	chServer, err = harness.StartClickHouse(ctx, harness.Options{Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start clickhouse:", err)
		return 1
	}
	defer chServer.Close()
	return m.Run()
}

// eventsDDL is the source table of the issue.
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

// requireServers skips t when the end-to-end tests do not run here.
func requireServers(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

var envSeq atomic.Int64

// env is one test's private database, slot and ClickHouse database on the
// shared servers.
type env struct {
	t      *testing.T
	name   string
	dir    string
	config string
	// monitor is the daemon's /metrics address.
	monitor string
	pg      *pgxpool.Pool
	ch      driver.Conn
	// audit is Postgres' events at past commits (nil: none, see
	// startAudit).
	audit *audit
}

func newEnv(t *testing.T, extraConfig string) *env {
	t.Helper()
	requireServers(t)
	return newEnvOn(t, pgServer, extraConfig)
}

// newEnvOn is newEnv on the Postgres server pgs.
func newEnvOn(t *testing.T, pgs *harness.Postgres, extraConfig string) *env {
	t.Helper()
	requireServers(t)
	pgServer := pgs
	name := strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	if len(name) > 36 {
		name = name[:36]
	}
	name = fmt.Sprintf("%s_%d", name, envSeq.Add(1)) // unique under -count=N
	ctx := context.Background()
	e := &env{t: t, name: name, dir: t.TempDir()}
	if _, err := pgServer.Psql(ctx, "postgres", "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pgServer.DSN(name))
	if err != nil {
		t.Fatal(err)
	}
	e.pg = pool
	e.exec(eventsDDL)
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chServer.Addr()}, Protocol: clickhouse.Native})
	if err != nil {
		t.Fatal(err)
	}
	e.ch = ch
	e.config = filepath.Join(e.dir, "replicator.hcl")
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e.monitor = fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`
postgres {
  dsn         = %q
  slot        = "slot_%s"
  publication = "pub_%s"
}
clickhouse {
  addr     = [%q]
  database = %q
}
batch {
  max_rows  = 20000
  max_delay = "200ms"
}
log {
  level = "debug"
}
monitor {
  listen             = %q
  ready_max_lag      = "1s"
  heartbeat_interval = "1s"
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
%s`, pgServer.DSN(name), name, name, chServer.Addr(), "db_"+name, e.monitor, extraConfig)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Free the slot: the servers are shared and slots are limited.
		e.pg.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", "slot_"+name)
		e.pg.Close()
		e.ch.Close()
	})
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pg.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// cli runs a replicator command to completion.
func (e *env) cli(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (e *env) setup() string {
	e.t.Helper()
	out, errs, code := e.cli("setup", "--config", e.config)
	if code != 0 {
		e.t.Fatalf("setup exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	return out
}

// daemon is a running `replicator run`.
type daemon struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
	// recoveries counts the recoveries a test saw complete (healed).
	recoveries int
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.Write(p)
}

func (d *daemon) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

func (e *env) start() *daemon {
	e.t.Helper()
	return e.startWith(e.config)
}

// secondConfig returns a copy of the config whose monitor listens on
// another port, for a second daemon.
func (e *env) secondConfig() string {
	e.t.Helper()
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, "second.hcl")
	out := strings.Replace(string(src), e.monitor, fmt.Sprintf("127.0.0.1:%d", port), 1)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *env) startWith(config string, environ ...string) *daemon {
	e.t.Helper()
	d := &daemon{done: make(chan struct{})}
	d.cmd = exec.Command(binary, "run", "--config", config)
	d.cmd.Env = append(os.Environ(), environ...)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		if e.t.Failed() {
			e.t.Logf("daemon log:\n%s", tail(d.Logs(), 4000))
			if dir := os.Getenv("E2E_LOG_DIR"); dir != "" {
				// The whole log, for a failure the tail does not explain.
				f, err := os.CreateTemp(dir, e.name+"-*.log")
				if err == nil {
					f.WriteString(d.Logs())
					f.Close()
					e.t.Logf("whole daemon log: %s", f.Name())
				}
			}
		}
	})
	return d
}

// stop sends SIGTERM and waits; it returns the exit code and how long it took.
func (d *daemon) stop(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not stop within 30s after SIGTERM\n%s", tail(d.Logs(), 3000))
	}
	return d.cmd.ProcessState.ExitCode(), time.Since(start)
}

func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.done
}

// wait waits for the daemon to exit by itself.
func (d *daemon) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("daemon still running after %s\n%s", timeout, tail(d.Logs(), 3000))
		return -1
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// row is one event under the mapping rules, as both sides should show it.
type row struct {
	ID, ProjectID, GroupID, AuthorID, TargetID, Fingerprint uint64
	TargetType                                              string
	Action                                                  uint8
	CreatedAt, UpdatedAt                                    int64 // Unix seconds (DateTime on ClickHouse < 20.1)
}

// expected reads public.events and applies the mapping rules independently
// of the replicator's code: NULL -> 0 or ”, fingerprint -> xxHash64 of the
// raw bytes, timestamps to whole seconds.
func (e *env) expected() []row {
	e.t.Helper()
	rows, err := e.pg.Query(context.Background(), `SELECT id, project_id, group_id, author_id, target_id, target_type,
		action, fingerprint, created_at, updated_at FROM events ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var id int64
		var project, target *int32
		var group *int64
		var author int32
		var ttype *string
		var action int16
		var fp []byte
		var created, updated time.Time
		if err := rows.Scan(&id, &project, &group, &author, &target, &ttype, &action, &fp, &created, &updated); err != nil {
			e.t.Fatal(err)
		}
		r := row{ID: uint64(id), AuthorID: uint64(author), Action: uint8(action),
			CreatedAt: created.Unix(), UpdatedAt: updated.Unix()}
		if project != nil {
			r.ProjectID = uint64(*project)
		}
		if group != nil {
			r.GroupID = uint64(*group)
		}
		if target != nil {
			r.TargetID = uint64(*target)
		}
		if ttype != nil {
			r.TargetType = *ttype
		}
		if fp != nil {
			r.Fingerprint = xxhash.Sum64(fp)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// actual reads the live view in ClickHouse.
func (e *env) actual() ([]row, error) { return e.actualIn("events_live") }

// actualIn reads events through the named view in ClickHouse.
func (e *env) actualIn(view string) ([]row, error) {
	rows, err := e.ch.Query(context.Background(), fmt.Sprintf(`SELECT id, project_id, group_id, author_id, target_id,
		target_type, action, fingerprint, toUnixTimestamp(created_at), toUnixTimestamp(updated_at) FROM db_%s.%s`, e.name, view))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		var c, u uint32
		if err := rows.Scan(&r.ID, &r.ProjectID, &r.GroupID, &r.AuthorID, &r.TargetID, &r.TargetType, &r.Action,
			&r.Fingerprint, &c, &u); err != nil {
			return nil, err
		}
		r.CreatedAt, r.UpdatedAt = int64(c), int64(u)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, rows.Err()
}

// diff describes the first differences between two row sets.
func diff(want, got []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "postgres %d rows, clickhouse %d rows", len(want), len(got))
	w, g := map[uint64]row{}, map[uint64]row{}
	for _, r := range want {
		w[r.ID] = r
	}
	for _, r := range got {
		g[r.ID] = r
	}
	n := 0
	for _, r := range want {
		if x, ok := g[r.ID]; !ok || x != r {
			if n < 5 {
				fmt.Fprintf(&b, "\n  id %d: postgres %+v clickhouse %+v (present %v)", r.ID, r, x, ok)
			}
			n++
		}
	}
	for _, r := range got {
		if _, ok := w[r.ID]; !ok {
			if n < 10 {
				fmt.Fprintf(&b, "\n  id %d: extra in clickhouse %+v", r.ID, r)
			}
			n++
		}
	}
	fmt.Fprintf(&b, "\n  %d differences", n)
	return b.String()
}

func equal(want, got []row) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i] != got[i] {
			return false
		}
	}
	return true
}

// converge waits until the ClickHouse live view equals Postgres row for row.
func (e *env) converge(what string, timeout time.Duration) {
	e.t.Helper()
	want := e.expected()
	deadline := time.Now().Add(timeout)
	var got []row
	var err error
	for {
		got, err = e.actual()
		if err == nil && equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("%s: read clickhouse: %v", what, err)
	}
	e.t.Fatalf("%s: clickhouse did not converge within %s: %s", what, timeout, diff(want, got))
}

// checkpoints returns the commit-kind checkpoints saved so far.
func (e *env) checkpoints() []uint64 {
	e.t.Helper()
	rows, err := e.ch.Query(context.Background(), fmt.Sprintf(
		"SELECT lsn FROM db_%s.replicator_checkpoints WHERE commit = 1 ORDER BY lsn", e.name))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var l uint64
		if err := rows.Scan(&l); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// checkpointLSN returns the newest checkpoint, of a commit or idle.
func (e *env) checkpointLSN() uint64 {
	e.t.Helper()
	var l uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT max(lsn) FROM db_%s.replicator_checkpoints", e.name)).Scan(&l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

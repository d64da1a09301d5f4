package test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// tamper runs statements on the test's ClickHouse database, and waits for
// the mutations they started.
func (e *env) tamper(stmts ...string) {
	e.t.Helper()
	ctx := context.Background()
	for _, q := range stmts {
		if _, err := chServer.Query(ctx, q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
		// A mutation is done before the next statement: it must not
		// delete rows inserted after it.
		for deadline := time.Now().Add(convergeTimeout); ; {
			var n uint64
			if err := e.ch.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", "db_"+e.name).Scan(&n); err != nil {
				e.t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("mutations of db_%s not done within %s", e.name, convergeTimeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// cliEnv runs a replicator command to completion with more environment
// variables; a process killed by a signal exits -1.
func (e *env) cliEnv(environ []string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), environ...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// eventsWriter updates and inserts events with ids above from until ctx
// ends, as an application keeps writing while verify and repair run.
func (e *env) eventsWriter(ctx context.Context, from int) (wait func() int) {
	var wg sync.WaitGroup
	n := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for ctx.Err() == nil {
			q := fmt.Sprintf(`UPDATE events SET action = %d, updated_at = now() WHERE id = %d`, rng.IntN(10), from+rng.IntN(1000))
			if rng.IntN(4) == 0 {
				q = `INSERT INTO events (author_id, action, target_type) VALUES (1, 1, 'Issue')`
			}
			if _, err := e.pg.Exec(context.Background(), q); err == nil {
				n++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() int { wg.Wait(); return n }
}

// tamperEvents damages the ClickHouse copy of events in every way repair
// must undo, on ids 11..41 and 999999999.
func (e *env) tamperEvents() {
	e.t.Helper()
	db := "db_" + e.name
	e.tamper(
		// Rows deleted.
		fmt.Sprintf(`ALTER TABLE %s.events DELETE WHERE id IN (11, 12)`, db),
		// A row with a wrong value, newer than the right one.
		fmt.Sprintf(`INSERT INTO %[1]s.events (id, author_id, action, _version, _deleted) SELECT id, author_id + 1, action, _version + 1, 0 FROM %[1]s.events FINAL WHERE id = 21`, db),
		// A phantom row.
		fmt.Sprintf(`INSERT INTO %s.events (id, author_id, action, _version, _deleted) VALUES (999999999, 1, 1, 1, 0)`, db),
		// A row whose version no change can reach.
		fmt.Sprintf(`INSERT INTO %[1]s.events (id, author_id, action, target_type, _version, _deleted) SELECT id, author_id, action + 1, 'Huge', %[2]d, 0 FROM %[1]s.events FINAL WHERE id = 31`, db, uint64(1)<<62),
		// A row with a wrong value at a lower version, the right ones gone
		// (a merge may keep only the newest row of a key: delete first).
		fmt.Sprintf(`ALTER TABLE %s.events DELETE WHERE id = 41`, db),
		fmt.Sprintf(`INSERT INTO %s.events (id, author_id, action, _version, _deleted) VALUES (41, 49, 1, 1, 0)`, db),
	)
}

func TestVerifyRepair(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(5000)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.converge("initial copy", convergeTimeout)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := e.eventsWriter(ctx, 3000)
	e.tamperEvents()

	out, errs, code := e.cli("verify", "--range-rows", "500", "--config", e.config)
	if code != 1 {
		t.Fatalf("verify on a tampered copy: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"missing in ClickHouse 2", "extra in ClickHouse 1", "different 3",
		"first missing: id=11, id=12", "first extra: id=999999999", "first different: id=21, id=31, id=41"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("verify on a tampered copy:\n%s", out)

	out, errs, code = e.cli("verify", "--range-rows", "500", "--config", e.config, "--repair")
	if code != 1 {
		t.Fatalf("verify --repair: exit %d, want 1 (differences found)\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"REPAIRED 6 key ranges (first sorting column = 11, 12, 21, 31, 41, 999999999)",
		"inserted 2, replaced 3, removed 1", "first inserted: id=11, id=12", "first replaced: id=21, id=31, id=41",
		"first removed: id=999999999"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify --repair output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("verify --repair:\n%s", out)

	out, errs, code = e.cli("verify", "--range-rows", "500", "--config", e.config)
	if code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s\n%s", code, out, errs)
	}

	// The application's later changes to the repaired keys win.
	e.exec(`UPDATE events SET action = 9, target_type = 'Later', updated_at = now() WHERE id IN (11, 12, 21, 31, 41)`)
	e.exec(`INSERT INTO events (id, author_id, action) VALUES (999999999, 5, 5)`)
	cancel()
	t.Logf("writer made %d changes", wait())
	e.converge("after repair and later changes", convergeTimeout)
	want, err := e.actualIn("events_committed")
	if err == nil && !equal(e.expected(), want) {
		// The committed view follows the checkpoint: give it time.
		time.Sleep(2 * time.Second)
		want, err = e.actualIn("events_committed")
	}
	if err != nil || !equal(e.expected(), want) {
		t.Errorf("the committed view differs after repair: %v %s", err, diff(e.expected(), want))
	}
}

// TestRepairKilled kills a repair between its mutation and its rows: the
// damage it leaves is a lasting difference, which repair run again undoes.
func TestRepairKilled(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.converge("initial copy", convergeTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := e.eventsWriter(ctx, 2000)
	e.tamperEvents()

	cmd := []string{"verify", "--range-rows", "500", "--config", e.config, "--repair"}
	out, errs, code := e.cliEnv([]string{"REPLICATOR_TEST_FAULT=crash-in-repair:1"}, cmd...)
	if code != -1 || strings.Contains(out, "REPAIRED") {
		t.Fatalf("repair with a crash fault: exit %d, want killed\n%s\n%s", code, out, errs)
	}
	out, errs, code = e.cli(cmd...)
	if code != 1 || !strings.Contains(out, "REPAIRED") {
		t.Fatalf("repair again: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("repair after a killed one:\n%s", out)
	// Twice in a row: the second finds nothing to do.
	out, errs, code = e.cli(cmd...)
	if code != 0 || strings.Contains(out, "REPAIRED") {
		t.Fatalf("repair of a repaired copy: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec(`UPDATE events SET action = 8 WHERE id IN (11, 21, 31, 41)`)
	cancel()
	wait()
	e.converge("after repairs", convergeTimeout)
}

// keysDDL are tables keyed by text (in a collation that orders otherwise
// than its bytes), by a uuid, by (author_id, created_at, id) and by a
// timestamp with sub-second values (at, id).
const keysDDL = `CREATE TABLE labels (name text COLLATE "und-x-icu" PRIMARY KEY, n integer NOT NULL, note text);
CREATE TABLE things (id uuid PRIMARY KEY, n integer NOT NULL);
CREATE TABLE posts (author_id bigint, created_at timestamptz, id bigint, body text, PRIMARY KEY (author_id, created_at, id));
INSERT INTO labels SELECT 'label-' || g || CASE WHEN g % 7 = 0 THEN ' é''\x' ELSE '' END, g, md5(g::text) FROM generate_series(1, 3000) g;
INSERT INTO labels VALUES ('Zebra', 1, 'upper'), ('apple', 2, 'lower'), ('', 3, 'empty');
INSERT INTO things SELECT md5(g::text)::uuid, g FROM generate_series(1, 3000) g;
INSERT INTO posts SELECT g % 40, timestamptz '2024-01-01' + (g || ' minutes')::interval, g, 'post ' || g FROM generate_series(1, 3000) g;
CREATE TABLE logs (at timestamptz, id bigint, msg text, PRIMARY KEY (at, id));
INSERT INTO logs SELECT timestamptz '2024-01-01' + g * interval '700 milliseconds', g, 'log ' || g FROM generate_series(1, 3000) g`

const keysConfig = `
table "public.labels" {
  order_by = ["name"]
  column "n" { type = "Int32" }
}
table "public.things" {
  order_by = ["id"]
  column "n" { type = "Int32" }
}
table "public.posts" {
  order_by = ["author_id", "created_at", "id"]
  column "author_id" { type = "Int64" }
  column "id"        { type = "Int64" }
}
table "public.logs" {
  order_by = ["at", "id"]
  column "id" { type = "Int64" }
}
`

func TestRepairKeys(t *testing.T) {
	e := newEnv(t, keysConfig)
	e.exec(keysDDL)
	e.setup()
	d := e.start()
	defer d.stop(t)
	same := func(what string) {
		e.sameRows(what+": labels", `SELECT name || '|' || n || '|' || coalesce(note, '') FROM labels`,
			fmt.Sprintf(`SELECT concat(name, '|', toString(n), '|', note) FROM db_%s.labels_live`, e.name))
		e.sameRows(what+": things", `SELECT id::text || '|' || n FROM things`,
			fmt.Sprintf(`SELECT concat(toString(id), '|', toString(n)) FROM db_%s.things_live`, e.name))
		e.sameRows(what+": posts", `SELECT author_id || '|' || extract(epoch from created_at)::bigint || '|' || id || '|' || body FROM posts`,
			fmt.Sprintf(`SELECT concat(toString(author_id), '|', toString(toUnixTimestamp(created_at)), '|', toString(id), '|', body) FROM db_%s.posts_live`, e.name))
		e.sameRows(what+": logs", `SELECT floor(extract(epoch from at))::bigint || '|' || id || '|' || msg FROM logs`,
			fmt.Sprintf(`SELECT concat(toString(toUnixTimestamp(at)), '|', toString(id), '|', msg) FROM db_%s.logs_live`, e.name))
	}
	same("after setup")

	out, errs, code := e.cli("verify", "--range-rows", "500", "--config", e.config, "--repair")
	// Both sides split the tables alike: no range differs.
	if code != 0 || strings.Contains(out, "REPAIRED") || strings.Count(out, ": equal") != 5 || strings.Count(out, "(0 drilled down)") != 5 {
		t.Fatalf("verify of equal tables: exit %d\n%s\n%s", code, out, errs)
	}
	db := "db_" + e.name
	e.tamper(
		fmt.Sprintf(`INSERT INTO %[1]s.labels (name, n, note, _version, _deleted) SELECT name, n + 1, note, _version + 1, 0 FROM %[1]s.labels FINAL WHERE name = 'label-7 é''\\x'`, db),
		fmt.Sprintf(`INSERT INTO %s.labels (name, n, note, _version, _deleted) VALUES ('label-phantom', 1, '', %d, 0)`, db, uint64(1)<<62),
		fmt.Sprintf(`ALTER TABLE %s.labels DELETE WHERE name IN ('Zebra', '')`, db),
		fmt.Sprintf(`INSERT INTO %[1]s.things (id, n, _version, _deleted) SELECT id, n + 1, %[2]d, 0 FROM %[1]s.things FINAL WHERE n = 10`, db, uint64(1)<<62),
		fmt.Sprintf(`ALTER TABLE %s.things DELETE WHERE n = 20`, db),
		fmt.Sprintf(`INSERT INTO %[1]s.posts (author_id, created_at, id, body, _version, _deleted) SELECT author_id, created_at, id, 'wrong', _version + 1, 0 FROM %[1]s.posts FINAL WHERE id = 81`, db),
		fmt.Sprintf(`INSERT INTO %s.posts (author_id, created_at, id, body, _version, _deleted) VALUES (1, '2030-01-01 00:00:00', 5, 'phantom', 1, 0)`, db),
		fmt.Sprintf(`ALTER TABLE %s.posts DELETE WHERE id = 120`, db),
		fmt.Sprintf(`INSERT INTO %[1]s.logs (at, id, msg, _version, _deleted) SELECT at, id, 'wrong', _version + 1, 0 FROM %[1]s.logs FINAL WHERE id = 100`, db),
		fmt.Sprintf(`ALTER TABLE %s.logs DELETE WHERE id = 200`, db),
	)
	out, errs, code = e.cli("verify", "--range-rows", "500", "--config", e.config)
	if code != 1 {
		t.Fatalf("verify of tampered tables: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{
		`first missing: name="", name="Zebra"`, `first extra: name="label-phantom"`, `first different: name="label-7 é'\\x"`,
		`first different: id=`, `first missing: id=`,
		`first missing: author_id=0, created_at=1704074400, id=120`,
		`first extra: author_id=1, created_at=1893456000, id=5`,
		`first different: author_id=1, created_at=1704072060, id=81`,
		`first missing: at=1704067340, id=200`, `first different: at=1704067270, id=100`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "compared 3000 rows in 7 key ranges") != 3 || !strings.Contains(out, "compared 3003 rows in 7 key ranges") {
		t.Errorf("verify did not compare each row once in 7 ranges:\n%s", out)
	}
	t.Logf("verify of tampered tables:\n%s", out)
	e.exec(`UPDATE posts SET body = 'live' WHERE author_id = 2`)
	out, errs, code = e.cli("verify", "--range-rows", "500", "--config", e.config, "--repair")
	if code != 1 || strings.Count(out, "REPAIRED") != 4 {
		t.Fatalf("verify --repair: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{`inserted 2, replaced 1, removed 1`, `inserted 1, replaced 1, removed 0`, `inserted 1, replaced 1, removed 1`,
		`REPAIRED 2 key ranges (first sorting column = 0, 1)`} {
		if !strings.Contains(out, want) {
			t.Errorf("verify --repair output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("verify --repair:\n%s", out)
	out, errs, code = e.cli("verify", "--range-rows", "500", "--config", e.config)
	if code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s\n%s", code, out, errs)
	}
	e.exec(`UPDATE labels SET n = 100 WHERE name IN ('Zebra', '', 'label-7 é''\x')`)
	e.exec(`UPDATE things SET n = 100 WHERE n IN (10, 20)`)
	e.exec(`UPDATE posts SET body = 'later' WHERE id IN (81, 120)`)
	e.exec(`UPDATE logs SET msg = 'later' WHERE id IN (100, 200)`)
	same("after repair and later changes")
}

// TestContinuousVerify runs the daemon with continuous verification every
// second: a tampered row of events makes its differences gauge non-zero
// and is logged with its key; a clean table's gauge stays zero.
func TestContinuousVerify(t *testing.T) {
	e := newEnv(t, `
table "public.clean" {
  order_by = ["id"]
}
`)
	e.exec(`CREATE TABLE clean (id bigint PRIMARY KEY, v text); INSERT INTO clean SELECT g, md5(g::text) FROM generate_series(1, 2500) g`)
	e.insertEvents(2500)
	e.setConfig(`heartbeat_interval = "1s"`, `heartbeat_interval = "1s"
  verify_interval    = "1s"
  verify_rate        = 100000
  verify_sample_rows = 1000`)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.converge("initial copy", convergeTimeout)
	db := "db_" + e.name
	e.tamper(fmt.Sprintf(`INSERT INTO %[1]s.events (id, author_id, action, _version, _deleted) SELECT id, author_id + 1, action, _version + 1, 0 FROM %[1]s.events FINAL WHERE id = 2222`, db))

	events, clean := `replicator_verify_differences{table="public.events"}`, `replicator_verify_differences{table="public.clean"}`
	rows := `replicator_verify_rows_total{table="public.clean"}`
	deadline := time.Now().Add(2 * convergeTimeout)
	var m string
	for {
		m = e.scrape()
		// The events pass that found the row, and two whole cycles of
		// clean (2500 rows in passes of 1000).
		if metric(m, events) >= 1 && metric(m, rows) >= 5000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("continuous verification found no difference within %s:\n%s", 2*convergeTimeout, grepLines(m, "replicator_verify"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := metric(m, events); got != 1 {
		t.Errorf("%s = %v, want 1", events, got)
	}
	if got := metric(m, clean); got != 0 {
		t.Errorf("%s = %v, want 0", clean, got)
	}
	if metric(m, `replicator_verify_last_pass_timestamp_seconds{table="public.clean"}`) <= 0 {
		t.Errorf("no last pass time for public.clean:\n%s", grepLines(m, "replicator_verify"))
	}
	if logs := d.Logs(); !strings.Contains(logs, "continuous verification found a lasting difference") || !strings.Contains(logs, "key=id=2222") {
		t.Errorf("the daemon did not log the difference with its key:\n%s", grepLines(logs, "difference"))
	}
	t.Logf("metrics:\n%s", grepLines(m, "replicator_verify"))

	// Repaired, the gauge returns to 0 once a whole cycle no longer finds
	// the difference.
	if out, errs, code := e.cli("verify", "--config", e.config, "--table", "public.events", "--repair"); code != 1 || !strings.Contains(out, "REPAIRED 1 key ranges") {
		t.Fatalf("verify --repair: exit %d\n%s\n%s", code, out, errs)
	}
	for metric(e.scrape(), events) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed non-zero after the repair", events)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replicator/replicator/test/harness"
)

const convergeTimeout = 90 * time.Second

// insertEvents inserts n events in one transaction.
func (e *env) insertEvents(n int) {
	e.t.Helper()
	e.exec(`INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint, created_at)
		SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE g % 1000 END, g % 500 + 1,
		       CASE WHEN g % 5 = 0 THEN NULL ELSE g END, g % 10,
		       CASE WHEN g % 5 = 0 THEN NULL WHEN g % 2 = 0 THEN 'Issue' ELSE 'MergeRequest' END,
		       CASE WHEN g % 3 = 0 THEN g % 77 ELSE NULL END,
		       CASE WHEN g % 4 = 0 THEN decode(md5(g::text), 'hex') ELSE NULL END,
		       now() - (g || ' seconds')::interval
		FROM generate_series(1, $1) g`, n)
}

func TestReplicateScenarios(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(1000) // existing rows: copied by setup
	out := e.setup()
	for _, want := range []string{"created publication", "created replication slot", "copied 1000 rows", "created ClickHouse table"} {
		if !strings.Contains(out, want) {
			t.Errorf("setup output lacks %q:\n%s", want, out)
		}
	}
	e.converge("initial copy", convergeTimeout)
	if again := e.setup(); !strings.Contains(again, "nothing to copy") || strings.Contains(again, "created") {
		t.Errorf("second setup is not idempotent:\n%s", again)
	}

	d := e.start()
	steps := []struct {
		name string
		sql  []string
	}{
		{"inserts", []string{
			`INSERT INTO events (project_id, author_id, action, target_type, target_id) VALUES (1, 2, 3, 'Issue', 4)`,
			`INSERT INTO events (group_id, author_id, action) VALUES (9, 8, 7)`,
		}},
		{"fingerprint updates", []string{
			`UPDATE events SET fingerprint = decode('deadbeef', 'hex'), updated_at = now() WHERE id % 7 = 0`,
			`UPDATE events SET fingerprint = NULL WHERE id % 14 = 0`,
		}},
		{"several changes to one key in one transaction", []string{
			`BEGIN; UPDATE events SET action = 1 WHERE id = 5; UPDATE events SET action = 2 WHERE id = 5;
			 UPDATE events SET target_type = 'Note' WHERE id = 5; COMMIT`,
		}},
		{"id change", []string{
			`UPDATE events SET id = id + 1000000 WHERE id IN (10, 11, 12)`,
			`BEGIN; INSERT INTO events (id, author_id, action) VALUES (2000000, 1, 1);
			 UPDATE events SET id = 2000001 WHERE id = 2000000; COMMIT`,
		}},
		{"single delete", []string{`DELETE FROM events WHERE id = 20`}},
		{"bulk delete", []string{`DELETE FROM events WHERE author_id = 7`, `DELETE FROM events WHERE id BETWEEN 100 AND 300`}},
		{"delete and reinsert in one transaction", []string{
			`BEGIN; DELETE FROM events WHERE id = 400; INSERT INTO events (id, author_id, action) VALUES (400, 99, 9); COMMIT`,
		}},
		{"NULLs in every nullable column", []string{
			`INSERT INTO events (project_id, author_id, target_id, action, target_type, group_id, fingerprint) VALUES (NULL, 1, NULL, 1, NULL, NULL, NULL)`,
			`UPDATE events SET project_id = NULL, target_id = NULL, target_type = NULL, group_id = NULL, fingerprint = NULL WHERE id = 30`,
		}},
	}
	for _, s := range steps {
		for _, q := range s.sql {
			e.exec(q)
		}
		e.converge(s.name, convergeTimeout)
	}

	start := time.Now()
	e.insertEvents(100000)
	e.converge("100k-row transaction", convergeTimeout)
	t.Logf("100k-row transaction visible in ClickHouse after %s", time.Since(start).Round(time.Millisecond))

	st := e.status()
	if st["checkpoint_lsn"] == "" || st["current_wal_lsn"] == "" || st["slot"] != "slot_"+e.name {
		t.Errorf("status lacks fields: %v", st)
	}
	if code, took := d.stop(t); code != 0 || took > 10*time.Second {
		t.Errorf("SIGTERM: exit code %d after %s, want 0 within 10s", code, took)
	}
}

func (e *env) status() map[string]any {
	e.t.Helper()
	out, errs, code := e.cli("status", "--config", e.config, "--json")
	if code != 0 {
		e.t.Fatalf("status exited %d: %s %s", code, out, errs)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("status json: %v\n%s", err, out)
	}
	return m
}

func TestResumeAfterStop(t *testing.T) {
	e := newEnv(t, "")
	e.startAudit()
	e.setup()
	d := e.start()
	e.insertEvents(500)
	e.converge("before stop", convergeTimeout)
	if code, _ := d.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	e.insertEvents(700)
	e.exec(`UPDATE events SET action = 9 WHERE id % 3 = 0`)
	e.exec(`DELETE FROM events WHERE id % 11 = 0`)
	st := e.status()
	if lag, _ := st["lag_bytes"].(float64); lag <= 0 {
		t.Errorf("lag_bytes = %v while stopped with pending writes, want > 0", st["lag_bytes"])
	}
	d = e.start()
	e.converge("after restart", convergeTimeout)
	d.stop(t)
	e.checkpointCovered()
}

// workload writes random small transactions until stop is closed.
func (e *env) workload(ctx context.Context, seed uint64, writers int) (wait func() int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				var q string
				switch p := rng.IntN(100); {
				case p < 50:
					q = fmt.Sprintf(`INSERT INTO events (project_id, author_id, action, target_type, fingerprint)
						SELECT %d, %d, %d, 'Issue', decode(md5(random()::text), 'hex') FROM generate_series(1, %d)`,
						rng.IntN(100), rng.IntN(50)+1, rng.IntN(10), rng.IntN(20)+1)
				case p < 80:
					q = fmt.Sprintf(`UPDATE events SET fingerprint = decode(md5(random()::text), 'hex'), action = %d, updated_at = now()
						WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT %d)`, rng.IntN(10), rng.IntN(5)+1)
				case p < 85:
					q = `UPDATE events SET id = id + 10000000 WHERE id = (SELECT min(id) FROM events WHERE id < 10000000)`
				case p < 95:
					q = fmt.Sprintf(`DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT %d)`, rng.IntN(3)+1)
				default:
					q = fmt.Sprintf(`DELETE FROM events WHERE author_id = %d`, rng.IntN(50)+1)
				}
				if _, err := e.pg.Exec(context.Background(), q); err == nil {
					mu.Lock()
					total++
					mu.Unlock()
				}
			}
		}(w)
	}
	return func() int { wg.Wait(); return total }
}

func TestKill9DuringWorkload(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(2000)
	e.startAudit()
	e.setup()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 42, 3)
	rng := rand.New(rand.NewPCG(7, 7))
	kills := 6
	for i := 0; i < kills; i++ {
		d := e.start()
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		d.kill()
		e.checkpointCovered()
	}
	cancel()
	txns := wait()
	d := e.start()
	e.converge(fmt.Sprintf("after %d kills and %d transactions", kills, txns), convergeTimeout)
	d.stop(t)
	e.checkpointCovered()
	t.Logf("%d kill -9, %d workload transactions, converged", kills, txns)
}

func TestSecondDaemonOnSameSlot(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	first := e.start()
	e.insertEvents(10)
	e.converge("first daemon", convergeTimeout)
	second := e.startWith(e.secondConfig())
	if code := second.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("second daemon exited 0, want an error")
	}
	if logs := second.Logs(); !strings.Contains(logs, "in use") {
		t.Errorf("second daemon's error does not say the slot is in use:\n%s", logs)
	}
	e.insertEvents(10)
	e.converge("first daemon keeps working", convergeTimeout)
	first.stop(t)
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	e := newEnv(t, "")
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), `max_delay = "200ms"`, `max_delay = "soon"`, 1) + "\nbogus = 1\n"
	if err := os.WriteFile(e.config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := e.cli("run", "--config", e.config)
	if code == 0 {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"max_delay", "bogus"} {
		if !strings.Contains(errs, want) {
			t.Errorf("error does not name %q: %s", want, errs)
		}
	}
}

func TestSurvivesServerRestarts(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(1000)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 99, 2)
	defer cancel()
	faults := []struct {
		name string
		do   func() error
	}{
		{"restart clickhouse", func() error { return chServer.Restart(context.Background()) }},
		{"terminate walsender", func() error {
			_, err := pgServer.Psql(context.Background(), e.name, fmt.Sprintf(
				"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'slot_%s' AND active", e.name))
			return err
		}},
		{"restart postgres", func() error { return pgServer.Restart(context.Background()) }},
	}
	for _, f := range faults {
		time.Sleep(1500 * time.Millisecond)
		if err := f.do(); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		t.Logf("injected: %s", f.name)
	}
	time.Sleep(time.Second)
	cancel()
	txns := wait()
	e.converge(fmt.Sprintf("after server faults and %d transactions", txns), convergeTimeout)
	select {
	case <-d.done:
		t.Fatalf("daemon exited on a transient fault:\n%s", tail(d.Logs(), 3000))
	default:
	}
	if !strings.Contains(d.Logs(), "reconnecting") {
		t.Errorf("daemon log shows no reconnect attempt")
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestShippedQueries runs every statement of sql/clickhouse/queries.sql on
// a replicated table, so the shipped queries stay valid on the tested server.
func TestShippedQueries(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(100)
	e.setup()
	n := 0
	for i, q := range statements(t, "../sql/clickhouse/queries.sql", "db_"+e.name) {
		rows, err := e.ch.Query(context.Background(), q)
		if err != nil {
			t.Errorf("query %d fails: %v\n%s", i, err, q)
			continue
		}
		rows.Close()
		n++
	}
	if n < 5 {
		t.Errorf("ran %d queries, want 5", n)
	}
}

// TestSetupSaysWhatToChange runs setup against a server without logical
// decoding and with a role that lacks REPLICATION.
func TestSetupSaysWhatToChange(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	pg, err := harness.StartPostgres(ctx, harness.Options{Fast: true, PGSettings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if _, err := pg.Psql(ctx, "postgres", eventsDDL+"; CREATE ROLE app LOGIN; GRANT ALL ON events TO app"); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "")
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(pg.DSN("postgres"), "postgres@", "app:s3cret-pw@", 1)
	bad := strings.Replace(string(cfg), pgServer.DSN(e.name), dsn, 1)
	if err := os.WriteFile(e.config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := e.cli("setup", "--config", e.config)
	if code == 0 {
		t.Fatalf("setup succeeded without logical decoding:\n%s", out)
	}
	for _, want := range []string{"wal_level", "logical", "REPLICATION"} {
		if !strings.Contains(errs, want) {
			t.Errorf("setup error lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs+out, "s3cret-pw") {
		t.Errorf("password printed:\n%s", errs)
	}
}

// TestMaxDelayUnderSteadyLoad checks that a change is flushed after about
// batch.max_delay even while a steady stream of small transactions keeps the
// buffer below batch.max_rows.
func TestMaxDelayUnderSteadyLoad(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	d := e.start()
	defer d.stop(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				e.pg.Exec(context.Background(), `INSERT INTO events (author_id, action) VALUES (1, 1)`)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(time.Second)
	var id int64
	if err := e.pg.QueryRow(context.Background(), `INSERT INTO events (author_id, action) VALUES (424242, 1) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// max_delay is 200ms and max_rows 20000; the load writes far fewer rows
	// than max_rows in this bound, so only the delay can flush the marker.
	for time.Since(start) < 8*time.Second {
		var n uint64
		if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.events WHERE id = %d", e.name, id)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Logf("marker visible after %s under steady load", time.Since(start).Round(time.Millisecond))
			if os.Getenv("SHOW_LOG") != "" {
				t.Log(tail(d.Logs(), 3000))
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("marker row not in ClickHouse after 8s under steady load (max_delay 200ms)")
}

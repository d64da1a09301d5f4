package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// get fetches a path of the daemon's monitor endpoint.
func (e *env) get(path string) (int, string) {
	e.t.Helper()
	resp, err := http.Get("http://" + e.monitor + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHalted waits until the daemon d halts on bad data and returns what
// /readyz says; it fails the test when d exits instead.
func (e *env) waitHalted(d *daemon, timeout time.Duration) string {
	e.t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-d.done:
			e.t.Fatalf("the daemon exited (code %d) instead of halting\n%s", d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 3000))
		default:
		}
		if code, body := e.get("/readyz"); code == http.StatusServiceUnavailable && strings.Contains(body, "halted (bad_data)") {
			return body
		}
		if time.Now().After(deadline) {
			code, body := e.get("/readyz")
			e.t.Fatalf("the daemon did not halt within %s: /readyz %d %q\n%s", timeout, code, body, tail(d.Logs(), 3000))
		}
	}
}

// slotState returns the slot's confirmed_flush_lsn and whether a
// walsender streams from it.
func (e *env) slotState() (confirmed uint64, active bool) {
	e.t.Helper()
	if err := e.pg.QueryRow(context.Background(), "SELECT confirmed_flush_lsn - '0/0', active FROM pg_replication_slots WHERE slot_name = $1",
		"slot_"+e.name).Scan(&confirmed, &active); err != nil {
		e.t.Fatal(err)
	}
	return confirmed, active
}

// TestBadDataHalts inserts a value the daemon cannot map (a negative
// project_id into UInt64). The daemon halts instead of exiting, so that
// the alert can fire and systemd or Kubernetes do not restart it in a
// loop: it keeps serving /metrics and /healthz, /readyz fails with the
// reason, replicator_halted{reason="bad_data"} is 1, `status` says it and
// exits 1, and nothing after the bad transaction is stored or
// acknowledged while it waits. A SIGHUP with a fixed configuration
// (invalid = "clamp") goes on from the checkpoint; SIGTERM exits 0.
func TestBadDataHalts(t *testing.T) {
	e := newEnv(t, "")
	e.setup()
	// The progress table as an earlier version made it, without the halt
	// columns: status reads it, and the daemon adds them.
	if err := e.ch.Exec(context.Background(), fmt.Sprintf("DROP TABLE db_%s.replicator_progress", e.name)); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.Exec(context.Background(), fmt.Sprintf("CREATE TABLE db_%s.replicator_progress (slot String, updated_us UInt64, "+
		"oldest_unstored_us UInt64) ENGINE = ReplacingMergeTree(updated_us) ORDER BY slot", e.name)); err != nil {
		t.Fatal(err)
	}
	if _, code, errs := e.statusCode(); code != 0 {
		t.Fatalf("status on a progress table of an earlier version: exit %d\n%s", code, errs)
	}
	d := e.start()
	e.insertEvents(10)
	e.converge("before the bad row", convergeTimeout)
	e.exec(`INSERT INTO events (id, project_id, author_id, action) VALUES (777, -5, 1, 1)`)
	var badEnd uint64
	if err := e.pg.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn() - '0/0'`).Scan(&badEnd); err != nil {
		t.Fatal(err)
	}
	e.insertEvents(5) // after the bad transaction: must wait for it

	why := e.waitHalted(d, 30*time.Second)
	logs := d.Logs()
	for _, want := range []string{"public.events", "project_id", "id=777", "-5", "negative"} {
		if !strings.Contains(why, want) {
			t.Errorf("/readyz does not name %q: %s", want, why)
		}
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not name %q:\n%s", want, tail(logs, 2000))
		}
	}
	cp := e.checkpointLSN()
	confirmed, _ := e.slotState()
	if cp >= badEnd || confirmed > cp {
		t.Errorf("checkpoint %d or acknowledgement %d past the bad transaction (WAL %d after its commit)", cp, confirmed, badEnd)
	}
	m1 := e.scrape()
	time.Sleep(3 * time.Second) // heartbeats (1s) and keepalives meanwhile
	select {
	case <-d.done:
		t.Fatalf("the halted daemon exited with %d\n%s", d.cmd.ProcessState.ExitCode(), tail(d.Logs(), 2000))
	default:
	}
	if code, _ := e.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz of the halted daemon: %d", code)
	}
	m2 := e.scrape()
	if v := metric(m2, `replicator_halted{reason="bad_data"}`); v != 1 {
		t.Errorf("replicator_halted{reason=\"bad_data\"} = %v, want 1", v)
	}
	if metric(m2, "replicator_errors_total{kind=\"mapping\"}") < 1 {
		t.Errorf("no mapping error counted:\n%s", grepLines(m2, "replicator_errors_total"))
	}
	if l1, l2 := metric(m1, "replicator_lag_seconds"), metric(m2, "replicator_lag_seconds"); metric(m2, "replicator_lag_known") != 1 || l2 < l1+2 {
		t.Errorf("the lag does not rise while halted: %v then %v (known %v)", l1, l2, metric(m2, "replicator_lag_known"))
	}
	if after := e.checkpointLSN(); after != cp {
		t.Errorf("the checkpoint moved while halted: %d -> %d", cp, after)
	}
	if now, active := e.slotState(); now != confirmed || active {
		t.Errorf("while halted: confirmed_flush %d -> %d, slot active %v; want nothing acknowledged, nothing streamed", confirmed, now, active)
	}
	var stored uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.events_live", e.name)).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 10 {
		t.Errorf("%d events stored while halted, want the 10 before the bad one", stored)
	}
	st, code, errs := e.statusCode()
	halted, _ := st["halted"].(map[string]any)
	if code != 1 || halted["reason"] != "bad_data" || !strings.Contains(fmt.Sprint(halted["error"]), "id=777") {
		t.Errorf("status of a halted daemon: exit %d, halted %v\n%s", code, st["halted"], errs)
	}
	if out, _, _ := e.cli("status", "--config", e.config); !strings.Contains(out, "the daemon halted (bad_data)") {
		t.Errorf("status text does not say the daemon halted:\n%s", out)
	}

	// A configuration file with an error: kept, the reload metric says so,
	// still halted.
	good := string(must(os.ReadFile(e.config)))
	if err := os.WriteFile(e.config, []byte(good+"\nbatch {"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); metric(e.scrape(), "replicator_config_last_reload_successful") != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("replicator_config_last_reload_successful stayed 1 after a SIGHUP with a broken file\n%s", tail(d.Logs(), 2000))
		}
	}
	if code, why := e.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(why, "halted (bad_data)") {
		t.Errorf("after a failed reload: /readyz %d %q, want still halted", code, why)
	}
	if err := os.WriteFile(e.config, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}

	// The fix: store the nearest value. SIGHUP tries again.
	e.setConfig(`column "project_id"  { type = "UInt64" }`, `column "project_id"  {
    type    = "UInt64"
    invalid = "clamp"
  }`)
	d.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(convergeTimeout); ; time.Sleep(200 * time.Millisecond) {
		var n, p uint64
		e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count(), sumIf(project_id, id = 777) FROM db_%s.events_live", e.name)).Scan(&n, &p)
		if code, _ := e.get("/readyz"); code == http.StatusOK && n == 16 && p == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP with invalid = \"clamp\": %d events stored, want 16\n%s", n, tail(d.Logs(), 3000))
		}
	}
	m := e.scrape()
	if v := metric(m, `replicator_halted{reason="bad_data"}`); v != 0 {
		t.Errorf("replicator_halted after the fix = %v, want 0", v)
	}
	if v := metric(m, "replicator_config_last_reload_successful"); v != 1 {
		t.Errorf("replicator_config_last_reload_successful after a good reload = %v, want 1", v)
	}
	if st, code, errs := e.statusCode(); code != 0 || st["halted"] != nil {
		t.Errorf("status after the fix: exit %d, halted %v\n%s", code, st["halted"], errs)
	}
	if code, took := d.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit %d after %s", code, took)
	}
}

// proxy forwards TCP connections to a server until it is cut: then the
// server is unreachable (connections reset, new ones refused) until it is
// resumed on the same address.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// resume listens on the proxy's address again.
func (p *proxy) resume() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// TestLagRisesWhileDisconnected cuts the daemon off ClickHouse while the
// database is idle: replicator_connected{server="clickhouse"} drops to 0,
// /readyz fails, and replicator_lag_seconds, which read about 0 while
// streaming, rises from the newest heartbeat the last checkpoint covers
// (heartbeats every second here) instead of freezing. Back online, the
// daemon catches up and the lag falls again. Then both servers are cut:
// both read disconnected.
func TestLagRisesWhileDisconnected(t *testing.T) {
	e := newEnv(t, "")
	ch := startProxy(t, chServer.Addr())
	e.setConfig(fmt.Sprintf("addr     = [%q]", chServer.Addr()), fmt.Sprintf("addr     = [%q]", ch.addr))
	pg := startProxy(t, fmt.Sprintf("%s:%d", pgServer.Host, pgServer.Port))
	e.setConfig(fmt.Sprintf("@%s:%d/", pgServer.Host, pgServer.Port), "@"+pg.addr+"/")
	e.setup()
	d := e.start()
	e.insertEvents(10)
	e.converge("before the outage", convergeTimeout)
	waitMetric := func(what string, ok func(m string) bool) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			m := e.scrape()
			if ok(m) {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s\n%s\n%s", what, grepLines(m, "replicator_"), tail(d.Logs(), 2000))
			}
		}
	}
	m := waitMetric("streaming, caught up", func(m string) bool {
		return metric(m, "replicator_ready") == 1 && metric(m, `replicator_connected{server="clickhouse"}`) == 1 &&
			metric(m, `replicator_connected{server="postgres"}`) == 1 && metric(m, "replicator_last_checkpoint_timestamp_seconds") > 0
	})
	if lag := metric(m, "replicator_lag_seconds"); lag != 0 {
		t.Errorf("lag while streaming and caught up: %v, want 0", lag)
	}
	time.Sleep(2 * time.Second) // a heartbeat or two stored

	ch.cut()
	cutAt := time.Now()
	m = waitMetric("ClickHouse unreachable", func(m string) bool {
		return metric(m, `replicator_connected{server="clickhouse"}`) == 0 && metric(m, "replicator_streaming") == 0
	})
	if code, why := e.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(why, "not streaming") {
		t.Errorf("/readyz while disconnected: %d %q", code, why)
	}
	if metric(m, `replicator_connected{server="postgres"}`) != 1 {
		t.Errorf("postgres counted as disconnected while only ClickHouse is:\n%s", grepLines(m, "replicator_connected"))
	}
	time.Sleep(3 * time.Second)
	m2 := e.scrape()
	l1, l2 := metric(m, "replicator_lag_seconds"), metric(m2, "replicator_lag_seconds")
	if metric(m2, "replicator_lag_known") != 1 || l2 < l1+2.5 || l2 < time.Since(cutAt).Seconds() || l2 > time.Since(cutAt).Seconds()+5 {
		t.Errorf("lag while disconnected: %v then %v (known %v), want it rising from the last heartbeat stored before the cut %s ago",
			l1, l2, metric(m2, "replicator_lag_known"), time.Since(cutAt).Round(time.Millisecond))
	}
	if metric(m2, "replicator_reconnects_total") < 1 {
		t.Errorf("no reconnect attempt counted")
	}

	ch.resume()
	e.insertEvents(5)
	e.converge("after the outage", convergeTimeout)
	m = waitMetric("streaming again", func(m string) bool {
		return metric(m, `replicator_connected{server="clickhouse"}`) == 1 && metric(m, "replicator_ready") == 1
	})
	if lag := metric(m, "replicator_lag_seconds"); lag > 1 {
		t.Errorf("lag after catching up: %v", lag)
	}

	// Both servers unreachable.
	time.Sleep(2 * time.Second)
	pg.cut()
	ch.cut()
	m = waitMetric("both servers unreachable", func(m string) bool {
		return metric(m, `replicator_connected{server="clickhouse"}`) == 0 && metric(m, `replicator_connected{server="postgres"}`) == 0
	})
	time.Sleep(2 * time.Second)
	if m2 := e.scrape(); metric(m2, "replicator_lag_known") != 1 || metric(m2, "replicator_lag_seconds") < metric(m, "replicator_lag_seconds")+1.5 {
		t.Errorf("lag with both servers unreachable: %v then %v", metric(m, "replicator_lag_seconds"), metric(m2, "replicator_lag_seconds"))
	}
	pg.resume()
	ch.resume()
	e.insertEvents(5)
	e.converge("after both servers came back", convergeTimeout)
	waitMetric("both servers back", func(m string) bool {
		return metric(m, `replicator_connected{server="clickhouse"}`) == 1 && metric(m, `replicator_connected{server="postgres"}`) == 1 &&
			metric(m, "replicator_ready") == 1
	})
	d.stop(t)
}

package test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestStatusAndVerifyJSON reads status and verify as JSON: healthy and
// equal with exit 0, then a row only ClickHouse has (verify exits 1 and
// counts it), then a dropped slot (status exits 1 and says why).
func TestStatusAndVerifyJSON(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(100)
	e.setup()
	d := e.start()
	e.insertEvents(50)
	e.converge("before status", convergeTimeout)

	st, code, errs := e.statusCode()
	if code != 0 || st["healthy"] != true || st["has_checkpoint"] != true || st["slot_exists"] != true {
		t.Errorf("status --json: exit %d, healthy %v, has_checkpoint %v, slot_exists %v: %s", code, st["healthy"], st["has_checkpoint"], st["slot_exists"], errs)
	}
	if p, ok := st["problems"].([]any); !ok || len(p) != 0 {
		t.Errorf("status --json: problems %v, want []", st["problems"])
	}

	v, code, errs := e.verifyJSON()
	tables, _ := v["tables"].([]any)
	if code != 0 || v["equal"] != true || len(tables) != 1 {
		t.Fatalf("verify --json on equal tables: exit %d, %v: %s", code, v, errs)
	}
	if tb := tables[0].(map[string]any); tb["table"] != "public.events" || tb["equal"] != true || num(tb, "compared") != 150 {
		t.Errorf("verify --json: %v, want public.events equal with 150 rows compared", tb)
	}

	db := "db_" + e.name
	q := fmt.Sprintf(`INSERT INTO %s.events (id, author_id, action, _version, _deleted) VALUES (999999999, 1, 1, 1, 0)`, db)
	if _, err := chServer.Query(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	v, code, errs = e.verifyJSON()
	tables, _ = v["tables"].([]any)
	if code != 1 || v["equal"] != false || len(tables) != 1 {
		t.Fatalf("verify --json on a different copy: exit %d (want 1), %v: %s", code, v, errs)
	}
	if tb := tables[0].(map[string]any); tb["equal"] != false || num(tb, "extra") != 1 {
		t.Errorf("verify --json: %v, want 1 extra row", tb)
	}
	d.stop(t)

	e.waitSlotFree()
	e.exec("SELECT pg_drop_replication_slot($1)", "slot_"+e.name)
	st, code, _ = e.statusCode()
	p, _ := st["problems"].([]any)
	if code != 1 || st["healthy"] != false || len(p) == 0 || !strings.Contains(fmt.Sprint(p), "slot does not exist") {
		t.Errorf("status --json without a slot: exit %d (want 1), healthy %v, problems %v", code, st["healthy"], p)
	}
}

// verifyJSON runs verify --json and decodes its output.
func (e *env) verifyJSON() (map[string]any, int, string) {
	e.t.Helper()
	out, errs, code := e.cli("verify", "--config", e.config, "--json")
	m := map[string]any{}
	if err := jsonUnmarshal(out, &m); err != nil {
		e.t.Fatalf("verify json: %v\n%s\n%s", err, out, errs)
	}
	return m, code, errs
}

// TestTeardown refuses while the daemon streams (naming its pid) and
// without a terminal or --yes; then drops the slot and the publication
// setup made, keeps ClickHouse until --drop-clickhouse, and keeps a
// publication someone else made.
func TestTeardown(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(20)
	e.setup()
	slot, pub, db := "slot_"+e.name, "pub_"+e.name, "db_"+e.name
	if got := e.pgString("SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1", pub); got != "created by replicator setup" {
		t.Errorf("setup's publication has comment %q, want the mark teardown drops it by", got)
	}
	d := e.start()
	e.insertEvents(10) // through the stream: the daemon holds the slot
	e.converge("before teardown", convergeTimeout)
	out, errs, code := e.cli("teardown", "--config", e.config, "--yes")
	if code != 1 || !strings.Contains(errs, "replicator teardown: ") || !strings.Contains(errs, "in use by walsender pid ") {
		t.Errorf("teardown while the daemon streams: exit %d (want 1), stderr %q", code, errs)
	}
	if e.pgString("SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = $1", slot) != "1" {
		t.Fatalf("teardown dropped the slot of a running daemon:\n%s", out)
	}
	d.stop(t)
	e.waitSlotFree()

	if _, errs, code := e.cli("teardown", "--config", e.config); code != 2 || !strings.Contains(errs, "--yes") {
		t.Errorf("teardown without a terminal or --yes: exit %d (want 2), %s", code, errs)
	}
	if e.pgString("SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = $1", slot) != "1" {
		t.Fatal("teardown without a confirmation dropped the slot")
	}

	// On a terminal it asks: "no" drops nothing, "yes" goes on.
	if out, code, ok := e.onTerminal("no\n", "teardown", "--config", e.config); ok &&
		(code != 1 || !strings.Contains(out, "type yes to go on") || !strings.Contains(out, "not confirmed")) {
		t.Errorf("teardown answered no on a terminal: exit %d (want 1)\n%s", code, out)
	}
	if e.pgString("SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = $1", slot) != "1" {
		t.Fatal("teardown dropped the slot on the answer no")
	}
	out, code, ok := e.onTerminal("yes\n", "teardown", "--config", e.config)
	if !ok {
		out, errs, code = e.cli("teardown", "--config", e.config, "--yes")
		out += errs
	}
	if code != 0 {
		t.Fatalf("teardown: exit %d\n%s", code, out)
	}
	for _, want := range []string{"dropped replication slot " + slot, "dropped publication " + pub, "ClickHouse database " + db + ": kept"} {
		if !strings.Contains(out, want) {
			t.Errorf("teardown output lacks %q:\n%s", want, out)
		}
	}
	if n := e.pgString("SELECT ((SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_publication WHERE pubname = $2))::text",
		slot, pub); n != "0" {
		t.Errorf("%s slots and publications left after teardown", n)
	}
	if n := e.chCount(fmt.Sprintf("SELECT count() FROM system.tables WHERE database = '%s' AND name IN ('events', 'events_live', '%s')", db, "replicator_checkpoints")); n != 3 {
		t.Errorf("teardown without --drop-clickhouse left %d of the target, view and checkpoint table, want 3", n)
	}

	out, errs, code = e.cli("teardown", "--config", e.config, "--yes", "--drop-clickhouse")
	if code != 0 || !strings.Contains(out, "slot "+slot+" does not exist") || !strings.Contains(out, "DROP TABLE IF EXISTS `"+db+"`.`events`") {
		t.Fatalf("teardown --drop-clickhouse: exit %d\n%s\n%s", code, out, errs)
	}
	if n := e.chCount(fmt.Sprintf("SELECT count() FROM system.tables WHERE database = '%s'", db)); n != 0 {
		t.Errorf("teardown --drop-clickhouse left %d tables in %s", n, db)
	}

	// A publication setup did not make may serve others: it stays. The
	// table that marks resyncs before PostgreSQL 14 (made here by hand)
	// goes when no other slot has rows in it.
	e.exec(fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE events", pub))
	e.setup()
	e.exec("CREATE TABLE IF NOT EXISTS public.replicator_marks (slot text NOT NULL, source text NOT NULL, PRIMARY KEY (slot, source))")
	e.exec("INSERT INTO public.replicator_marks VALUES ($1, 'public.events')", slot)
	out, errs, code = e.cli("teardown", "--config", e.config, "--yes")
	if code != 0 || !strings.Contains(out, "dropped replication slot "+slot) || !strings.Contains(out, "publication "+pub+": kept") ||
		!strings.Contains(out, "dropped table public.replicator_marks") {
		t.Errorf("teardown with a publication setup did not make: exit %d\n%s\n%s", code, out, errs)
	}
	if e.pgString("SELECT count(*)::text FROM pg_publication WHERE pubname = $1", pub) != "1" {
		t.Error("teardown dropped a publication setup did not make")
	}
	if e.pgString("SELECT (to_regclass('public.replicator_marks') IS NULL)::text") != "true" {
		t.Error("teardown left public.replicator_marks")
	}
}

// pgString returns the one text value of a query.
func (e *env) pgString(q string, args ...any) string {
	e.t.Helper()
	var s string
	if err := e.pg.QueryRow(context.Background(), q, args...).Scan(&s); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return s
}

// waitSlotFree waits up to 10 s for the walsender of a stopped daemon to
// release the slot.
func (e *env) waitSlotFree() {
	e.t.Helper()
	e.exec(`DO $$BEGIN
		FOR i IN 1..100 LOOP
			EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '` + "slot_" + e.name + `' AND active);
			PERFORM pg_sleep(0.1);
		END LOOP;
	END$$`)
}

// TestExitCodesBeforeSetup: before setup (the ClickHouse database made by
// hand), run stops at once on the missing checkpoint with the exit code of
// a permanent error, 4, which systemd's RestartPreventExitStatus= uses;
// status is unhealthy (exit 1) and says what to run.
func TestExitCodesBeforeSetup(t *testing.T) {
	e := newEnv(t, "")
	if err := e.ch.Exec(context.Background(), "CREATE DATABASE db_"+e.name); err != nil {
		t.Fatal(err)
	}
	_, errs, code := e.cli("run", "--config", e.config)
	if code != 4 || !strings.Contains(errs, "no checkpoint for slot") {
		t.Errorf("run before setup: exit %d (want 4)\n%s", code, errs)
	}
	st, code, errs := e.statusCode()
	p, _ := st["problems"].([]any)
	if code != 1 || st["healthy"] != false || st["has_checkpoint"] != false || !strings.Contains(fmt.Sprint(p), "run `replicator setup`") {
		t.Errorf("status before setup: exit %d (want 1), %v: %s", code, st, errs)
	}
}

// onTerminal runs the replicator with args on a pseudo-terminal (util-linux
// script) that is sent input, and returns what it printed there and its
// exit code; ok is false where script is missing.
func (e *env) onTerminal(input string, args ...string) (out string, code int, ok bool) {
	e.t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		e.t.Logf("no script(1) here: the confirmation on a terminal is not tried")
		return "", 0, false
	}
	cmd := exec.Command("script", "-qec", binary+" "+strings.Join(args, " "), "/dev/null")
	cmd.Stdin = strings.NewReader(input)
	b, err := cmd.CombinedOutput()
	if ee, isExit := err.(*exec.ExitError); isExit {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return string(b), code, true
}

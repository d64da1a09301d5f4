package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(30000)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.exec(`UPDATE events SET fingerprint = decode('00ff', 'hex') WHERE id % 10 = 0`)
	e.exec(`DELETE FROM events WHERE id % 17 = 0`)
	e.converge("before verify", convergeTimeout)

	out, errs, code := e.cli("verify", "--config", e.config)
	if code != 0 || !strings.Contains(out, "equal") {
		t.Fatalf("verify on equal tables: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "rows/s") || !strings.Contains(out, "compared 2823") && !strings.Contains(out, "compared") {
		t.Errorf("verify output lacks counts or speed:\n%s", out)
	}
	t.Logf("verify on equal tables:\n%s", out)

	// Under a live workload: no false alarms.
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 5, 2)
	time.Sleep(500 * time.Millisecond)
	out, errs, code = e.cli("verify", "--config", e.config)
	cancel()
	wait()
	if code != 0 {
		t.Fatalf("verify under a live workload reported differences: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("verify under load:\n%s", out)
	e.converge("after live workload", convergeTimeout)

	// Break ClickHouse on purpose: a row that differs, a row that is
	// missing (a newer tombstone) and a row that does not exist in Postgres.
	var differ, missing int64
	if err := e.pg.QueryRow(context.Background(), `SELECT min(id), max(id) FROM events`).Scan(&differ, &missing); err != nil {
		t.Fatal(err)
	}
	db := "db_" + e.name
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO %s.events (id, author_id, action, _version, _deleted) SELECT id, author_id + 1, action, _version + 1, 0 FROM %s.events FINAL WHERE id = %d`, db, db, differ),
		fmt.Sprintf(`INSERT INTO %s.events (id, _version, _deleted) SELECT id, _version + 1, 1 FROM %s.events FINAL WHERE id = %d`, db, db, missing),
		fmt.Sprintf(`INSERT INTO %s.events (id, author_id, action, _version, _deleted) VALUES (999999999, 1, 1, 1, 0)`, db),
	} {
		if _, err := chServer.Query(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	out, errs, code = e.cli("verify", "--config", e.config, "--table", "public.events")
	if code != 1 {
		t.Fatalf("verify on broken copy: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"missing in ClickHouse 1", "extra in ClickHouse 1", "different 1",
		fmt.Sprintf("first missing: id=%d", missing), "first extra: id=999999999", fmt.Sprintf("first different: id=%d", differ)} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
}

// TestVerifyDecimalsByChecksum verifies a table full of decimals with
// trailing zeros (1.50, 2.00, 0, arrays of them): both sides render them
// as the server prints a Decimal, so every range agrees by checksum and
// none is read row by row.
func TestVerifyDecimalsByChecksum(t *testing.T) {
	e := newEnv(t, `
table "public.prices" {
  order_by = ["id"]
  column "ap" { nullable = true }
}
`)
	e.exec(`CREATE TABLE prices (id bigint PRIMARY KEY, p numeric(10,2) NOT NULL, q numeric(12,4), ap numeric(8,3)[])`)
	e.exec(`INSERT INTO prices SELECT g, (g % 7) * 0.5, CASE WHEN g % 5 = 0 THEN NULL ELSE (g % 11) * 0.25 - 1 END,
		ARRAY[(g % 4) * 0.5, NULL, 2.000, -(g % 3) * 0.1]::numeric(8,3)[] FROM generate_series(1, 5000) g`)
	e.setup()
	d := e.start()
	defer d.stop(t)
	e.exec("UPDATE prices SET p = p + 1.10 WHERE id % 10 = 0")
	var text string
	if err := e.ch.QueryRow(context.Background(), "SELECT toString(toDecimal32(1.5, 2))").Scan(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("the server prints 1.50 of scale 2 as %q", text)
	e.sameRows("prices", "SELECT concat_ws('|', id, (p * 100)::bigint) FROM prices",
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(toInt64(p * 100))) FROM db_%s.prices_live", e.name))
	out, errs, code := e.cli("verify", "--config", e.config, "--table", "public.prices", "--range-rows", "1000")
	if code != 0 || !strings.Contains(out, "public.prices: equal") || !strings.Contains(out, "compared 5000 rows in 6 key ranges (0 drilled down)") {
		t.Fatalf("verify of decimals: exit %d, want 0, equal and 6 ranges none drilled down\n%s\n%s", code, out, errs)
	}
}

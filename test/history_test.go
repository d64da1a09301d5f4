package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

const histDDL = `CREATE TABLE hist (id bigint PRIMARY KEY, qty integer NOT NULL, body text);
CREATE TABLE keep (id bigint PRIMARY KEY, v integer NOT NULL)`

const histConfig = `
table "public.hist" {
  order_by = ["id"]
  mode     = "history"
}
table "public.keep" {
  order_by = ["id"]
  ignore   = ["delete", "truncate"]
}
`

// TestHistoryMode replicates a table in history mode through inserts,
// updates (some that leave a TOASTed value unchanged, two in one
// transaction), a delete and a change of id, with a kill -9 in between:
// the history table holds every change in commit order with its op, and
// its live view equals Postgres. A table that ignores deletes and
// truncations keeps its rows through both.
func TestHistoryMode(t *testing.T) {
	e := newEnv(t, histConfig)
	e.exec(histDDL)
	big := "(SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 300) g)"
	e.exec("INSERT INTO hist SELECT g, 0, CASE WHEN g <= 10 THEN " + big + " ELSE 's' END FROM generate_series(1, 100) g")
	e.exec("INSERT INTO keep SELECT g, g FROM generate_series(1, 50) g")
	e.setup()
	d := e.start()
	steps := []struct {
		sql  string
		want []string // id|qty|op|length(body)
	}{
		{"INSERT INTO hist VALUES (1001, 5, 'a')", []string{"1001|5|insert|1"}},
		{"UPDATE hist SET qty = 6 WHERE id = 1001", []string{"1001|6|update|1"}},
		{"UPDATE hist SET qty = 7 WHERE id = 3", []string{"3|7|update|9600"}},
		{"BEGIN; UPDATE hist SET qty = 8 WHERE id = 3; UPDATE hist SET qty = 9 WHERE id = 3; COMMIT", []string{"3|8|update|9600", "3|9|update|9600"}},
		{"kill", nil},
		{"DELETE FROM hist WHERE id = 1001", []string{"1001|0|delete|0"}},
		{"UPDATE hist SET id = 2000 WHERE id = 4", []string{"4|0|delete|0", "2000|0|update|9600"}},
		{"UPDATE hist SET qty = 1, body = 'short' WHERE id = 5", []string{"5|1|update|5"}},
		{"UPDATE hist SET qty = 2 WHERE id = 5", []string{"5|2|update|5"}},
		{"INSERT INTO hist VALUES (3000, 1, 'c'); DELETE FROM keep WHERE id <= 10", []string{"3000|1|insert|1"}},
		{"TRUNCATE keep", nil},
		{"INSERT INTO keep VALUES (100, 100)", nil},
	}
	var want []string
	for _, s := range steps {
		if s.sql == "kill" {
			time.Sleep(300 * time.Millisecond)
			d.kill()
			d = e.start()
			continue
		}
		e.exec(s.sql)
		want = append(want, s.want...)
	}
	q := fmt.Sprintf("SELECT concat(toString(id), '|', toString(qty), '|', toString(_op), '|', toString(length(body))) "+
		"FROM db_%s.hist FINAL WHERE _op != 'snapshot' ORDER BY _version, _seq", e.name)
	var got []string
	for deadline := time.Now().Add(convergeTimeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got = nil
		rows, err := e.ch.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		rows.Close()
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			break
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var snapshots uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM db_%s.hist FINAL WHERE _op = 'snapshot'", e.name)).Scan(&snapshots); err != nil || snapshots != 100 {
		t.Errorf("%d copied rows (%v), want 100", snapshots, err)
	}
	e.sameRows("hist's live view", "SELECT concat_ws('|', id, qty, md5(coalesce(body, ''))) FROM hist",
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(qty), '|', lower(hex(MD5(body)))) FROM db_%s.hist_live", e.name))
	e.sameRows("keep without deletes and truncations", "SELECT concat_ws('|', g, g) FROM generate_series(1, 50) g UNION ALL SELECT '100|100'",
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(v)) FROM db_%s.keep_live", e.name))
	vout, _, code := e.cli("verify", "--config", e.config)
	if code != 0 || !strings.Contains(vout, "table public.hist: not verified: a history table keeps every change") {
		t.Errorf("verify: exit %d\n%s", code, vout)
	}
	d.stop(t)
}

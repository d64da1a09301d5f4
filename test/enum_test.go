package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

const enumConfig = `
table "public.items" {
  order_by = ["lvl", "id"]
  column "lvl" { type = "Enum" }
  column "m" {
    type     = "Enum"
    nullable = true
  }
}
`

const enumPgCols, enumChCols = "id, lvl::text, coalesce(m::text, 'NULL'), coalesce(note, '')",
	"toString(id), '|', toString(lvl), '|', ifNull(toString(m), 'NULL'), '|', note"

// enumTypes returns ClickHouse's types of items' enum columns.
func (e *env) enumTypes() (lvl, m string) {
	e.t.Helper()
	err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT anyIf(type, name = 'lvl'), anyIf(type, name = 'm') "+
		"FROM system.columns WHERE database = 'db_%s' AND table = 'items'", e.name)).Scan(&lvl, &m)
	if err != nil {
		e.t.Fatal(err)
	}
	return lvl, m
}

// TestEnumColumns maps two enum columns to Enum8, one of them in the
// sorting key (so an update that changes it moves the row) and one
// nullable. Labels added to the Postgres types while the daemon streams
// (ALTER TYPE ... ADD VALUE, which sends no Relation message; BEFORE
// another label, and one with a quote) reach ClickHouse's Enums before the
// first row that carries them, with the values of the labels kept; a kill
// -9 and the replay change nothing; verify agrees. A label renamed in
// Postgres (RENAME VALUE) has the table copied again online, with the new
// labels.
func TestEnumColumns(t *testing.T) {
	e := newEnv(t, enumConfig)
	e.exec(`CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TYPE level AS ENUM ('low', 'high');
CREATE TABLE items (id bigint PRIMARY KEY, lvl level NOT NULL DEFAULT 'low', m mood, note text);
INSERT INTO items SELECT g, CASE WHEN g % 3 = 0 THEN 'high' ELSE 'low' END::level,
  CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN 'ok' ELSE 'sad' END::mood, 'n' || g FROM generate_series(1, 300) g`)
	e.setup()
	if lvl, m := e.enumTypes(); lvl != "Enum8('' = 0, 'low' = 1, 'high' = 2)" || m != "Nullable(Enum8('' = 0, 'sad' = 1, 'ok' = 2))" {
		t.Fatalf("ClickHouse types after setup: lvl %s, m %s", lvl, m)
	}
	d := e.start()
	e.exec("UPDATE items SET lvl = 'high', m = 'ok' WHERE id <= 10")
	e.convergeItems("items before the labels are added", enumPgCols, enumChCols)

	for _, stmt := range []string{
		"ALTER TYPE mood ADD VALUE 'happy' BEFORE 'sad'",
		"ALTER TYPE level ADD VALUE 'mid' AFTER 'low'",
		"ALTER TYPE mood ADD VALUE 'so-so, (x = 1)'",
	} {
		e.exec(stmt)
	}
	e.exec("INSERT INTO items VALUES (1001, 'mid', 'happy', 'new'), (1002, 'low', 'so-so, (x = 1)', 'commas')")
	e.exec("UPDATE items SET lvl = 'mid' WHERE id BETWEEN 11 AND 20")
	e.exec("UPDATE items SET m = 'happy' WHERE id BETWEEN 21 AND 30")
	e.exec("DELETE FROM items WHERE id BETWEEN 31 AND 40")
	e.convergeItems("items after the labels were added", enumPgCols, enumChCols)
	lvl, m := e.enumTypes()
	if lvl != "Enum8('' = 0, 'low' = 1, 'high' = 2, 'mid' = 3)" ||
		m != `Nullable(Enum8('' = 0, 'sad' = 1, 'ok' = 2, 'happy' = 3, 'so-so, (x = 1)' = 4))` {
		t.Errorf("ClickHouse types after ADD VALUE: lvl %s, m %s", lvl, m)
	}
	if !strings.Contains(d.Logs(), "applied schema change") {
		t.Errorf("no schema change logged\n%s", tail(d.Logs(), 3000))
	}

	// A kill and the replay of what the checkpoint does not cover.
	e.exec("UPDATE items SET lvl = 'low', m = NULL WHERE id BETWEEN 41 AND 50")
	time.Sleep(300 * time.Millisecond)
	d.kill()
	e.exec("INSERT INTO items VALUES (1003, 'high', 'so-so, (x = 1)', 'after the kill')")
	// setup run again adds a label added meanwhile.
	e.exec("ALTER TYPE level ADD VALUE 'top'")
	if out := e.setup(); !strings.Contains(out, "MODIFY COLUMN `lvl` Enum8('' = 0, 'low' = 1, 'high' = 2, 'mid' = 3, 'top' = 4)") {
		t.Errorf("setup did not add the label:\n%s", out)
	}
	e.exec("INSERT INTO items VALUES (1005, 'top', NULL, 'top')")
	d = e.start()
	e.convergeItems("items after a kill", enumPgCols, enumChCols)
	if lvl2, m2 := e.enumTypes(); lvl2 != strings.TrimSuffix(lvl, ")")+", 'top' = 4)" || m2 != m {
		t.Errorf("the restart changed the Enums: lvl %s, m %s", lvl2, m2)
	}
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errs)
	}

	// A renamed label: ClickHouse's rows carry the old one. The first
	// change with the new name adds it to the Enum, and the table is
	// copied again online.
	e.exec("ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'")
	e.exec("INSERT INTO items VALUES (1004, 'low', 'fine', 'renamed')")
	if !d.waitLog(t, convergeTimeout, "an enum label was renamed: the table is copied again online", `the labels \"ok\" of the enum of column m were renamed`) {
		t.Fatalf("the renamed label was not noticed\n%s", tail(d.Logs(), 4000))
	}
	e.exec("UPDATE items SET m = 'fine' WHERE id BETWEEN 51 AND 60")
	e.convergeItems("items after the copy", enumPgCols, enumChCols)
	if _, m := e.enumTypes(); !strings.Contains(m, "'fine'") || strings.Contains(m, "'ok'") {
		t.Errorf("ClickHouse type of m after the copy: %s", m)
	}
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify after the copy: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

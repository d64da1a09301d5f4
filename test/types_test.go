package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/replicator/replicator/test/harness"
)

// typesDDL is a table with a column of every kind of Postgres type the
// type table of docs/types.md names.
const typesDDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(10,2);
CREATE TABLE alltypes (
  id bigint PRIMARY KEY,
  b boolean, i2 smallint, i4 integer, i8 bigint,
  n numeric(12,2), nu numeric, f4 real, f8 double precision,
  t text, vc varchar(10), ch char(3), by bytea,
  u uuid, d date, ts timestamp, tstz timestamptz, tm time, iv interval,
  j json, jb jsonb,
  ai integer[], at text[], an numeric(8,3)[], ad date[],
  e mood, ae mood[],
  dom posint, dp price,
  ip inet, mac macaddr, r int4range, pt point,
  dc date, ic integer
)`

const typesConfig = `
table "public.alltypes" {
  order_by = ["id"]
  column "an" { nullable = true }
  column "dc" { invalid = "clamp" }
  column "ic" {
    type    = "Int8"
    invalid = "default"
  }
}
`

// typesWant are the ClickHouse types of alltypes' columns on 18.16.
var typesWant = map[string]string{
	"id": "Int64", "b": "UInt8", "i2": "Int16", "i4": "Int32", "i8": "Int64",
	"n": "Decimal(12, 2)", "nu": "String", "f4": "Float32", "f8": "Float64",
	"t": "String", "vc": "String", "ch": "String", "by": "String",
	"u": "UUID", "d": "Date", "ts": "DateTime('UTC')", "tstz": "DateTime('UTC')", "tm": "String", "iv": "String",
	"j": "String", "jb": "String",
	"ai": "Array(Int32)", "at": "Array(String)", "an": "Array(Nullable(Decimal(8, 3)))", "ad": "Array(Date)",
	"e": "LowCardinality(String)", "ae": "Array(String)", "dom": "Int32", "dp": "Decimal(10, 2)",
	"ip": "String", "mac": "String", "r": "String", "pt": "String", "dc": "Date", "ic": "Int8",
}

// typesRows inserts rows with ordinary, NULL and special values, ids from
// base.
func typesRows(base int) string {
	return fmt.Sprintf(`INSERT INTO alltypes VALUES
(%[1]d, true, -32768, 2147483647, -9223372036854775808, 1234567890.12, 123456789012345678901234567890.123456789,
 1.5, -2.25, 'plain', 'varchar', 'ab', '\x00ff10'::bytea,
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-05-01 10:11:12.123456', '2024-05-01 10:11:12.654321+02',
 '12:34:56.789', '1 year 2 mons 3 days 04:05:06', '{"a": [1, 2, {"b": null}]}', '{"z": 1, "a": {"n": [true, "x"]}}',
 '{1,2,3}', '{"a b","c\"d",NULL,"NULL",""}', '{1.500,NULL,-0.001}', '{2024-02-29,NULL}',
 'happy', '{sad,ok}', 7, 19.99, '192.168.0.1/24', '08:00:2b:01:02:03', '[1,10)', '(1.5,2)'),
(%[2]d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(%[3]d, false, 0, 0, 0, -0.01, 'NaN', 'NaN', '-Infinity', E'tab\there\nnewline \\ back ''quote'' "dq" ünïcödé 🚀', '', 'x', '\x'::bytea,
 '00000000-0000-0000-0000-000000000000', '1970-01-01', '1970-01-01 00:00:00', '2106-02-07 06:28:15+00',
 '00:00', '-1 days', '[]', '{"nested": {"deep": {"deeper": [1, {"k": "v\"q"}]}}}',
 '{}', '{}', '{}', '{}', 'sad', '{}', 1, 0, '::1', 'ff:ff:ff:ff:ff:ff', 'empty', '(0,0)'),
(%[4]d, true, 1, 1, 1, 9999999999.99, '-1e-20', 'Infinity', 'NaN', repeat('long ', 2000), 'vc', 'c', decode(repeat('ab', 3000), 'hex'),
 'ffffffff-ffff-ffff-ffff-ffffffffffff', '2148-12-31', '2024-01-01 00:00:00.000001', '2024-01-01 23:59:59.999999+00',
 '23:59:59.999999', '0', 'null', '[1, "two", 3.0]', '{-2147483648,2147483647}', '{"{}",","}', '{99999.999}',
 '{1970-01-01,2148-12-31}', 'ok', '{happy,NULL}', 2147483647, -99999999.99, '10.0.0.0/8', '00:00:00:00:00:00', '(,)', '(-1,-1)')`,
		base, base+1, base+2, base+3)
}

// typesPG and typesCH render every column of alltypes as the same text
// in Postgres and in ClickHouse, under the mapping (NULL as the column
// type's default, NULL array elements as the element's default or NULL
// where nullable), independently of the replicator's own code.
const typesPG = `SELECT concat_ws('|', id, COALESCE(b::int, 0), COALESCE(i2, 0), COALESCE(i4, 0), COALESCE(i8, 0),
  COALESCE(n::text, '0.00'), COALESCE(nu::text, ''),
  COALESCE(CASE WHEN f4 = 'NaN' THEN 'nan' WHEN f4 = 'Infinity' THEN 'inf' WHEN f4 = '-Infinity' THEN '-inf' ELSE f4::text END, '0'),
  COALESCE(CASE WHEN f8 = 'NaN' THEN 'nan' WHEN f8 = 'Infinity' THEN 'inf' WHEN f8 = '-Infinity' THEN '-inf' ELSE f8::text END, '0'),
  md5(COALESCE(t, '')), COALESCE(vc, ''), COALESCE(format('%s', ch), ''), COALESCE(encode(by, 'hex'), ''),
  COALESCE(u::text, '00000000-0000-0000-0000-000000000000'), COALESCE(d - date '1970-01-01', 0),
  COALESCE(floor(extract(epoch FROM ts))::bigint, 0), COALESCE(floor(extract(epoch FROM tstz))::bigint, 0),
  COALESCE(tm::text, ''), COALESCE(iv::text, ''), COALESCE(j::text, ''), COALESCE(jb::text, ''),
  '[' || COALESCE(array_to_string(ARRAY(SELECT COALESCE(x::text, '0') FROM unnest(ai) WITH ORDINALITY u(x, o) ORDER BY o), ','), '') || ']',
  '[' || COALESCE(array_to_string(ARRAY(SELECT COALESCE(x, '') FROM unnest(at) WITH ORDINALITY u(x, o) ORDER BY o), '~'), '') || ']',
  '[' || COALESCE(array_to_string(ARRAY(SELECT COALESCE(x::text, 'NULL') FROM unnest(an) WITH ORDINALITY u(x, o) ORDER BY o), ','), '') || ']',
  '[' || COALESCE(array_to_string(ARRAY(SELECT COALESCE((x - date '1970-01-01')::text, '0') FROM unnest(ad) WITH ORDINALITY u(x, o) ORDER BY o), ','), '') || ']',
  COALESCE(e::text, ''),
  '[' || COALESCE(array_to_string(ARRAY(SELECT COALESCE(x::text, '') FROM unnest(ae) WITH ORDINALITY u(x, o) ORDER BY o), ','), '') || ']',
  COALESCE(dom, 0), COALESCE(dp::text, '0.00'), COALESCE(format('%s', ip), ''), COALESCE(mac::text, ''), COALESCE(r::text, ''),
  COALESCE(pt::text, '')) FROM alltypes`

const typesCH = `SELECT concat(toString(id), '|', toString(b), '|', toString(i2), '|', toString(i4), '|', toString(i8), '|',
  toString(n), '|', nu, '|', toString(f4), '|', toString(f8), '|',
  lower(hex(MD5(t))), '|', vc, '|', ch, '|', lower(hex(by)), '|',
  toString(u), '|', toString(toInt32(d)), '|', toString(toUnixTimestamp(ts)), '|', toString(toUnixTimestamp(tstz)), '|',
  tm, '|', iv, '|', j, '|', jb, '|',
  concat('[', arrayStringConcat(arrayMap(x -> toString(x), ai), ','), ']'), '|',
  concat('[', arrayStringConcat(at, '~'), ']'), '|',
  concat('[', arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), an), ','), ']'), '|',
  concat('[', arrayStringConcat(arrayMap(x -> toString(toInt32(x)), ad), ','), ']'), '|',
  toString(e), '|', concat('[', arrayStringConcat(ae, ','), ']'), '|',
  toString(dom), '|', toString(dp), '|', ip, '|', mac, '|', r, '|', pt) FROM %s.alltypes_live`

// TestEveryType copies and streams a row of every type with ordinary, NULL
// and special values: the ClickHouse columns have the documented types and
// every value equals Postgres' under the mapping; verify agrees. A value
// ClickHouse cannot hold stops the daemon naming table, column and key.
func TestEveryType(t *testing.T) {
	e := newEnv(t, typesConfig)
	e.exec(typesDDL)
	// The replicator's sessions print intervals in ISO 8601: so does the
	// comparison's.
	e.exec(fmt.Sprintf("ALTER DATABASE %s SET IntervalStyle = 'iso_8601'", e.name))
	e.pg.Reset()
	e.exec(typesRows(1))
	e.exec(`INSERT INTO alltypes (id, dc, ic) VALUES (700, '2300-01-01', 500)`)
	out := e.setup()
	for _, want := range []string{"stored 1 values of public.alltypes column dc", "stored 1 values of public.alltypes column ic"} {
		if !strings.Contains(out, want) {
			t.Errorf("setup output lacks %q:\n%s", want, out)
		}
	}
	db := "db_" + e.name

	rows, err := e.ch.Query(context.Background(), fmt.Sprintf(
		"SELECT name, type FROM system.columns WHERE database = '%s' AND table = 'alltypes'", db))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var n, typ string
		if err := rows.Scan(&n, &typ); err != nil {
			t.Fatal(err)
		}
		got[n] = typ
	}
	rows.Close()
	for col, want := range typesWant {
		if got[col] != want {
			t.Errorf("column %s is %s in ClickHouse, want %s", col, got[col], want)
		}
	}

	chSQL := fmt.Sprintf(typesCH, db)
	e.sameRows("every type, copied", typesPG, chSQL)

	d := e.start()
	e.exec(typesRows(100))
	e.exec(`UPDATE alltypes SET ai = ai || 4, an = '{NULL}', n = n - 1, jb = COALESCE(jb, '{}') || '{"added": "v"}',
		ae = '{ok}', d = '2000-01-01' WHERE id % 2 = 0`)
	e.exec(`UPDATE alltypes SET i4 = 5 WHERE id = 4`) // t and by stay unchanged TOAST values
	e.exec(`DELETE FROM alltypes WHERE id = 101`)
	e.exec(`INSERT INTO alltypes (id, dc, ic) VALUES (600, '1950-01-01', 1000), (601, 'infinity', -1000), (602, '2020-02-02', 100)`)
	e.sameRows("every type, streamed", typesPG, chSQL)
	// Values the type cannot hold, by the columns' invalid options.
	e.sameRows("clamped and default values",
		`SELECT concat_ws('|', id, CASE WHEN id = 600 THEN 0 WHEN id IN (601, 700) THEN date '2148-12-31' - date '1970-01-01'
			ELSE COALESCE(dc - date '1970-01-01', 0) END, CASE WHEN id IN (600, 601, 700) THEN 0 ELSE COALESCE(ic, 0) END) FROM alltypes`,
		fmt.Sprintf("SELECT concat(toString(id), '|', toString(toInt32(dc)), '|', toString(ic)) FROM %s.alltypes_live", db))
	// 600 and 601, and 700 again, which the update of even ids streamed.
	if m := e.scrape(); metric(m, `replicator_invalid_values_total{column="dc",table="public.alltypes"}`) != 3 ||
		metric(m, `replicator_invalid_values_total{column="ic",table="public.alltypes"}`) != 3 {
		t.Errorf("invalid value metrics:\n%s", m)
	}
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify of every type: exit %d\n%s\n%s", code, out, errs)
	}

	// verify sees a changed array and a changed decimal.
	for _, q := range []string{"ALTER TABLE %s.alltypes UPDATE ai = [9] WHERE id = 1", "ALTER TABLE %s.alltypes UPDATE dp = toDecimal64(1, 2) WHERE id = 3"} {
		if err := e.ch.Exec(context.Background(), fmt.Sprintf(q, db)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var n uint64
		e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM %s.alltypes WHERE ai = [9] OR dp = toDecimal64(1, 2)", db)).Scan(&n)
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the tampering did not show")
		}
	}
	if out, _, code := e.cli("verify", "--config", e.config); code == 0 || !strings.Contains(out, "id=1") || !strings.Contains(out, "id=3") {
		t.Errorf("verify of a changed array and decimal: exit %d\n%s", code, out)
	}

	// A date ClickHouse's Date cannot hold halts the daemon with the table,
	// column, key and LSN, and nothing after it is acknowledged.
	e.exec(`INSERT INTO alltypes (id, d) VALUES (500, '1969-12-31')`)
	why := e.waitHalted(d, convergeTimeout)
	logs := d.Logs() + why
	for _, want := range []string{"public.alltypes", "column d", "id=500", "1969-12-31"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the error lacks %q:\n%s", want, tail(logs, 2000))
		}
	}
	// SIGTERM stops a halted daemon.
	if code, took := d.stop(t); code != 0 || took > 10*time.Second {
		t.Errorf("SIGTERM to the halted daemon: exit %d after %s, want 0 within 10s", code, took)
	}
}

// TestTimeKeysOnAServerNotInUTC replicates a table whose primary key holds
// a timestamp, configured as a DateTime without a zone, and a date, to a
// ClickHouse server in Europe/Berlin, which shows those columns in its own
// zone. Updates that leave a TOASTed value unchanged look up the row's
// stored image by its key, and deletes write a tombstone at that key: both
// must match the rows read back, or the daemon stops (no image) or leaves
// deleted rows alive.
func TestTimeKeysOnAServerNotInUTC(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	berlin, err := harness.StartClickHouse(ctx, harness.Options{Log: os.Stderr, TimeZone: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	defer berlin.Close()
	e := newEnv(t, `
table "public.visits" {
  order_by = ["id", "at", "day"]
  column "id" { type = "UInt64" }
  column "at" { type = "DateTime" }
}
`)
	e.setConfig(chServer.Addr(), berlin.Addr())
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{berlin.Addr()}, Protocol: clickhouse.Native})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	e.ch = ch
	e.exec(`CREATE TABLE visits (id bigint, at timestamp, day date, body text, flag int NOT NULL DEFAULT 0,
		PRIMARY KEY (id, at, day))`)
	e.exec(`INSERT INTO visits SELECT g, '2024-01-01 10:00:00'::timestamp + g * interval '1 hour', '2024-07-01'::date + g,
		(SELECT string_agg(md5(random()::text || x || g), '') FROM generate_series(1, 200) x) FROM generate_series(1, 10) g`)
	e.setup()
	d := e.start()
	e.exec(`UPDATE visits SET flag = 1 WHERE id <= 3`)
	e.exec(`DELETE FROM visits WHERE id IN (4, 5)`)
	e.sameRows("visits on a server in Europe/Berlin",
		`SELECT concat_ws('|', id, to_char(at, 'YYYY-MM-DD HH24:MI:SS'), day, md5(body), flag) FROM visits`,
		fmt.Sprintf(`SELECT concat(toString(id), '|', toString(at, 'UTC'), '|', toString(day), '|', lower(hex(MD5(body))), '|',
			toString(flag)) FROM db_%s.visits_live`, e.name))
	select {
	case <-d.done:
		t.Fatalf("daemon exited: %v\n%s", d.err, tail(d.Logs(), 3000))
	default:
	}
}

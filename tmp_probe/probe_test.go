package probe

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/replicator/replicator/test/harness"
)

func TestProbe(t *testing.T) {
	ctx := context.Background()
	ch, err := harness.StartClickHouse(ctx, harness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Stop()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, ReadTimeout: 120 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE docs (id UInt64, flag UInt8, body String, _version UInt64, _deleted UInt8, _seq UInt64) ENGINE = ReplacingMergeTree(_version) ORDER BY id",
		"INSERT INTO docs SELECT number, 0, replicate(hex(MD5(toString(number))), range(64)) AS b, 10, 0, 0 FROM numbers(100000)",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	mk := func(from int) *ext.Table {
		tbl, _ := ext.NewTable("_rows", ext.Column("id", "UInt64"), ext.Column("flag", "UInt8"), ext.Column("_version", "UInt64"), ext.Column("_deleted", "UInt8"), ext.Column("_seq", "UInt64"))
		for i := from; i < from+8192; i++ {
			tbl.Append(uint64(i), uint8(1), uint64(40), uint8(0), uint64(9))
		}
		return tbl
	}
	newest := func(from int) *ext.Table {
		tbl, _ := ext.NewTable("_newest", ext.Column("id", "UInt64"), ext.Column("v", "UInt64"), ext.Column("s", "UInt64"))
		for i := from; i < from+8192; i++ {
			tbl.Append(uint64(i), uint64(10), uint64(0))
		}
		return tbl
	}
	for r := 0; r < 6; r++ {
		q := `INSERT INTO docs (id, flag, body, _version, _deleted, _seq) SELECT id, flag, body, _version, _deleted, _seq FROM _rows ANY INNER JOIN (SELECT id, argMax(body, tuple(_version, _seq)) AS body FROM docs WHERE id IN (SELECT id FROM _rows) GROUP BY id) USING id`
		t0 := time.Now()
		if err := conn.Exec(clickhouse.Context(ctx, clickhouse.WithExternalTable(mk(r*8192))), q); err != nil {
			t.Fatal(q, err)
		}
		t.Logf("argMax %d: %v", r, time.Since(t0))
	}
	for r := 6; r < 12; r++ {
		q := `INSERT INTO docs (id, flag, body, _version, _deleted, _seq) SELECT id, flag, body, _version, _deleted, _seq FROM _rows ANY INNER JOIN (SELECT id, body FROM docs WHERE (id, _version, _seq) IN (SELECT id, v, s FROM _newest)) USING id`
		t0 := time.Now()
		if err := conn.Exec(clickhouse.Context(ctx, clickhouse.WithExternalTable(mk(r*8192)), clickhouse.WithExternalTable(newest(r*8192))), q); err != nil {
			t.Fatal(q, err)
		}
		t.Logf("newest %d: %v", r, time.Since(t0))
	}
	for r := 0; r < 6; r++ {
		q := `SELECT id, flag, body, _version, _deleted, _seq FROM docs WHERE id IN (SELECT id FROM _rows)`
		t0 := time.Now()
		rows, err := conn.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(mk(r*8192+1000)), clickhouse.WithSettings(clickhouse.Settings{"max_block_size": 256})), q)
		if err != nil {
			t.Fatal(q, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		t.Logf("read %d: %v %d", r, time.Since(t0), n)
	}
}

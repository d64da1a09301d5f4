package test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPreparedTransactions: with pgoutput protocol 2 (1 on 13) and no
// two_phase, Postgres decodes a prepared transaction at its COMMIT
// PREPARED, small or large (a large one streamed while it ran, from 14
// on, with a subtransaction rolled back in it), and sends nothing but a
// Stream Abort for one rolled back. Prepared
// transactions that are pending while the daemon is killed and started
// again reach ClickHouse once committed, those rolled back never do, and
// ClickHouse ends equal to Postgres.
func TestPreparedTransactions(t *testing.T) {
	e := newEnv(t, itemsConfig)
	e.exec(itemsDDL)
	e.exec("INSERT INTO items SELECT g, g % 100, 'n' || g FROM generate_series(1, 1000) g")
	e.setup()
	d := e.start()
	e.itemsExact("items copied")
	t.Cleanup(func() {
		// A prepared transaction left by a failure would keep its
		// database from being dropped.
		rows, err := e.pg.Query(context.Background(), "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")
		if err != nil {
			return
		}
		gids, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, gid := range gids {
			e.pg.Exec(context.Background(), "ROLLBACK PREPARED '"+gid+"'")
		}
	})
	// Large ones exceed logical_decoding_work_mem (64kB here) and are
	// streamed while they run.
	prepare := func(gid string, from, n int) {
		t.Helper()
		e.exec(fmt.Sprintf("BEGIN; INSERT INTO items SELECT g, 7, repeat('p', 18) FROM generate_series(%d, %d) g; "+
			"SAVEPOINT s; INSERT INTO items SELECT g, 8, 'undone' FROM generate_series(%d, %d) g; ROLLBACK TO SAVEPOINT s; "+
			"UPDATE items SET qty = qty + 1 WHERE id %% 10 = %d; DELETE FROM items WHERE id %% 50 = %d AND id <= 1000; "+
			"PREPARE TRANSACTION '%s'", from, from+n-1, from+n, from+2*n, len(gid), len(gid), gid))
	}
	prepare("a", 10000, 10)
	prepare("bb", 20000, 5000)
	prepare("ccc", 30000, 10)
	prepare("dddd", 40000, 5000)
	// (Rows the pending ones hold locks on are left alone.)
	e.exec("UPDATE items SET note = 'plain' WHERE id % 10 IN (5, 6) AND id % 7 = 0")
	e.itemsExact("prepared transactions pending")
	d.kill()
	d = e.start()
	e.exec("COMMIT PREPARED 'a'")
	e.exec("ROLLBACK PREPARED 'ccc'")
	e.itemsExact("one committed, one rolled back")
	d.kill()
	d = e.start()
	e.exec("COMMIT PREPARED 'bb'")
	e.exec("ROLLBACK PREPARED 'dddd'")
	e.exec("UPDATE items SET note = 'last' WHERE id % 11 = 0")
	e.itemsExact("all decided")
	if code, _ := d.stop(t); code != 0 {
		t.Errorf("daemon exit %d\n%s", code, tail(d.Logs(), 4000))
	}
}

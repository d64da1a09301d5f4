package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// manualRecovery makes e's daemon stop on a history break instead of
// copying every table again.
func (e *env) manualRecovery() {
	e.t.Helper()
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(src), `publication = "pub_`, `recovery = "manual"
  publication = "pub_`, 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// sameShapeUpdate commits one update of event 1's target_type to v and
// returns the WAL insert position after its commit and its xid.
func (e *env) sameShapeUpdate(v string) (lsn, xid string) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.pg.QueryRow(ctx, "UPDATE events SET target_type = $1 WHERE id = 1 RETURNING xmin::text", v).Scan(&xid); err != nil {
		e.t.Fatal(err)
	}
	if err := e.pg.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	return lsn, xid
}

// TestPutBackSameShapeTransaction: the data directory is copied (server
// stopped) and put back after one update that ClickHouse stored; the
// server, started from the very same state, then commits an update of
// the same shape with other values. Its commit record lands at the same
// LSN with the same xid (xids are handed out again from the copy's
// state), so the witness (commit LSN + xid) cannot tell the two
// histories apart: the daemon streams on and skips the new history's
// transaction as already stored. ClickHouse keeps a value that Postgres
// never had in this history. The commit time, which the Begin message
// carries, differs and would tell.
func TestPutBackSameShapeTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	e := newEnv(t, "")
	primary := e.privatePrimary(ctx)
	e.manualRecovery()
	e.insertEvents(3000)
	e.setup()
	d := e.start()
	e.converge("before the copy", convergeTimeout)
	d.stop(t)
	copied, err := primary.CopyDataDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The lost history: one update, stored by the daemon.
	lsn1, xid1 := e.sameShapeUpdate("lost-history")
	d = e.start()
	e.converge("the lost history", convergeTimeout)
	d.stop(t)
	if err := primary.PutBackDataDir(ctx, copied); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // (another commit second)
	lsn2, xid2 := e.sameShapeUpdate("new-history!")
	if lsn1 != lsn2 || xid1 != xid2 {
		t.Skipf("precondition: the new history's update is at %s xid %s, the lost one's at %s xid %s", lsn2, xid2, lsn1, xid1)
	}
	t.Logf("both histories commit an update at %s (insert position after it) with xid %s", lsn1, xid1)
	// WAL past the checkpoint.
	e.exec("CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g")
	d = e.start()
	select {
	case <-d.done:
		if !strings.Contains(d.Logs(), "diverged") {
			t.Fatalf("the daemon stopped, but not for a diverged history:\n%s", tail(d.Logs(), 3000))
		}
		return
	case <-time.After(45 * time.Second):
	}
	var ch string
	if err := e.ch.QueryRow(ctx, fmt.Sprintf("SELECT target_type FROM db_%s.events_live WHERE id = 1", e.name)).Scan(&ch); err != nil {
		t.Fatal(err)
	}
	var pg string
	if err := e.pg.QueryRow(ctx, "SELECT target_type FROM events WHERE id = 1").Scan(&pg); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	t.Fatalf("the daemon streams on a history that does not continue the checkpoint's: event 1 has target_type %q in ClickHouse, "+
		"%q in Postgres\n%s", ch, pg, tail(d.Logs(), 2000))
}

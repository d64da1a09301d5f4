package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// checkpointRows returns the checkpoint table's rows as "epoch/system/timeline"
// strings, one per distinct history.
func (e *env) checkpointHistories() []string {
	e.t.Helper()
	rows, err := e.ch.Query(context.Background(), fmt.Sprintf(
		"SELECT DISTINCT concat(toString(epoch), '/', toString(system_id), '/', toString(timeline)) AS h "+
			"FROM db_%s.replicator_checkpoints ORDER BY h", e.name))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// dropSlotUnderDaemon ends the daemon's walsender and drops the slot
// before the daemon reconnects.
func (e *env) dropSlotUnderDaemon() {
	e.t.Helper()
	slot := "slot_" + e.name
	for deadline := time.Now().Add(30 * time.Second); ; {
		e.pg.Exec(context.Background(), "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot)
		_, err := e.pg.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("drop slot %s: %v", slot, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSlotDroppedUnderTheDaemon: the slot is dropped while the daemon
// streams under a writer. The daemon reconnects, finds no slot, and stops
// with the reason and the command; it saves no checkpoint after. The
// command (setup) copies every table again in a new epoch, and the daemon
// then ends exact.
func TestSlotDroppedUnderTheDaemon(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(500)
	e.setup()
	if h := e.checkpointHistories(); len(h) != 1 || !strings.HasPrefix(h[0], "1/") || strings.Contains(h[0], "/0/") {
		t.Fatalf("setup's checkpoint has no history: %v", h)
	}
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 7, 2)
	e.checkpointPasses(d, e.checkpointLSN(), "streaming")
	e.dropSlotUnderDaemon()
	e.refuses(d, "slot-missing")
	before := e.checkpointLSN()
	for _, want := range []string{"does not continue the history", "pg_drop_replication_slot", "replicator setup"} {
		if !strings.Contains(d.Logs(), want) {
			t.Errorf("the error lacks %q:\n%s", want, tail(d.Logs(), 2000))
		}
	}
	cancel()
	wait()
	if after := e.checkpointLSN(); after != before {
		t.Fatalf("a checkpoint was saved after the refusal: %d, then %d", before, after)
	}
	out := e.setup()
	if !strings.Contains(out, "created replication slot") {
		t.Fatalf("setup did not start over:\n%s", out)
	}
	if h := e.checkpointHistories(); len(h) != 1 || !strings.HasPrefix(h[0], "2/") {
		t.Fatalf("the new slot's checkpoints are not in epoch 2: %v", h)
	}
	d = e.start()
	e.insertEvents(10)
	e.converge("after setup", convergeTimeout)
	d.stop(t)
}

// TestCheckpointsOfAnEarlierVersion: a checkpoint table made by a version
// that recorded no history (no epoch in its sorting key, no identity) is
// brought up to date at start; the daemon records the server's history with
// its positions from then on and says so, and stays exact.
func TestCheckpointsOfAnEarlierVersion(t *testing.T) {
	e := newEnv(t, "")
	e.insertEvents(200)
	e.setup()
	d := e.start()
	e.insertEvents(50)
	e.converge("before", convergeTimeout)
	d.stop(t)
	db := "db_" + e.name
	if _, err := chServer.Query(context.Background(), fmt.Sprintf(`
CREATE TABLE %[1]s.old_checkpoints (slot String, lsn UInt64, commit UInt8, commit_time DateTime('UTC'), written_at DateTime('UTC'))
  ENGINE = ReplacingMergeTree(lsn) ORDER BY slot;
INSERT INTO %[1]s.old_checkpoints SELECT slot, lsn, commit, commit_time, written_at FROM %[1]s.replicator_checkpoints;
DROP TABLE %[1]s.replicator_checkpoints;
RENAME TABLE %[1]s.old_checkpoints TO %[1]s.replicator_checkpoints`, db)); err != nil {
		t.Fatal(err)
	}
	d = e.start()
	e.insertEvents(50)
	e.converge("after the upgrade", convergeTimeout)
	e.waitLog(d, "recording the Postgres history with the checkpoints")
	e.checkpointPasses(d, e.checkpointLSN(), "after the upgrade")
	d.stop(t)
	var sorting string
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT sorting_key FROM system.tables WHERE database = '%s' AND name = 'replicator_checkpoints'", db)).Scan(&sorting); err != nil {
		t.Fatal(err)
	}
	if sorting != "slot, epoch" {
		t.Errorf("sorting key %q, want slot, epoch", sorting)
	}
	h := e.checkpointHistories()
	if len(h) != 2 || h[0] != "0/0/0" || !strings.HasPrefix(h[1], "0/") || !strings.HasSuffix(h[1], "/1") {
		t.Errorf("histories %v, want the old rows without one and the new ones with the server's", h)
	}
	d = e.start()
	e.insertEvents(10)
	e.converge("after a restart", convergeTimeout)
	if strings.Contains(d.Logs(), "recording the Postgres history") {
		t.Errorf("the history was recorded again at the next start")
	}
	d.stop(t)
}

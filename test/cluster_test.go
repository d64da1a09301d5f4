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

// startCluster starts ZooKeeper and a 2 × 2 ClickHouse cluster "replicated",
// points the env's configuration at its first node with clickhouse.cluster
// set, and reads ClickHouse from the last node.
func (e *env) startCluster() *harness.Cluster {
	e.t.Helper()
	c, err := harness.StartCluster(context.Background(), harness.Options{Dir: e.dir}, "replicated", 2, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	src, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	db := fmt.Sprintf("database = %q", "db_"+e.name)
	cfg := strings.Replace(string(src), chServer.Addr(), c.Nodes[0][0].Addr(), 1)
	cfg = strings.Replace(cfg, db, db+"\n  cluster  = \"replicated\"", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.ch.Close()
	if e.ch, err = clickhouse.Open(&clickhouse.Options{Addr: []string{c.Nodes[1][1].Addr()}, Protocol: clickhouse.Native}); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// sameReplicas checks that both replicas of each shard hold the same rows
// of the events target, and that every shard holds some.
func sameReplicas(t *testing.T, c *harness.Cluster, db string) {
	t.Helper()
	for s, row := range c.Nodes {
		// SYSTEM SYNC REPLICA of 18.16 may return while a replica still
		// fetches parts: a replica that lags catches up within the minute,
		// one that diverged does not.
		var counts []string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
			counts = counts[:0]
			for _, n := range row {
				if _, err := n.Query(context.Background(), "SYSTEM SYNC REPLICA "+db+".events_local"); err != nil {
					t.Fatal(err)
				}
				got, err := n.Query(context.Background(), "SELECT count(), sum(_version) FROM "+db+".events_local")
				if err != nil {
					t.Fatal(err)
				}
				counts = append(counts, got)
			}
			if counts[0] == counts[1] || time.Now().After(deadline) {
				break
			}
		}
		if counts[0] != counts[1] || strings.HasPrefix(counts[0], "0\t") {
			t.Errorf("shard %d replicas hold %q and %q a minute after SYSTEM SYNC REPLICA", s+1, counts[0], counts[1])
		}
	}
}

// TestClusterReplicate copies events in chunks with several workers and
// streams them into a 2 × 2 cluster:
// replicated local tables under a Distributed table, sharded by the key;
// the live view on another node equals Postgres, every key's versions sit
// on one shard, both replicas of a shard hold the same rows, and verify
// agrees.
func TestClusterReplicate(t *testing.T) {
	// Several copy workers write chunks into one replicated table at once.
	e := newEnv(t, copyConfig)
	c := e.startCluster()
	e.insertEvents(40000)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 41, 2)
	e.insertEvents(100)
	// A column added while streaming reaches the local and the
	// Distributed tables of every node.
	e.exec("ALTER TABLE events ADD COLUMN note text DEFAULT 'old'")
	e.insertEvents(50)
	cancel()
	txns := wait()
	// Updates that leave a TOASTed note unchanged, once the notes are
	// stored: the daemon reads them back through the Distributed table,
	// its keys sent to every shard.
	e.exec("ALTER TABLE events ALTER COLUMN note SET STORAGE EXTERNAL")
	e.exec("UPDATE events SET note = repeat(id::text || 'n', 1000) WHERE id % 7 = 0")
	e.converge("events on a cluster with long notes", convergeTimeout)
	e.exec("UPDATE events SET action = action + 1 WHERE id % 7 = 0")
	e.converge(fmt.Sprintf("events on a cluster after %d transactions", txns), convergeTimeout)
	e.sameRows("the added column on a cluster", "SELECT id || '|' || note FROM events",
		fmt.Sprintf("SELECT concat(toString(id), '|', note) FROM db_%s.events_live", e.name))
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify on a cluster: exit %d\n%s\n%s", code, out, errs)
	}
	db := "db_" + e.name
	sameReplicas(t, c, db)
	// Every key lives on one shard.
	first, err := c.Nodes[0][0].Query(context.Background(), "SELECT count() FROM "+db+".events_local WHERE id IN "+
		"(SELECT id FROM remote('127.0.0.1:"+fmt.Sprint(c.Nodes[1][0].Port)+"', "+db+".events_local))")
	if err != nil || first != "0" {
		t.Errorf("keys on both shards: %s (%v)", first, err)
	}
	// 18.16 cannot wait for the replicas of a mutation: compaction refuses.
	if out, errs, code := e.cli("compact", "--config", e.config); code != 1 || !strings.Contains(errs, "needs the setting mutations_sync") {
		t.Errorf("compact on an 18.16 cluster: exit %d\n%s\n%s", code, out, errs)
	}
	d.stop(t)
}

// TestClusterFailures streams into a 2 × 2 cluster
// under writers while a replica is killed with SIGKILL and started again
// (INSERTs lack their quorum meanwhile: the daemon retries and
// acknowledges nothing new) and while the daemon is killed and started
// again: ClickHouse ends equal to Postgres, verify agrees, and the
// replicas of each shard hold the same rows.
func TestClusterFailures(t *testing.T) {
	e := newEnv(t, "")
	c := e.startCluster()
	e.insertEvents(5000)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 43, 2)
	time.Sleep(3 * time.Second)

	replica := c.Nodes[0][1]
	if err := replica.Kill(); err != nil {
		t.Fatal(err)
	}
	// INSERTs into the shard lack their quorum: the daemon retries.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if logs := d.Logs(); strings.Contains(logs, "transient error; reconnecting") && strings.Contains(logs, "quorum") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not retry while a replica was down:\n%s", tail(d.Logs(), 3000))
		}
	}
	time.Sleep(3 * time.Second)
	if err := replica.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	select {
	case <-d.done:
		t.Fatalf("the daemon stopped while a replica was down: %v\n%s", d.err, tail(d.Logs(), 3000))
	default:
	}
	d.kill()
	time.Sleep(time.Second)
	d = e.start()
	time.Sleep(3 * time.Second)
	cancel()
	txns := wait()
	e.converge(fmt.Sprintf("events on a cluster after a replica and the daemon were killed (%d transactions)", txns), 3*convergeTimeout)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify on a cluster: exit %d\n%s\n%s", code, out, errs)
	}
	sameReplicas(t, c, "db_"+e.name)
	if logs := d.Logs(); strings.Contains(logs, "[ERROR]") {
		t.Errorf("the daemon logged an error:\n%s", tail(logs, 3000))
	}
	d.stop(t)
}

// TestClusterReplayIsNotDeduplicated: a replay that splits a transaction
// into other flushes than its first attempt writes every block again.
// Replicated tables drop an INSERT whose block equals an earlier one: if
// the replay's last block of a key (equal to the first attempt's) were
// dropped while its earlier, different block landed anew, the newest part
// would hold the key's older image of the same version, and FINAL and
// merges would keep it for good.
//
// With max_rows = 40, the first attempt flushes T0's 21 events rows with
// the first image of key K and 18 rows of fill (flush 1, checkpoint T0),
// then fill's other 21 rows and K's last image (flush 2), and crashes
// before that checkpoint. The replay from T0 flushes K's first image with
// 39 fill rows, then K's last image alone: the block of flush 2 again.
func TestClusterReplayIsNotDeduplicated(t *testing.T) {
	e := newEnv(t, `table "public.fill" {
  order_by = ["id"]
}`)
	c := e.startCluster()
	e.exec("CREATE TABLE fill (id bigint PRIMARY KEY, n int)")
	e.insertEvents(200)
	e.setConfig("max_rows  = 20000", "max_rows  = 40")
	e.oneFlush()
	e.setup()
	const k = 150
	e.exec("UPDATE events SET action = 7 WHERE id BETWEEN 100 AND 120")
	tx, err := e.pg.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		fmt.Sprintf("UPDATE events SET action = 1 WHERE id = %d", k),
		"INSERT INTO fill SELECT g, g FROM generate_series(1, 39) g",
		fmt.Sprintf("UPDATE events SET action = 2 WHERE id = %d", k),
	} {
		if _, err := tx.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	crashed := e.startWith(e.config, "REPLICATOR_TEST_FAULT=crash-after-insert-of-flush:2")
	if code := crashed.wait(t, 60*time.Second); code != -1 {
		t.Fatalf("the daemon armed to crash after its second flush exited %d:\n%s", code, tail(crashed.Logs(), 3000))
	}
	// The first attempt stored the transaction's rows, not its checkpoint.
	var version uint64
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT max(_version) FROM db_%s.events WHERE id = %d", e.name, k)).Scan(&version); err != nil || version == 0 {
		t.Fatalf("the first attempt did not write key id=%d (%v)", k, err)
	}
	if l := e.checkpointLSN(); l >= version {
		t.Fatalf("checkpoint %d already covers the transaction at %d", l, version)
	}
	d := e.start()
	for deadline := time.Now().Add(convergeTimeout); e.checkpointLSN() < version; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the replay did not checkpoint the transaction at %d:\n%s", version, tail(d.Logs(), 3000))
		}
	}
	e.converge("events after a replay with other flush boundaries", convergeTimeout)
	d.stop(t)
	// FINAL keeps, of rows of one version, the one inserted last, as
	// merges do.
	for _, row := range c.Nodes {
		for _, n := range row {
			if _, err := n.Query(context.Background(), "SYSTEM SYNC REPLICA db_"+e.name+".events_local"); err != nil {
				t.Fatal(err)
			}
		}
	}
	var action uint8
	if err := e.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT action FROM db_%s.events FINAL WHERE id = %d", e.name, k)).Scan(&action); err != nil || action != 2 {
		t.Errorf("key id=%d after the replay: action %d (%v), want 2, its last image", k, action, err)
	}
}

// TestClusterReadOnlyRemoteUser: a Distributed INSERT reaches the other
// shards as the user of the cluster's remote_servers. When that user's
// profile sets readonly, the shards answer READONLY, the code of a replica
// without its ZooKeeper session too: setup and the daemon ask the nodes
// and stop, naming the setting, instead of retrying for ever.
func TestClusterReadOnlyRemoteUser(t *testing.T) {
	e := newEnv(t, "")
	e.startCluster()
	e.insertEvents(10)
	e.setup()
	e.setConfig(`cluster  = "replicated"`, `cluster  = "replicated_readonly"`)
	const says = `take the replicator's writes as a user with readonly = 1`
	if out, errs, code := e.cli("setup", "--config", e.config); code == 0 || !strings.Contains(errs, says) {
		t.Errorf("setup on a cluster whose nodes write as a read-only user: exit %d\n%s\n%s", code, out, errs)
	}
	d := e.start()
	e.insertEvents(100)
	if code := d.wait(t, 30*time.Second); code == 0 || !strings.Contains(d.Logs(), says) || strings.Contains(d.Logs(), "reconnecting") {
		t.Errorf("the daemon on a cluster whose nodes write as a read-only user: exit %d\n%s", code, tail(d.Logs(), 3000))
	}
}

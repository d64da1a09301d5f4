package harness_test

import (
	"context"
	"testing"
	"time"

	"github.com/replicator/replicator/test/harness"
)

// TestCluster starts ZooKeeper and a 2 × 2 ClickHouse cluster: DDL ON
// CLUSTER reaches every node, a replicated table's rows reach both
// replicas of their shard, and a Distributed table reads all shards.
func TestCluster(t *testing.T) {
	skip, err := harness.E2E(testing.Short())
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := harness.StartCluster(ctx, harness.Options{Dir: t.TempDir(), Log: tlog{t}}, "replicated", 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	first := c.Nodes[0][0]
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS db ON CLUSTER replicated",
		"CREATE TABLE db.t ON CLUSTER replicated (id UInt64, v UInt64) " +
			"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}') ORDER BY id",
		"CREATE TABLE db.t_all ON CLUSTER replicated AS db.t ENGINE = Distributed(replicated, db, t, intHash64(id))",
	} {
		if _, err := first.Query(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := first.Query(ctx, "SET insert_distributed_sync = 1; INSERT INTO db.t_all SELECT number, number * 2 FROM system.numbers LIMIT 1000"); err != nil {
		t.Fatal(err)
	}
	last := c.Nodes[1][1]
	// A Distributed read picks one replica of each shard, which may not
	// have fetched the part the synchronous insert wrote on the other yet.
	for _, row := range c.Nodes {
		for _, n := range row {
			if _, err := n.Query(ctx, "SYSTEM SYNC REPLICA db.t"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, err := last.Query(ctx, "SELECT count(), sum(v) FROM db.t_all"); err != nil || got != "1000\t999000" {
		t.Errorf("Distributed read on another node = %q, %v", got, err)
	}
	var shards [2]string
	for s, row := range c.Nodes {
		for r, n := range row {
			if _, err := n.Query(ctx, "SYSTEM SYNC REPLICA db.t"); err != nil {
				t.Fatal(err)
			}
			got, err := n.Query(ctx, "SELECT count() FROM db.t")
			if err != nil {
				t.Fatal(err)
			}
			if r == 0 {
				shards[s] = got
			} else if got != shards[s] {
				t.Errorf("shard %d: replica 1 has %s rows, replica %d %s", s+1, shards[s], r+1, got)
			}
		}
	}
	if shards[0] == "0" || shards[1] == "0" {
		t.Errorf("rows per shard %v: want both shards used", shards)
	}
}

package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

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

// TestClusterReplicate sets up and streams events into a 2 × 2 cluster:
// replicated local tables under a Distributed table, sharded by the key;
// the live view on another node equals Postgres, every key's versions sit
// on one shard, both replicas of a shard hold the same rows, and verify
// agrees.
func TestClusterReplicate(t *testing.T) {
	e := newEnv(t, "")
	c := e.startCluster()
	e.insertEvents(2000)
	e.setup()
	d := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	wait := e.workload(ctx, 41, 2)
	e.insertEvents(100)
	cancel()
	txns := wait()
	e.converge(fmt.Sprintf("events on a cluster after %d transactions", txns), convergeTimeout)
	if out, errs, code := e.cli("verify", "--config", e.config); code != 0 {
		t.Errorf("verify on a cluster: exit %d\n%s\n%s", code, out, errs)
	}
	db := "db_" + e.name
	var counts [2][2]string
	for s, row := range c.Nodes {
		for r, n := range row {
			if _, err := n.Query(context.Background(), "SYSTEM SYNC REPLICA "+db+".events_local"); err != nil {
				t.Fatal(err)
			}
			got, err := n.Query(context.Background(), "SELECT count(), sum(_version) FROM "+db+".events_local")
			if err != nil {
				t.Fatal(err)
			}
			counts[s][r] = got
		}
		if counts[s][0] != counts[s][1] || strings.HasPrefix(counts[s][0], "0\t") {
			t.Errorf("shard %d replicas hold %q and %q", s+1, counts[s][0], counts[s][1])
		}
	}
	// Every key lives on one shard.
	first, err := c.Nodes[0][0].Query(context.Background(), "SELECT count() FROM "+db+".events_local WHERE id IN "+
		"(SELECT id FROM remote('127.0.0.1:"+fmt.Sprint(c.Nodes[1][0].Port)+"', "+db+".events_local))")
	if err != nil || first != "0" {
		t.Errorf("keys on both shards: %s (%v)", first, err)
	}
	d.stop(t)
}

package sink

import (
	"strings"
	"testing"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
)

// TestCheckPlacement: a cluster on ClickHouse Cloud, told by cloud_mode
// or by a Shared database, and a ZooKeeper path where the database gives
// its tables their paths, are refused naming the key; the rest passes.
func TestCheckPlacement(t *testing.T) {
	cloud := Server{Settings: map[string]string{"cloud_mode": "1"}, Engine: ddl.EngineShared}
	for _, tc := range []struct {
		name   string
		server Server
		opts   config.ClickHouse
		err    string
	}{
		{"18.16 on a cluster", Server{Engine: ddl.EngineOrdinary}, config.ClickHouse{Cluster: "c", ZooKeeperPath: "/ch/{shard}/{table}"}, ""},
		{"a database not made yet", Server{}, config.ClickHouse{Cluster: "c"}, ""},
		{"Cloud with a cluster", cloud, config.ClickHouse{Cluster: "c"}, "clickhouse.cluster: the server is ClickHouse Cloud"},
		{"Cloud by cloud_mode alone", Server{Settings: map[string]string{"cloud_mode": "1"}}, config.ClickHouse{Cluster: "c"},
			"clickhouse.cluster"},
		{"a Shared database", Server{Engine: ddl.EngineShared}, config.ClickHouse{Cluster: "c"}, "clickhouse.cluster"},
		{"open source says cloud_mode 0", Server{Settings: map[string]string{"cloud_mode": "0"}, Engine: ddl.EngineAtomic},
			config.ClickHouse{Cluster: "c"}, ""},
		{"Cloud without a cluster", cloud, config.ClickHouse{}, ""},
		{"a path in a Replicated database", Server{Engine: ddl.EngineReplicated},
			config.ClickHouse{Database: "a", Cluster: "c", ZooKeeperPath: "/ch/{shard}/{table}"}, "clickhouse.zookeeper_path: database a is Replicated"},
		{"the default path in a Replicated database", Server{Engine: ddl.EngineReplicated},
			config.ClickHouse{Database: "a", Cluster: "c", ZooKeeperPath: ddl.DefaultZKPath}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPlacement(tc.server, tc.opts)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("checkPlacement = %v, want %q", err, tc.err)
			}
		})
	}
}

// TestSessionSettingsReplicatedCluster: the own tables of a Replicated
// database on a cluster name their ZooKeeper path, which the session then
// allows where the server has the setting, and only there.
func TestSessionSettingsReplicatedCluster(t *testing.T) {
	for _, tc := range []struct {
		name    string
		server  Server
		cluster string
		want    bool
	}{
		{"Replicated on a cluster, 25.8", Server{Engine: ddl.EngineReplicated, Settings: map[string]string{replicatedArguments: "0"}}, "c", true},
		{"Replicated on a cluster, a server without the setting", Server{Engine: ddl.EngineReplicated, Settings: map[string]string{}}, "c", false},
		{"Replicated on one server", Server{Engine: ddl.EngineReplicated, Settings: map[string]string{replicatedArguments: "0"}}, "", false},
		{"Atomic on a cluster", Server{Engine: ddl.EngineAtomic, Settings: map[string]string{replicatedArguments: "0"}}, "c", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sessionSettings(tc.server, tc.server.DB("a", tc.cluster, ddl.DefaultZKPath), 2)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got[replicatedArguments]; ok != tc.want {
				t.Errorf("settings %v: %s set %v, want %v", got, replicatedArguments, ok, tc.want)
			}
		})
	}
}

// TestCapsByVersion checks the type gates at their first versions: Map
// from 21.8 (experimental before), JSON from 25.3 (production ready).
func TestCapsByVersion(t *testing.T) {
	for _, tc := range []struct {
		v         [2]int
		map_, jsn bool
	}{
		{[2]int{18, 16}, false, false},
		{[2]int{21, 7}, false, false},
		{[2]int{21, 8}, true, false},
		{[2]int{24, 8}, true, false},
		{[2]int{25, 2}, true, false},
		{[2]int{25, 3}, true, true},
		{[2]int{26, 1}, true, true},
	} {
		c := Server{Version: tc.v}.Caps()
		if c.Map != tc.map_ || c.JSON != tc.jsn {
			t.Errorf("%d.%d: Map %v JSON %v, want %v %v", tc.v[0], tc.v[1], c.Map, c.JSON, tc.map_, tc.jsn)
		}
	}
}

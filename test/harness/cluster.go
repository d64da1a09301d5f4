package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ZooKeeper is a private standalone ZooKeeper server (Debian's zookeeper
// package), for ClickHouse clusters.
type ZooKeeper struct {
	Port int // client port on 127.0.0.1
	Dir  string
	proc *process
}

// StartZooKeeper starts a ZooKeeper on a free port under a new directory
// in opt.Dir and waits until it answers "ruok".
func StartZooKeeper(ctx context.Context, opt Options) (*ZooKeeper, error) {
	java, err := lookBinary("java", "/usr/bin")
	if err == nil {
		_, err = os.Stat(zookeeperJar)
	}
	if err != nil {
		return nil, fmt.Errorf("zookeeper: %v (apt-get install -y zookeeper, or run test/install-deps.sh): %w", err, ErrNotInstalled)
	}
	began := time.Now()
	z := &ZooKeeper{}
	if z.Dir, err = newDir(opt, "replicator-zk-"); err != nil {
		return nil, err
	}
	if z.Port, err = FreePort(); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
		"admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nmaxClientCnxns=200\n", filepath.Join(z.Dir, "data"), z.Port)
	if err := os.MkdirAll(filepath.Join(z.Dir, "data"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(z.Dir, "zoo.cfg"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(z.Dir, "zookeeper.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(java, "-Xmx256m", "-cp", z.Dir+":"+zookeeperJar, "-Dzookeeper.log.dir="+z.Dir,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", filepath.Join(z.Dir, "zoo.cfg"))
	cmd.Dir = z.Dir
	cmd.Stdout, cmd.Stderr = out, out
	if z.proc, err = startProcess(cmd); err != nil {
		return nil, fmt.Errorf("zookeeper: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if z.ruok() {
			break
		}
		if z.proc.exited() {
			return nil, fmt.Errorf("zookeeper exited during start: %s", tailFile(filepath.Join(z.Dir, "zookeeper.log"), 2000))
		}
		select {
		case <-ctx.Done():
			z.Close()
			return nil, fmt.Errorf("zookeeper did not answer within %s: %s", startTimeout, tailFile(filepath.Join(z.Dir, "zookeeper.log"), 2000))
		case <-time.After(200 * time.Millisecond):
		}
	}
	opt.logf("zookeeper ready on 127.0.0.1:%d in %s", z.Port, time.Since(began).Round(time.Millisecond))
	return z, nil
}

// zookeeperJar is where Debian's zookeeper package installs the server.
const zookeeperJar = "/usr/share/java/zookeeper.jar"

func (z *ZooKeeper) ruok() bool {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", z.Port), time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("ruok")); err != nil {
		return false
	}
	buf := make([]byte, 4)
	n, _ := conn.Read(buf)
	return string(buf[:n]) == "imok"
}

// Close stops the server and removes its directory.
func (z *ZooKeeper) Close() error {
	if z.proc == nil {
		return nil
	}
	err := z.proc.stop([]syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, []time.Duration{5 * time.Second, 5 * time.Second})
	os.RemoveAll(z.Dir)
	return err
}

// Cluster is a ZooKeeper and ClickHouse servers in shards of replicas,
// configured as one cluster (remote_servers Name, internal_replication,
// macros {cluster}, {shard} and {replica}, distributed DDL).
type Cluster struct {
	Name string
	ZK   *ZooKeeper
	// Nodes holds the servers by shard, then replica.
	Nodes [][]*ClickHouse
}

// StartCluster starts ZooKeeper and shards × replicas ClickHouse servers.
func StartCluster(ctx context.Context, opt Options, name string, shards, replicas int) (_ *Cluster, err error) {
	c := &Cluster{Name: name}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.ZK, err = StartZooKeeper(ctx, opt); err != nil {
		return nil, err
	}
	ports, err := freePorts(3 * shards * replicas)
	if err != nil {
		return nil, err
	}
	var remote strings.Builder
	fmt.Fprintf(&remote, "    <remote_servers>\n        <%s>\n", name)
	for s := 0; s < shards; s++ {
		remote.WriteString("            <shard>\n                <internal_replication>true</internal_replication>\n")
		for r := 0; r < replicas; r++ {
			fmt.Fprintf(&remote, "                <replica><host>127.0.0.1</host><port>%d</port></replica>\n", ports[3*(s*replicas+r)])
		}
		remote.WriteString("            </shard>\n")
	}
	fmt.Fprintf(&remote, "        </%s>\n    </remote_servers>\n", name)
	for s := 0; s < shards; s++ {
		var row []*ClickHouse
		for r := 0; r < replicas; r++ {
			i := 3 * (s*replicas + r)
			extra := remote.String() + fmt.Sprintf(clusterXML, c.ZK.Port, name, s+1, s+1, r+1, ports[i+2])
			node, err := startClickHouse(ctx, &ClickHouse{opt: opt, extra: extra, ports: ports[i : i+3]})
			if err != nil {
				return nil, fmt.Errorf("cluster node shard %d replica %d: %w", s+1, r+1, err)
			}
			row = append(row, node)
			c.Nodes = append(c.Nodes[:s], row) // so that Close stops it on an error
		}
	}
	// Every node reaches ZooKeeper before the cluster is used.
	for _, n := range c.All() {
		for deadline := time.Now().Add(startTimeout); ; time.Sleep(200 * time.Millisecond) {
			_, err := n.Query(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("cluster node %s does not reach ZooKeeper: %w", n.Addr(), err)
			}
		}
	}
	opt.logf("cluster %s of %d shards × %d replicas ready", name, shards, replicas)
	return c, nil
}

// clusterXML is a node's part of a cluster; its verbs are the ZooKeeper
// port, the cluster name, the shard (twice: number and macro), the replica
// and the interserver HTTP port.
const clusterXML = `    <zookeeper>
        <node><host>127.0.0.1</host><port>%d</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <macros>
        <cluster>%s</cluster>
        <shard>%02d</shard>
        <shard_number>%d</shard_number>
        <replica>r%d</replica>
    </macros>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>%d</interserver_http_port>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
`

// All returns every node, shard by shard.
func (c *Cluster) All() []*ClickHouse {
	var out []*ClickHouse
	for _, row := range c.Nodes {
		out = append(out, row...)
	}
	return out
}

// Close stops every server.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.All() {
		errs = append(errs, n.Close())
	}
	if c.ZK != nil {
		errs = append(errs, c.ZK.Close())
	}
	return errors.Join(errs...)
}

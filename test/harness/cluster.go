package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
// in opt.Dir and waits until it serves sessions: it answers "ruok" as soon
// as it listens, before it accepts a session, and a ClickHouse started then
// fails its handshake (18.16 may crash on it).
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
		"admin.enableServer=false\n4lw.commands.whitelist=srvr\nmaxClientCnxns=200\n", filepath.Join(z.Dir, "data"), z.Port)
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
		err := z.session(ctx)
		if err == nil {
			break
		}
		if z.proc.exited() {
			return nil, fmt.Errorf("zookeeper exited during start: %s", tailFile(filepath.Join(z.Dir, "zookeeper.log"), 2000))
		}
		select {
		case <-ctx.Done():
			z.Close()
			return nil, fmt.Errorf("zookeeper served no session within %s (last error: %v): %s", startTimeout, err, tailFile(filepath.Join(z.Dir, "zookeeper.log"), 2000))
		case <-time.After(200 * time.Millisecond):
		}
	}
	opt.logf("zookeeper ready on 127.0.0.1:%d in %s", z.Port, time.Since(began).Round(time.Millisecond))
	return z, nil
}

// zookeeperJar is where Debian's zookeeper package installs the server.
const zookeeperJar = "/usr/share/java/zookeeper.jar"

// session opens a ZooKeeper session, reads the root node in it and closes
// it: the capability ClickHouse needs, in ZooKeeper's own protocol
// (length-prefixed jute records).
func (z *ZooKeeper) session(ctx context.Context) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", z.Port))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	// ConnectRequest: protocol version, last zxid seen, timeout (ms),
	// session id, password (16 zero bytes).
	var req []byte
	req = binary.BigEndian.AppendUint32(req, 0)
	req = binary.BigEndian.AppendUint64(req, 0)
	req = binary.BigEndian.AppendUint32(req, 10000)
	req = binary.BigEndian.AppendUint64(req, 0)
	req = binary.BigEndian.AppendUint32(req, 16)
	req = append(req, make([]byte, 16)...)
	resp, err := zkRoundTrip(conn, req)
	if err != nil {
		return fmt.Errorf("session handshake: %w", err)
	}
	// ConnectResponse: protocol version, negotiated timeout, session id.
	if len(resp) < 16 || int32(binary.BigEndian.Uint32(resp[4:])) <= 0 || binary.BigEndian.Uint64(resp[8:]) == 0 {
		return fmt.Errorf("session handshake refused (%d bytes)", len(resp))
	}
	// exists("/") with xid 1 (op 3), then closeSession with xid 2 (op -11).
	req = binary.BigEndian.AppendUint32(nil, 1)
	req = binary.BigEndian.AppendUint32(req, 3)
	req = binary.BigEndian.AppendUint32(req, 1)
	req = append(req, '/', 0)
	if resp, err = zkRoundTrip(conn, req); err != nil {
		return fmt.Errorf("exists /: %w", err)
	}
	// ReplyHeader: xid, zxid, error code.
	if len(resp) < 16 || binary.BigEndian.Uint32(resp) != 1 || binary.BigEndian.Uint32(resp[12:]) != 0 {
		return fmt.Errorf("exists /: unexpected reply %x", resp)
	}
	closeReq := binary.BigEndian.AppendUint32(nil, 2)
	closeReq = binary.BigEndian.AppendUint32(closeReq, uint32(0xfffffff5)) // -11
	_, _ = zkRoundTrip(conn, closeReq)
	return nil
}

// zkRoundTrip sends one length-prefixed request and returns the body of
// the length-prefixed reply.
func zkRoundTrip(conn net.Conn, body []byte) ([]byte, error) {
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := conn.Write(append(frame, body...)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("reply of %d bytes", n)
	}
	resp := make([]byte, n)
	_, err := io.ReadFull(conn, resp)
	return resp, err
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
// macros {cluster}, {shard} and {replica}, distributed DDL), and as its
// twin Name_readonly, whose nodes reach each other as a user whose
// profile sets readonly.
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
	// The cluster, and its twin <name>_readonly whose nodes connect to
	// each other as the user reader (readonly = 1).
	var remote strings.Builder
	remote.WriteString("    <remote_servers>\n")
	for _, twin := range []struct{ name, user string }{{name, ""}, {name + "_readonly", "<user>reader</user>"}} {
		fmt.Fprintf(&remote, "        <%s>\n", twin.name)
		for s := 0; s < shards; s++ {
			remote.WriteString("            <shard>\n                <internal_replication>true</internal_replication>\n")
			for r := 0; r < replicas; r++ {
				fmt.Fprintf(&remote, "                <replica><host>127.0.0.1</host><port>%d</port>%s</replica>\n", ports[3*(s*replicas+r)], twin.user)
			}
			remote.WriteString("            </shard>\n")
		}
		fmt.Fprintf(&remote, "        </%s>\n", twin.name)
	}
	remote.WriteString("    </remote_servers>\n")
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
	began := time.Now()
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	opt.logf("cluster %s of %d shards × %d replicas ready (ZooKeeper and distributed DDL in %s)", name, shards, replicas, time.Since(began).Round(time.Millisecond))
	return c, nil
}

// ready waits until every node reaches ZooKeeper, then runs a distributed
// DDL query: the first thing the tests ask of a cluster, through every
// node's ZooKeeper session. (Its database is left in place: a DROP ... ON
// CLUSTER makes 18.16's shutdown take 9 s.)
func (c *Cluster) ready(ctx context.Context) error {
	for _, n := range c.All() {
		for deadline := time.Now().Add(startTimeout); ; time.Sleep(200 * time.Millisecond) {
			_, err := n.Query(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cluster node %s does not reach ZooKeeper: %w%s", n.Addr(), err, n.logTails())
			}
		}
	}
	q := "CREATE DATABASE IF NOT EXISTS harness_ready ON CLUSTER " + c.Name
	if _, err := c.Nodes[0][0].Query(ctx, q); err != nil {
		var logs strings.Builder
		for _, n := range c.All() {
			logs.WriteString(n.logTails())
		}
		return fmt.Errorf("cluster %s: %s: %w%s", c.Name, q, err, logs.String())
	}
	return nil
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

// Close stops every server, the ClickHouse nodes at once.
func (c *Cluster) Close() error {
	nodes := c.All()
	errs := make([]error, len(nodes), len(nodes)+1)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.Close()
		}()
	}
	wg.Wait()
	if c.ZK != nil {
		errs = append(errs, c.ZK.Close())
	}
	return errors.Join(errs...)
}

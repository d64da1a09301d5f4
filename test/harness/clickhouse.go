package harness

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ClickHouse is a private clickhouse-server. Its user "default" has no
// password.
type ClickHouse struct {
	Port     int // native protocol port on 127.0.0.1
	HTTPPort int // HTTP interface port on 127.0.0.1
	// SecurePort is the native protocol over TLS (Options.TLS), else 0.
	SecurePort int
	Dir        string // holds config.xml, users.xml, data/ and log/

	opt Options
	// extra is XML inserted into config.xml (a cluster's), and ports the
	// ports to use (native, HTTP, interserver) instead of free ones.
	extra  string
	ports  []int
	server string // clickhouse-server binary
	client string // clickhouse-client binary

	mu   sync.Mutex
	proc *process
}

// clickhouseBinaries finds clickhouse-server and clickhouse-client.
func clickhouseBinaries() (server, client string, err error) {
	if server, err = lookBinary("clickhouse-server", "/usr/sbin", "/usr/bin"); err == nil {
		client, err = lookBinary("clickhouse-client", "/usr/bin")
	}
	if err != nil {
		return "", "", fmt.Errorf("clickhouse: %v (apt-get install -y clickhouse-server clickhouse-client, or run test/install-deps.sh): %w",
			err, ErrNotInstalled)
	}
	return server, client, nil
}

// StartClickHouse writes a config into a new directory under opt.Dir and
// starts clickhouse-server with it on free ports. The server runs until
// Stop, Kill or Close, or until this process exits.
func StartClickHouse(ctx context.Context, opt Options) (*ClickHouse, error) {
	return startClickHouse(ctx, &ClickHouse{opt: opt})
}

func startClickHouse(ctx context.Context, c *ClickHouse) (*ClickHouse, error) {
	opt := c.opt
	var err error
	if c.server, c.client, err = clickhouseBinaries(); err != nil {
		return nil, err
	}
	began := time.Now()
	if c.Dir, err = newDir(opt, "replicator-ch-"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "users.xml"), []byte(clickhouseUsers), 0o644); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		ports := c.ports
		if ports == nil {
			if ports, err = freePorts(3); err != nil {
				return nil, err
			}
		}
		c.Port, c.HTTPPort = ports[0], ports[1]
		if opt.TLS != nil {
			c.SecurePort = ports[2]
		}
		if err := c.writeConfig(); err != nil {
			return nil, err
		}
		err = c.start(ctx)
		if err == nil {
			break
		}
		if attempt == 3 || c.ports != nil || !inUse(err.Error()) {
			return nil, err
		}
	}
	opt.logf("clickhouse ready on %s in %s (dir %s)", c.Addr(), time.Since(began).Round(time.Millisecond), c.Dir)
	return c, nil
}

// logTails returns the ends of the server's error log and console output,
// for error messages.
func (c *ClickHouse) logTails() string {
	var b strings.Builder
	for _, name := range []string{"clickhouse-server.err.log", "stdout.log"} {
		path := filepath.Join(c.Dir, "log", name)
		if t := tailFile(path, 2000); t != "" {
			fmt.Fprintf(&b, "\n%s:\n%s", path, t)
		}
	}
	return b.String()
}

// writeConfig writes config.xml for c.Dir and c's ports. It is written from
// scratch rather than copied from /etc/clickhouse-server, whose remote_servers,
// interserver port and /var paths a private server must not use.
func (c *ClickHouse) writeConfig() error {
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	dir := esc(c.Dir)
	conf := fmt.Sprintf(clickhouseConfig, dir, c.Port, c.HTTPPort)
	if t := c.opt.TLS; t != nil {
		secure := fmt.Sprintf(clickhouseTLS, c.SecurePort, esc(t.ServerCert), esc(t.ServerKey), esc(t.CA))
		conf = strings.Replace(conf, "</yandex>", secure+"</yandex>", 1)
	}
	if tz := c.opt.TimeZone; tz != "" {
		conf = strings.Replace(conf, "</yandex>", "    <timezone>"+esc(tz)+"</timezone>\n</yandex>", 1)
	}
	if n := c.opt.MaxTableSizeToDrop; n > 0 {
		conf = strings.Replace(conf, "</yandex>", fmt.Sprintf("    <max_table_size_to_drop>%d</max_table_size_to_drop>\n</yandex>", n), 1)
	}
	if c.extra != "" {
		conf = strings.Replace(conf, "</yandex>", c.extra+"</yandex>", 1)
	}
	return os.WriteFile(filepath.Join(c.Dir, "config.xml"), []byte(conf), 0o644)
}

// clickhouseConfig is the server config for ClickHouse 18.16; its verbs are
// the directory, the native port and the HTTP port. Only the listed ports
// are opened (no interserver, MySQL or TLS port), only on 127.0.0.1, and
// nothing needs ZooKeeper.
const clickhouseConfig = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>%[1]s/log/clickhouse-server.log</log>
        <errorlog>%[1]s/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <http_port>%[3]d</http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
`

// clickhouseTLS opens the native protocol over TLS; its verbs are the port,
// the certificate, its key and the CA that verifies client certificates.
const clickhouseTLS = `    <tcp_port_secure>%d</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>%s</certificateFile>
            <privateKeyFile>%s</privateKeyFile>
            <caConfig>%s</caConfig>
            <verificationMode>relaxed</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
`

// SecureAddr returns host:port of the TLS native port.
func (c *ClickHouse) SecureAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.SecurePort) }

// clickhouseUsers is users.xml: user default without password, user
// secured with password s3cret-pw that reaches only the databases tls and
// least_privilege, and users reader and reader2 without password whose
// profiles set readonly = 1 and readonly = 2 (settings may change, data
// may not), all from loopback only, with thread counts sized for a
// small machine.
const clickhouseUsers = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <max_threads>2</max_threads>
            <background_pool_size>4</background_pool_size>
            <background_schedule_pool_size>4</background_schedule_pool_size>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <!-- For DDL ON CLUSTER, which each node runs with this profile. -->
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
        <readonly_settable>
            <readonly>2</readonly>
        </readonly_settable>
        <!-- Every setting 18.16 has that could cut the replicator's reads
             short or skip a shard, set the wrong way: the user hostile. -->
        <hostile>
            <max_memory_usage>4000000000</max_memory_usage>
            <max_threads>2</max_threads>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
            <max_result_rows>50</max_result_rows>
            <result_overflow_mode>break</result_overflow_mode>
            <max_rows_to_read>2000</max_rows_to_read>
            <read_overflow_mode>break</read_overflow_mode>
            <max_rows_to_group_by>20</max_rows_to_group_by>
            <group_by_overflow_mode>any</group_by_overflow_mode>
            <max_rows_to_sort>100</max_rows_to_sort>
            <sort_overflow_mode>break</sort_overflow_mode>
            <max_rows_in_set>10</max_rows_in_set>
            <set_overflow_mode>break</set_overflow_mode>
            <max_rows_in_join>10</max_rows_in_join>
            <join_overflow_mode>break</join_overflow_mode>
            <max_rows_in_distinct>10</max_rows_in_distinct>
            <distinct_overflow_mode>break</distinct_overflow_mode>
            <max_rows_to_transfer>10</max_rows_to_transfer>
            <transfer_overflow_mode>break</transfer_overflow_mode>
            <max_execution_time>20</max_execution_time>
            <timeout_overflow_mode>break</timeout_overflow_mode>
            <skip_unavailable_shards>1</skip_unavailable_shards>
            <extremes>1</extremes>
            <empty_result_for_aggregation_by_empty_set>1</empty_result_for_aggregation_by_empty_set>
        </hostile>
    </profiles>
    <users>
        <secured>
            <password>s3cret-pw</password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
            <allow_databases>
                <database>tls</database>
                <database>least_privilege</database>
            </allow_databases>
        </secured>
        <reader>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>readonly</profile>
            <quota>default</quota>
        </reader>
        <reader2>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>readonly_settable</profile>
            <quota>default</quota>
        </reader2>
        <hostile>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>hostile</profile>
            <quota>default</quota>
        </hostile>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`

// start runs clickhouse-server and waits until it answers a ping on the
// native port.
func (c *ClickHouse) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil && !c.proc.exited() {
		return errors.New("clickhouse: already running")
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "log"), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(c.Dir, "log", "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	// Not CommandContext: ctx bounds the start, not the server's life.
	cmd := exec.Command(c.server, "--config-file="+filepath.Join(c.Dir, "config.xml"))
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	c.proc = proc

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err = c.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-proc.done:
			return fmt.Errorf("clickhouse-server exited during start (%v)%s", proc.err, c.logTails())
		case <-ctx.Done():
			_ = proc.stop([]syscall.Signal{syscall.SIGKILL}, []time.Duration{10 * time.Second})
			return fmt.Errorf("clickhouse not ready (%v; last error: %v)%s", ctx.Err(), err, c.logTails())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *ClickHouse) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{c.Addr()},
		Protocol:    clickhouse.Native,
		DialTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Ping(ctx)
}

// Addr returns the native protocol address, "127.0.0.1:PORT".
func (c *ClickHouse) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.Port) }

// Stop sends SIGTERM and waits up to 20s, then SIGKILL. It keeps the
// directory, so Restart may follow. Stopping a stopped server does nothing.
func (c *ClickHouse) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.proc.stop(
		[]syscall.Signal{syscall.SIGTERM, syscall.SIGKILL},
		[]time.Duration{20 * time.Second, 10 * time.Second})
	if err != nil {
		return fmt.Errorf("clickhouse stop: %w", err)
	}
	return nil
}

// Kill stops the server with SIGKILL.
func (c *ClickHouse) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.proc.stop([]syscall.Signal{syscall.SIGKILL}, []time.Duration{10 * time.Second})
	if err != nil {
		return fmt.Errorf("clickhouse kill: %w", err)
	}
	return nil
}

// Restart stops the server if it runs and starts it again with the same
// directory and ports, waiting until it is ready.
func (c *ClickHouse) Restart(ctx context.Context) error {
	if err := c.Stop(); err != nil {
		return err
	}
	began := time.Now()
	if err := c.start(ctx); err != nil {
		return err
	}
	c.opt.logf("clickhouse restarted on %s in %s", c.Addr(), time.Since(began).Round(time.Millisecond))
	return nil
}

// Close stops the server and removes its directory.
func (c *ClickHouse) Close() error {
	err := c.Stop()
	if rmErr := os.RemoveAll(c.Dir); err == nil {
		err = rmErr
	}
	return err
}

// Query runs sql (one or more statements separated by ';') with
// clickhouse-client and returns its trimmed output, TabSeparated unless the
// SQL names a FORMAT.
func (c *ClickHouse) Query(ctx context.Context, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, c.client, "--host", "127.0.0.1", "--port", strconv.Itoa(c.Port),
		"--multiquery", "--query", sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("clickhouse-client: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

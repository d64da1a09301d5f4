package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL cluster. Its superuser is "postgres",
// with trust authentication over TCP and the Unix socket.
type Postgres struct {
	Port int    // TCP port on Host
	Host string // always 127.0.0.1
	Dir  string // holds data/, sock/ and postgres.log
	// Version is the server's version (server_version, e.g. "13.23"), and
	// Major its major version (13).
	Version string
	Major   int
	// PhysicalSlot is, for a standby made by StartStandby with SyncSlots,
	// the name of its physical slot on the primary.
	PhysicalSlot string

	opt  Options
	bin  string              // directory of initdb, postgres, psql
	cred *syscall.Credential // the postgres user's, when running as root

	mu   sync.Mutex
	proc *process
	// upstream is the primary of a standby; nil for a primary.
	upstream *Postgres
	// gone is set when FailOver killed this server for good.
	gone bool
}

// postgresInstalled checks that bin holds the server binaries the harness
// runs, and that psql is there or in Debian's installation.
func postgresInstalled(bin string) error {
	for _, b := range []string{"initdb", "postgres"} {
		if !fileExists(filepath.Join(bin, b)) {
			how := "apt-get install -y postgresql-15 postgresql-client-15, or run test/install-deps.sh"
			if bin != DefaultPGBinDir {
				how = "run test/install-pg.sh <major version>, as `make test-matrix` does"
			}
			return fmt.Errorf("postgres: %s missing in %s (%s): %w", b, bin, how, ErrNotInstalled)
		}
	}
	if psql := clientBin(bin, "psql"); !fileExists(psql) {
		return fmt.Errorf("postgres: %s missing (apt-get install -y postgresql-client-15): %w", psql, ErrNotInstalled)
	}
	return nil
}

// StartPostgres creates a cluster with initdb in a new directory under
// opt.Dir and starts it on a free port with wal_level=logical. The server
// runs until Stop, Kill or Close, or until this process exits.
func StartPostgres(ctx context.Context, opt Options) (*Postgres, error) {
	p := &Postgres{Host: "127.0.0.1", opt: opt, bin: opt.PGBinDir}
	if p.bin == "" {
		bin, err := PGBinDir()
		if err != nil {
			return nil, err
		}
		p.bin = bin
	}
	if err := postgresInstalled(p.bin); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return nil, err
		}
		p.cred = cred
	}
	began := time.Now()
	dir, err := newDir(opt, "replicator-pg-")
	if err != nil {
		return nil, err
	}
	p.Dir = dir
	if err := p.initdb(ctx); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if p.Port, err = FreePort(); err != nil {
			return nil, err
		}
		err = p.start(ctx)
		if err == nil {
			break
		}
		if attempt == 3 || !inUse(err.Error()) {
			return nil, err
		}
	}
	opt.logf("postgres %s ready on %s:%d in %s (dir %s)", p.Version, p.Host, p.Port, time.Since(began).Round(time.Millisecond), p.Dir)
	return p, nil
}

// postgresCredential returns the credential of the postgres user, which runs
// the server when the caller is root.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgres: running as root needs a postgres user to run the server (installed with postgresql-15): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }
func (p *Postgres) sockDir() string { return filepath.Join(p.Dir, "sock") }
func (p *Postgres) logFile() string { return filepath.Join(p.Dir, "postgres.log") }

// command returns a command that runs a PostgreSQL binary as the server's
// user.
func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.Dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// initdb creates the cluster and appends the harness's settings to its
// postgresql.conf.
func (p *Postgres) initdb(ctx context.Context) error {
	if err := os.Mkdir(p.sockDir(), 0o700); err != nil {
		return err
	}
	if len(p.sockDir()) > 90 {
		return fmt.Errorf("postgres: socket directory path too long for a Unix socket: %s", p.sockDir())
	}
	if p.cred != nil {
		if err := chownTree(p.Dir, p.cred); err != nil {
			return err
		}
		if err := ensureTraversable(filepath.Dir(p.Dir), p.opt); err != nil {
			return err
		}
	}
	cmd := p.command(ctx, "initdb", "-D", p.dataDir(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("postgres: initdb: %w\n%s", err, bytes.TrimSpace(out))
	}

	var conf strings.Builder
	conf.WriteString("\n# Added by the test harness.\n")
	set := func(k, v string) {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(v, "'", "''"))
	}
	set("listen_addresses", "127.0.0.1")
	set("unix_socket_directories", p.sockDir())
	set("wal_level", "logical")
	set("max_replication_slots", "20")
	set("max_wal_senders", "20")
	set("max_connections", "100")
	if p.opt.Fast {
		set("fsync", "off")
		set("synchronous_commit", "off")
		set("full_page_writes", "off")
	}
	if t := p.opt.TLS; t != nil {
		// The server's own copies: its key must belong to the server's user.
		dir := filepath.Join(p.Dir, "tls")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for name, src := range map[string]string{"server.pem": t.ServerCert, "server.key": t.ServerKey, "ca.pem": t.CA} {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				return err
			}
		}
		if p.cred != nil {
			if err := chownTree(dir, p.cred); err != nil {
				return err
			}
		}
		set("ssl", "on")
		set("ssl_cert_file", filepath.Join(dir, "server.pem"))
		set("ssl_key_file", filepath.Join(dir, "server.key"))
		set("ssl_ca_file", filepath.Join(dir, "ca.pem"))
	}
	keys := make([]string, 0, len(p.opt.PGSettings))
	for k := range p.opt.PGSettings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, p.opt.PGSettings[k])
	}
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// start runs the postmaster on p.Port and waits until it accepts
// connections.
func (p *Postgres) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil && !p.proc.exited() {
		return errors.New("postgres: already running")
	}
	if p.gone {
		return fmt.Errorf("postgres: the server of %s failed over: its port belongs to the promoted standby", p.Dir)
	}
	logf, err := os.OpenFile(p.logFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Not CommandContext: ctx bounds the start, not the server's life.
	cmd := p.command(context.Background(), "postgres", "-D", p.dataDir(), "-p", strconv.Itoa(p.Port))
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	p.proc = proc

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err = p.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-proc.done:
			return fmt.Errorf("postgres exited during start (%v); %s:\n%s", proc.err, p.logFile(), tailFile(p.logFile(), 2000))
		case <-ctx.Done():
			_ = proc.stop([]syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL}, []time.Duration{5 * time.Second, 5 * time.Second})
			return fmt.Errorf("postgres not ready (%v; last error: %v); %s:\n%s", ctx.Err(), err, p.logFile(), tailFile(p.logFile(), 2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ping connects as the tests do and reads the server's version.
func (p *Postgres) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return err
	}
	var num int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &p.Version); err != nil {
		conn.Close(ctx)
		return err
	}
	p.Major = num / 10000
	return conn.Close(ctx)
}

// DSN returns a URL for database dbname as user postgres over TCP.
func (p *Postgres) DSN(dbname string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", p.Host, p.Port, dbname)
}

// Stop shuts the server down with a fast shutdown (SIGINT: active
// transactions are rolled back, a checkpoint is written). It keeps the
// directory, so Restart may follow. Stopping a stopped server does nothing.
func (p *Postgres) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.proc.stop(
		[]syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL},
		[]time.Duration{60 * time.Second, 10 * time.Second, 10 * time.Second})
	if err != nil {
		return fmt.Errorf("postgres stop: %w", err)
	}
	return nil
}

// Kill stops the server with an immediate shutdown (SIGQUIT, as pg_ctl -m
// immediate): no checkpoint, so the next start runs crash recovery.
func (p *Postgres) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.proc.stop(
		[]syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL},
		[]time.Duration{10 * time.Second, 10 * time.Second})
	if err != nil {
		return fmt.Errorf("postgres kill: %w", err)
	}
	return nil
}

// Restart stops the server if it runs and starts it again on the same data
// directory and port.
func (p *Postgres) Restart(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		// A shutdown that needed SIGQUIT still stopped the server: the
		// start below runs crash recovery, as after a real crash.
		p.opt.logf("%v; starting again", err)
	}
	began := time.Now()
	if err := p.start(ctx); err != nil {
		return err
	}
	p.opt.logf("postgres restarted on %s:%d in %s", p.Host, p.Port, time.Since(began).Round(time.Millisecond))
	return nil
}

// Close stops the server and removes its directory.
func (p *Postgres) Close() error {
	err := p.Stop()
	if rmErr := os.RemoveAll(p.Dir); err == nil {
		err = rmErr
	}
	return err
}

// Psql runs sql (one or more statements) with psql in database db and
// returns its trimmed output: unaligned, tuples only, so one value per line
// and columns separated by '|'. It stops at the first error, which the
// returned error quotes.
func (p *Postgres) Psql(ctx context.Context, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, p.Client("psql"),
		"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", p.DSN(db), "-c", sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Client returns the path of a client tool (psql, pgbench, pg_recvlogical)
// to use with this server: its installation's own, or Debian's 15 when the
// installation has none (the npm builds of other versions).
func (p *Postgres) Client(name string) string { return clientBin(p.bin, name) }

// chownTree gives a directory tree to the credential's user.
func chownTree(dir string, cred *syscall.Credential) error {
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

// ensureTraversable adds o+x to dir and its parents where missing, so that
// the postgres user can reach its directory below them.
func ensureTraversable(dir string, opt Options) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("postgres: make %s traversable for the postgres user: %w", d, err)
			}
			opt.logf("added o+x to %s so the postgres user can reach its directory", d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options configure a server started by StartPostgres or StartClickHouse.
type Options struct {
	// Fast trades durability for speed (PostgreSQL: fsync, synchronous_commit
	// and full_page_writes off). Leave it false for benchmarks.
	Fast bool
	// PGSettings are extra postgresql.conf settings, written after the
	// harness's own, e.g. {"max_slot_wal_keep_size": "64MB"}. Values are
	// quoted by the harness.
	PGSettings map[string]string
	// Dir is the parent of the server's own new directory; os.TempDir() when
	// empty.
	Dir string
	// Log receives progress lines; nil for none.
	Log io.Writer
	// PGBinDir holds initdb, postgres and psql; /usr/lib/postgresql/15/bin
	// when empty.
	PGBinDir string
	// TimeZone, when set, is the ClickHouse server's <timezone>, in which
	// it shows values of DateTime and Date columns that name no zone.
	TimeZone string
	// MaxTableSizeToDrop, when set, is the ClickHouse server's
	// max_table_size_to_drop in bytes: a DROP or TRUNCATE of a larger table
	// fails.
	MaxTableSizeToDrop int
	// TLS, when set, makes Postgres accept TLS (ssl = on, client
	// certificates verified against TLS.CA when presented) and ClickHouse
	// open a TLS native port (SecurePort).
	TLS *TLSFiles
}

// DefaultPGBinDir is where Debian's postgresql-15 installs its binaries.
const DefaultPGBinDir = "/usr/lib/postgresql/15/bin"

// ErrNotInstalled is wrapped by the errors returned when a server's binaries
// are missing. The message says which Debian packages to install.
var ErrNotInstalled = errors.New("not installed")

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 60 * time.Second

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "harness: "+format+"\n", args...)
	}
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts returns n distinct free ports: the listeners stay open until all
// are chosen, so the kernel cannot hand out one twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// lookBinary finds a binary in PATH or else in the given directories.
func lookBinary(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %s", name, strings.Join(dirs, ", "))
}

// process is a server running as a child of this process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// startProcess starts cmd in its own process group (so a terminal's Ctrl-C
// reaches only the caller, which then stops the server) with SIGKILL as its
// parent-death signal.
func startProcess(cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends each signal in turn and waits up to the matching timeout for
// the process to exit. It reports an error if the process outlived all of
// them but the last one, or never exited.
func (p *process) stop(sigs []syscall.Signal, timeouts []time.Duration) error {
	if p == nil {
		return nil
	}
	for i, sig := range sigs {
		if p.exited() {
			break
		}
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
			if i > 0 {
				return fmt.Errorf("needed %v to stop pid %d", sig, p.cmd.Process.Pid)
			}
			return nil
		case <-time.After(timeouts[i]):
		}
	}
	if !p.exited() {
		return fmt.Errorf("pid %d did not exit", p.cmd.Process.Pid)
	}
	return nil
}

// tailFile returns about the last n bytes of a file, for error messages.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		if _, err := f.Seek(st.Size()-n, io.SeekStart); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(f)
	s := string(b)
	if len(b) == int(n) {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}

// newDir makes the server's own directory under opt.Dir.
func newDir(opt Options, pattern string) (string, error) {
	if opt.Dir != "" {
		if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
			return "", err
		}
	}
	dir, err := os.MkdirTemp(opt.Dir, pattern)
	if err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// inUse tells whether a server log says its port was taken.
func inUse(log string) bool {
	return strings.Contains(log, "Address already in use")
}

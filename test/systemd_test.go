package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// systemdBase is the podman image with systemd that TestSystemdUnits
// boots; made once per machine from Debian's packages with debootstrap.
const systemdBase = "localhost/replicator-systemd-base:bookworm-procps"

// TestSystemdUnits boots systemd in a podman container (a Debian
// bookworm base made with debootstrap, the host's network), installs the
// units of deploy/systemd as the README says, and starts replicator.service
// against the test servers: replicator-setup.service runs first under the
// same sandbox and credentials; `systemctl start` returns only once the
// daemon notified READY=1 (Type=notify), with its status line; the spill
// directory is the state directory's; changes reach ClickHouse; a reload
// with a broken file fails and leaves the daemon running; a stop is clean.
// It skips, saying why, without podman or debootstrap.
func TestSystemdUnits(t *testing.T) {
	requireServers(t)
	podman, conf := needPodman(t, "the units are not run under systemd here")
	pod, run := podmanCommands(podman, conf)
	if out, err := run("image", "exists", systemdBase); err != nil {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			t.Skipf("debootstrap is missing, so no Debian base with systemd can be made (apt-get install -y debootstrap): %s", out)
		}
		makeSystemdBase(t, pod)
	}
	static := staticBinary(t)

	e := newEnv(t, "")
	e.exec("INSERT INTO events (author_id, action, target_type) SELECT g, 1, 'Issue' FROM generate_series(1, 300) g")
	etc := t.TempDir()
	copyFile(t, e.config, filepath.Join(etc, "replicator.hcl"))
	// Root-owned secrets, handed over with LoadCredential=. The test
	// servers need no passwords: the pgpass line is PGPASSFILE's.
	for name, content := range map[string]string{"clickhouse.password": "unused\n", "pgpass": "*:*:*:*:unused\n"} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("replicator-systemd-%d", time.Now().UnixNano())
	units, _ := filepath.Abs("../deploy/systemd")
	out, err := run("run", "-d", "--name", name, "--systemd=always", "--network", "host",
		"-v", static+":/usr/bin/replicator:ro", "-v", etc+":/etc/replicator", "-v", units+":/srv/units:ro", systemdBase, "/sbin/init")
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := run("exec", name, "journalctl", "--no-pager", "-n", "80", "-u", "replicator", "-u", "replicator-setup")
			t.Logf("journal:\n%s", out)
		}
		run("rm", "--force", "--time", "5", name)
	})
	in := func(args ...string) (string, error) {
		return run(append([]string{"exec", name}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := in(args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		out, _ := in("systemctl", "is-system-running")
		if s := strings.TrimSpace(out); s == "running" || s == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not boot: %s", out)
		}
	}
	// The README's steps.
	must("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "replicator")
	must("chown", "-R", "root:root", "/etc/replicator")
	must("chmod", "0755", "/etc/replicator")
	must("chmod", "0644", "/etc/replicator/replicator.hcl")
	must("sh", "-c", "install -m 0644 /srv/units/*.service /etc/systemd/system/ && systemctl daemon-reload")

	// As at boot before Postgres is up: setup fails, systemd runs it again
	// (Restart=on-failure), and the daemon's start waits for it.
	good, err := os.ReadFile(filepath.Join(etc, "replicator.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	pgAddr := fmt.Sprintf("%s:%d/", pgServer.Host, pgServer.Port)
	if !bytes.Contains(good, []byte(pgAddr)) {
		t.Fatalf("the configuration does not name %s", pgAddr)
	}
	down := bytes.Replace(good, []byte(pgAddr), []byte(pgServer.Host+":1/"), 1)
	if err := os.WriteFile(filepath.Join(etc, "replicator.hcl"), down, 0o644); err != nil {
		t.Fatal(err)
	}
	must("systemctl", "start", "--no-block", "replicator")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		out, _ := in("systemctl", "show", "replicator-setup", "-p", "ExecMainStatus", "--value")
		// 3: a server could not be reached.
		if strings.TrimSpace(out) == "3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("setup did not fail against a closed port: ExecMainStatus=%s", out)
		}
	}
	if out, _ := in("systemctl", "is-active", "replicator"); strings.TrimSpace(out) != "inactive" {
		// The daemon's start job waits for setup; it is not started.
		t.Errorf("replicator while setup fails: %s, want inactive", strings.TrimSpace(out))
	}
	if err := os.WriteFile(filepath.Join(etc, "replicator.hcl"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	must("systemctl", "start", "replicator")
	t.Logf("systemctl start returned %s after Postgres became reachable", time.Since(start).Round(time.Millisecond))
	show := func(unit string) map[string]string {
		t.Helper()
		props := map[string]string{}
		for _, line := range strings.Split(must("systemctl", "show", unit, "-p", "ActiveState,SubState,Result,StatusText,ExecMainStatus,NRestarts"), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				props[k] = v
			}
		}
		return props
	}
	if p := show("replicator-setup"); p["ActiveState"] != "active" || p["Result"] != "success" {
		t.Errorf("replicator-setup: %v", p)
	}
	// Type=notify: start returned after READY=1, which the daemon sends
	// once it streams.
	if p := show("replicator"); p["ActiveState"] != "active" || p["SubState"] != "running" || !strings.HasPrefix(p["StatusText"], "replicating from ") {
		t.Fatalf("replicator after start: %v", p)
	}
	must("test", "-d", "/var/lib/replicator/spill")
	if owner := strings.TrimSpace(must("stat", "-c", "%U %a", "/var/lib/replicator")); owner != "replicator 700" {
		t.Errorf("/var/lib/replicator: %s, want replicator 700", owner)
	}

	e.exec("UPDATE events SET action = 2 WHERE id % 5 = 0")
	e.exec("INSERT INTO events (author_id, action) SELECT g, 4 FROM generate_series(1, 50) g")
	e.converge("the daemon under systemd", time.Minute)

	// ExecReload validates first: a broken file fails the reload and the
	// daemon keeps running with its configuration.
	if err := os.WriteFile(filepath.Join(etc, "replicator.hcl"), append(good, []byte("\nbatch {\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := in("systemctl", "reload", "replicator"); err == nil {
		t.Errorf("systemctl reload with a broken file succeeded:\n%s", out)
	}
	if p := show("replicator"); p["ActiveState"] != "active" {
		t.Errorf("after a failed reload: %v", p)
	}
	if err := os.WriteFile(filepath.Join(etc, "replicator.hcl"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := in("/usr/bin/replicator", "validate", "--config", "/etc/replicator/replicator.hcl"); err == nil {
		must("systemctl", "reload", "replicator")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			if strings.Contains(must("journalctl", "--no-pager", "-u", "replicator"), "SIGHUP: reloading the configuration") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("systemctl reload of a good file: the daemon did not reload")
			}
		}
		if p := show("replicator"); p["ActiveState"] != "active" {
			t.Errorf("after a reload: %v", p)
		}
	} else {
		t.Logf("this build has no `replicator validate`, so a reload of a good file fails too; not checked:\n%s", out)
	}

	// Other commands run as the unit's user with its credentials through
	// systemd-run, as the README shows.
	if out := must("systemd-run", "--quiet", "--wait", "--pipe", "-p", "User=replicator",
		"-p", "LoadCredential=clickhouse-password:/etc/replicator/clickhouse.password",
		"-p", "LoadCredential=pgpass:/etc/replicator/pgpass", "-p", "Environment=PGPASSFILE=%d/pgpass",
		"/usr/bin/replicator", "status", "--config", "/etc/replicator/replicator.hcl"); !strings.Contains(out, "checkpoint_lsn") {
		t.Errorf("status through systemd-run:\n%s", out)
	}

	must("systemctl", "stop", "replicator")
	if p := show("replicator"); p["ActiveState"] != "inactive" || p["Result"] != "success" || p["ExecMainStatus"] != "0" || p["NRestarts"] != "0" {
		t.Errorf("after stop: %v", p)
	}
	if journal := must("journalctl", "--no-pager", "-u", "replicator"); !strings.Contains(journal, "stopped") {
		t.Errorf("no clean stop in the journal:\n%s", tail(journal, 3000))
	}
}

// makeSystemdBase makes the systemd base image: debootstrap of Debian
// bookworm (minbase, systemd, and procps for the unit's /bin/kill, from
// the machine's Debian mirror), imported into podman. Some minutes, once
// per machine.
func makeSystemdBase(t *testing.T, pod func(context.Context, ...string) *exec.Cmd) {
	t.Helper()
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	boot := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,procps", "bookworm", root, debianMirror())
	if out, err := boot.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(string(out), 3000))
	}
	tarball := exec.CommandContext(ctx, "tar", "-C", root, "-c", ".")
	imp := pod(ctx, "import", "--change", `CMD ["/sbin/init"]`, "-", systemdBase)
	pipe, err := tarball.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	if err := tarball.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	if err := tarball.Wait(); err != nil {
		t.Fatal(err)
	}
}

// debianMirror is the first Debian mirror apt uses here.
func debianMirror() string {
	src, _ := os.ReadFile("/etc/apt/sources.list.d/debian.sources")
	for _, line := range strings.Split(string(src), "\n") {
		if u, ok := strings.CutPrefix(line, "URIs: "); ok && strings.HasSuffix(strings.TrimSpace(u), "/debian") {
			return strings.TrimSpace(u)
		}
	}
	return "http://deb.debian.org/debian"
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

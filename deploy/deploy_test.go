// Package deploy holds the files a platform team deploys replicator with:
// systemd units, a container file, Kubernetes manifests, a Grafana
// dashboard and Prometheus alert rules. Its tests check them with
// the tools that read them.
package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// tool returns the path of a command the test needs; it skips the test
// when the command is missing, unless REPLICATOR_E2E=1 (CI), where
// test/install-deps.sh installs it.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("REPLICATOR_E2E") == "1" {
			t.Fatalf("%s is missing: apt-get install -y %s", name, pkg)
		}
		t.Skipf("%s is missing (apt-get install -y %s)", name, pkg)
	}
	return path
}

func runTool(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
}

// TestAlertRules checks the alert rules and runs their unit tests.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	runTool(t, "prometheus", promtool, "check", "rules", "alerts.yml")
	runTool(t, "prometheus", promtool, "test", "rules", "alerts_test.yml")
}

// The systemd units, and what each must keep: the review found each
// missing once (a read-only spill directory, credentials setup could not
// read, no readiness, a reload that did not validate, restart loops on
// permanent errors).
var units = map[string][]string{
	"replicator.service": {
		"Type=notify",
		"Requires=replicator-setup.service",
		"After=replicator-setup.service",
		"ExecStart=/usr/bin/replicator run --config /etc/replicator/replicator.hcl",
		"ExecReload=/usr/bin/replicator validate --config /etc/replicator/replicator.hcl\nExecReload=/bin/kill -HUP $MAINPID",
		"StateDirectory=replicator",
		"LoadCredential=clickhouse-password:",
		"Environment=PGPASSFILE=%d/pgpass",
		"RestartPreventExitStatus=2 4",
		"ProtectSystem=strict",
	},
	"replicator-setup.service": {
		"Type=oneshot",
		"RemainAfterExit=yes",
		"Restart=on-failure",
		"RestartPreventExitStatus=2",
		"ExecStart=/usr/bin/replicator setup --config /etc/replicator/replicator.hcl",
		"LoadCredential=clickhouse-password:",
		"Environment=PGPASSFILE=%d/pgpass",
		"ProtectSystem=strict",
	},
}

// maxExposure is the highest `systemd-analyze security` score a unit may
// have ("OK" ends at 2.0).
const maxExposure = 2.0

// TestSystemdUnits checks what each unit must keep, verifies both with
// `systemd-analyze verify` (their binary replaced by one that exists
// here) and scores them with `systemd-analyze security`.
func TestSystemdUnits(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	var names []string
	for name, musts := range units {
		unit, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, must := range musts {
			if !bytes.Contains(unit, []byte(must)) {
				t.Errorf("%s lacks %q", name, must)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), bytes.ReplaceAll(unit, []byte("/usr/bin/replicator"), []byte("/bin/true")), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, names...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	// Any complaint is a defect of a unit (unknown keys are only warnings).
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, name := range names {
		cmd := exec.Command(analyze, "security", "--offline=true", "--no-pager", name)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", name, err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(name) + `: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s: no exposure level in\n%s", name, out)
		}
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > maxExposure {
			t.Errorf("%s: exposure level %.1f, want at most %.1f:\n%s", name, level, maxExposure, out)
		}
	}
}

// Package deploy holds the files a platform team deploys replicator with:
// a systemd unit, a container file, a Kubernetes sidecar example, a
// Grafana dashboard and Prometheus alert rules. Its tests check them with
// the tools that read them.
package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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

// TestSystemdUnit verifies the unit with systemd-analyze, its binary
// replaced by one that exists here.
func TestSystemdUnit(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("systemd/replicator.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/replicator run")) || !bytes.Contains(unit, []byte("ExecReload=/bin/kill -HUP $MAINPID")) {
		t.Fatal("the unit's ExecStart or ExecReload changed: update this test")
	}
	path := filepath.Join(t.TempDir(), "replicator.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/replicator"), []byte("/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	// Any complaint is a defect of the unit (unknown keys are only warnings).
	if err != nil || strings.TrimSpace(out.String()) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}

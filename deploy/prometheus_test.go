package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestScrapeConfigs checks the shipped Prometheus configurations with
// promtool, and that each gives its targets the job label the rules
// select. Debian's promtool has no Kubernetes discovery: there the
// Kubernetes configuration is only checked for its job label.
func TestScrapeConfigs(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rules, []byte(`up{job="replicator"}`)) {
		t.Fatal(`alerts.yml no longer selects job="replicator": update the scrape configurations and this test`)
	}
	for _, file := range []string{"prometheus.yml", "prometheus-kubernetes.yml"} {
		t.Run(file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("prometheus", file))
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`(?m)^  - job_name: replicator$|^        replacement: replicator$`).Match(src) {
				t.Errorf("%s does not give its targets job=\"replicator\"", file)
			}
			cmd := exec.Command(promtool, "check", "config", file)
			cmd.Dir = "prometheus"
			out, err := cmd.CombinedOutput()
			switch {
			case err != nil && strings.Contains(string(out), "field kubernetes_sd_configs not found"):
				t.Skipf("this promtool is built without Kubernetes discovery (Debian's): %s not checked", file)
			case err != nil:
				t.Fatalf("promtool check config %s: %v\n%s", file, err, out)
			}
		})
	}
}

// TestRunbooks checks that every alert rule links a runbook, and that the
// document it points to has the section.
func TestRunbooks(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	const base = "https://github.com/replicator/replicator/blob/main/"
	alerts := regexp.MustCompile(`(?m)^      - alert: (\w+)$`).FindAllStringSubmatchIndex(string(rules), -1)
	if len(alerts) < 6 {
		t.Fatalf("found %d alert rules", len(alerts))
	}
	for i, a := range alerts {
		name := string(rules[a[2]:a[3]])
		end := len(rules)
		if i+1 < len(alerts) {
			end = alerts[i+1][0]
		}
		m := regexp.MustCompile(`runbook_url: "([^"]+)"`).FindSubmatch(rules[a[0]:end])
		if m == nil {
			t.Errorf("%s has no runbook_url", name)
			continue
		}
		target, ok := strings.CutPrefix(string(m[1]), base)
		doc, anchor, _ := strings.Cut(target, "#")
		if !ok || anchor == "" {
			t.Errorf("%s: runbook_url %s names no section of a document of the repository", name, m[1])
			continue
		}
		anchors, err := anchorsOf(filepath.Join("..", doc))
		if err != nil || !anchors[anchor] {
			t.Errorf("%s: runbook_url %s names no section of %s (%v)", name, m[1], doc, err)
		}
	}
}

// anchorsOf returns the anchors GitHub gives the headings of a Markdown
// file (outside fenced code).
func anchorsOf(path string) (map[string]bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && !fenced && strings.HasPrefix(line, "#") {
			anchors[githubAnchor(h)] = true
		}
	}
	return anchors, nil
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

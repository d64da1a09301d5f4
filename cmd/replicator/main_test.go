package main

import (
	"bytes"
	"regexp"
	"testing"
)

// TestVersion prints the version, commit, build date and Go toolchain.
func TestVersion(t *testing.T) {
	version, commit, date = "v1.2.3", "abcdef123456", "2026-11-30T00:00:00Z"
	defer func() { version, commit, date = "dev", "", "" }()
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := regexp.MustCompile(`^replicator v1\.2\.3 \(commit abcdef123456, built 2026-11-30T00:00:00Z, go[0-9.]+\S* linux/\w+\)\n$`)
	if !want.MatchString(out.String()) {
		t.Errorf("version printed %q", out.String())
	}
}

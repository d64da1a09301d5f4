package replication

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckSpillDir accepts a directory it can create and write, and
// refuses one it cannot with the key and the fix (the tests run as root
// too, so the refusals are ones root gets as well).
func TestCheckSpillDir(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		ok        bool
	}{
		{"exists", tmp, true},
		{"created", filepath.Join(tmp, "a", "spill"), true},
		{"under a file", filepath.Join(file, "spill"), false},
		{"a file", file, false},
		{"read-only file system", "/proc/replicator-spill", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSpillDir(tc.dir)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if left, _ := filepath.Glob(filepath.Join(tc.dir, ".write-check-*")); len(left) > 0 {
					t.Errorf("left behind %v", left)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range []string{"stream.spill_dir: " + tc.dir + " is not a writable directory", "StateDirectory=", "emptyDir"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/config"
)

// TestRunChecksSpillDir refuses to start, before any connection, when the
// spill directory cannot be written; without streaming it is not needed.
func TestRunChecksSpillDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Monitor.Listen = ""
	cfg.Stream.SpillDir = filepath.Join(file, "spill")
	err := NewRunner(cfg, hclog.NewNullLogger()).Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "stream.spill_dir: ") {
		t.Fatalf("Run = %v, want the spill_dir error", err)
	}

	cfg.Stream.Enabled = false
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewRunner(cfg, hclog.NewNullLogger()).Run(ctx); err != nil {
		t.Fatalf("without streaming: Run = %v", err)
	}
}

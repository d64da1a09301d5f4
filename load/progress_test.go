package load

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProgressLogsTablesStillCopying(t *testing.T) {
	var out syncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	p := newProgress(context.Background(), log, nil)
	p.every = 10 * time.Millisecond
	p.table("public.events", 4, 1, 300, 0) // never analyzed: no rows per page
	p.table("public.done", 2, 2, 0, 0)
	p.add("public.events", 100)
	p.chunkDone("public.events", 100, 100) // 1 row per page: 200 more to come
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "copying") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	got := out.String()
	for _, want := range []string{"copying: table=public.events rows=100", "chunks=2/4", "eta="} {
		if !strings.Contains(got, want) {
			t.Errorf("progress log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "public.done") {
		t.Errorf("progress logs a table whose copy is done:\n%s", got)
	}
}

func TestTerminalWritesWithoutBars(t *testing.T) {
	var out bytes.Buffer
	term := NewTerminal(&out)
	if _, err := term.Write([]byte("line\n")); err != nil || out.String() != "line\n" {
		t.Errorf("Write without bars: %q, %v", out.String(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newProgress(ctx, hclog.NewNullLogger(), term)
	p.table("public.t", 1, 0, 1, 10)
	p.add("public.t", 10)
	p.chunkDone("public.t", 1, 10)
	p.wait()
	if _, err := term.Write([]byte("after\n")); err != nil || !strings.Contains(out.String(), "after\n") {
		t.Errorf("Write after the bars: %q, %v", out.String(), err)
	}
	if !strings.Contains(out.String(), "public.t") {
		t.Errorf("no bar was drawn: %q", out.String())
	}
}

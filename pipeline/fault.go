package pipeline

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// faultEnv names the environment variable that arms test-only fault points,
// e.g. REPLICATOR_TEST_FAULT="crash-after-insert:0.2" (between a flush's
// data and its checkpoint), "crash-after-insert-of-flush:2" (there, in the
// process's second flush that wrote rows) or "crash-after-checkpoint:1"
// (after a commit checkpoint, before it is acknowledged), or
// "slow-insert:3" (every flush with rows waits 3 s before its INSERT, as
// a throttled ClickHouse would). It is unset, and the fault points
// do nothing, unless a test sets it.
const faultEnv = "REPLICATOR_TEST_FAULT"

type faults struct {
	crashAfterInsert     float64
	crashAfterCheckpoint float64
	// crashAtFlush is the number of the process's flush with rows to crash
	// after (1: the first), 0 for none.
	crashAtFlush int64
	// slowInsert delays every flush with rows.
	slowInsert time.Duration
}

// flushes counts the process's flushes with rows, across sessions.
var flushes atomic.Int64

func loadFaults() faults {
	var f faults
	for _, spec := range strings.Split(os.Getenv(faultEnv), ",") {
		name, p, ok := strings.Cut(spec, ":")
		prob, err := strconv.ParseFloat(p, 64)
		if !ok || err != nil {
			continue
		}
		switch name {
		case "crash-after-insert":
			f.crashAfterInsert = prob
		case "crash-after-checkpoint":
			f.crashAfterCheckpoint = prob
		case "crash-after-insert-of-flush":
			f.crashAtFlush = int64(prob)
		case "slow-insert":
			f.slowInsert = time.Duration(prob * float64(time.Second))
		}
	}
	return f
}

// beforeInsert is the fault point before a flush's data INSERTs: when
// armed it waits, as an INSERT that ClickHouse throttles does.
func (f faults) beforeInsert(ctx context.Context) {
	if f.slowInsert <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(f.slowInsert):
	}
}

// afterInsert is the fault point between a flush's data INSERTs and its
// checkpoint: when armed it kills the process as a crash would.
func (f faults) afterInsert() {
	if n := flushes.Add(1); f.crashAtFlush > 0 && n == f.crashAtFlush {
		crash(1)
	}
	crash(f.crashAfterInsert)
}

// afterCheckpoint is the fault point between a commit checkpoint and its
// acknowledgement.
func (f faults) afterCheckpoint() { crash(f.crashAfterCheckpoint) }

func crash(p float64) {
	if p > 0 && rand.Float64() < p {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

package verify

import (
	"os"
	"strings"
	"syscall"
)

// faultEnv arms test-only fault points, as in package pipeline:
// REPLICATOR_TEST_FAULT="crash-in-repair:1" kills the process after a
// repair's mutation was submitted and its snapshot taken, before its rows
// are written. Unset, the fault point does nothing.
const faultEnv = "REPLICATOR_TEST_FAULT"

func crashInRepair() {
	for _, spec := range strings.Split(os.Getenv(faultEnv), ",") {
		if spec == "crash-in-repair:1" {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}

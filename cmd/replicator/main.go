package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/replicator/replicator/config"
)

// envConfig names the configuration file when --config is not given.
const envConfig = "REPLICATOR_CONFIG"

func main() {
	os.Exit(int(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) exitCode {
	root := newRoot(stdin, stdout, stderr)
	if len(args) == 0 {
		root.SetOut(stderr)
		root.Usage()
		return exitUsage
	}
	root.SetArgs(longFlags(root, args))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := codeOf(err)
	if errors.As(err, new(errLogged)) {
		// The command said it already (a log line, a status report).
		return code
	}
	if wantsJSON(cmd, args) {
		printJSON(stdout, struct {
			Error    string   `json:"error"`
			ExitCode exitCode `json:"exit_code"`
		}{err.Error(), code})
		return code
	}
	fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
	var ce *codedError
	if code == exitUsage && !errors.As(err, &ce) {
		// The parser's errors: point at the help.
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// longFlags rewrites the single-dash long flags the former parser (Go's
// flag package) accepted, "-config FILE" or "-json", as "--config FILE"
// and "--json", so that scripts written for it keep working; "-version"
// is "--version". Arguments after "--" are left alone.
func longFlags(root *cobra.Command, args []string) []string {
	names := map[string]bool{"version": true, "help": true}
	for _, c := range root.Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
	}
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && len(name) > 1 && names[name] {
			out[i] = "-" + a
		}
	}
	return out
}

// wantsJSON reports whether the command line asked for JSON output.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	f := cmd.Flags().Lookup("json")
	if f == nil {
		return false
	}
	// A parse error may come before --json was read.
	return f.Value.String() == "true" || slices.Contains(args, "--json") || slices.Contains(args, "--json=true")
}

// newRoot returns the command tree.
func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "replicator",
		Short: "Copy changes of Postgres tables into ClickHouse",
		Long: "replicator copies changes of Postgres tables into ClickHouse over logical replication.\n\n" +
			"Exit codes: 0 ok; 1 different, unhealthy or failed; 2 usage or configuration error;\n" +
			"3 could not check (a server unreachable); 4 run stopped on a permanent error.\n" +
			envConfig + " names the configuration file when --config is not given.",
		Version:       versionLine(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(setupCommand(), runCommand(), statusCommand(), verifyCommand(), resyncCommand(), compactCommand(),
		validateCommand(), configCommand(), teardownCommand(), versionCommand())
	return root
}

// configFlag adds --config to cmd and returns the function that resolves
// the path: the flag, else REPLICATOR_CONFIG.
func configFlag(cmd *cobra.Command) func() (string, error) {
	path := cmd.Flags().String("config", "", "configuration file (HCL); default $"+envConfig)
	cmd.MarkFlagFilename("config", "hcl")
	return func() (string, error) {
		if *path != "" {
			return *path, nil
		}
		if p := os.Getenv(envConfig); p != "" {
			return p, nil
		}
		return "", usageError("--config FILE is required (or set " + envConfig + ")")
	}
}

// runWithConfig makes cmd take --config and run f with the loaded
// configuration; a configuration error ends it with exit code 2.
func runWithConfig(cmd *cobra.Command, f func(cmd *cobra.Command, file string, cfg config.Config) error) {
	path := configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		file, cfg, err := loadConfig(path)
		if err != nil {
			return err
		}
		for _, name := range config.UnknownEnv(os.Environ(), envConfig, cpuProfileEnv, "REPLICATOR_TEST_FAULT", "REPLICATOR_E2E") {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: the environment variable %s is not one the replicator reads (misspelled?)\n",
				cmd.CommandPath(), name)
		}
		return f(cmd, file, cfg)
	}
}

// loadConfig resolves the path and loads the configuration; its errors
// are configuration errors.
func loadConfig(path func() (string, error)) (string, config.Config, error) {
	p, err := path()
	if err != nil {
		return "", config.Config{}, err
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		return p, cfg, withCode(exitUsage, err)
	}
	return p, cfg, nil
}

// newLogger returns the logger of a command, writing to w.
func newLogger(cfg config.Config, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "replicator",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     w,
	}).With("slot", cfg.Postgres.Slot)
}

// command returns a command that takes no positional arguments.
func command(use, short string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

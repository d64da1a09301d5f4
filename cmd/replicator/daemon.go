package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/replicator/replicator/compact"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/load"
	"github.com/replicator/replicator/pipeline"
	"github.com/replicator/replicator/verify"
)

func setupCommand() *cobra.Command {
	cmd := command("setup", "Create the publication, slot and ClickHouse tables; copy the existing rows")
	cmd.Long = "setup checks the servers, creates the publication, the ClickHouse database, targets and views,\n" +
		"then the replication slot, and copies the existing rows. It is idempotent: run again, it keeps\n" +
		"what exists, resumes an interrupted copy and copies the tables added to the configuration."
	runWithConfig(cmd, func(cmd *cobra.Command, _ string, cfg config.Config) error {
		term, stderr := terminal(cmd.ErrOrStderr(), cfg)
		limitMemory(load.MemoryBound(cfg.Load))
		report, err := load.Setup(cmd.Context(), cfg, newLogger(cfg, stderr).Named("setup"), load.Options{Terminal: term})
		printLines(cmd.OutOrStdout(), report)
		return withCode(classify(err), err)
	})
	return cmd
}

func resyncCommand() *cobra.Command {
	cmd := command("resync", "Copy one table again under the live stream, or every table from a new slot")
	cmd.Long = "resync --table T copies one table again under the live stream into a shadow table that the daemon\n" +
		"swaps in when complete; readers see the old copy until then.\n" +
		"resync --all copies every table again from a new slot (the daemon stopped), each swapped in when\n" +
		"complete: the recovery of a Postgres history that does not continue."
	table := cmd.Flags().String("table", "", "the table to copy again, \"schema.name\"")
	all := cmd.Flags().Bool("all", false, "copy every table again from a new slot, the daemon stopped")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if (*table == "") == !*all {
			return usageError("one of --table T and --all is required")
		}
		return nil
	}
	runWithConfig(cmd, func(cmd *cobra.Command, _ string, cfg config.Config) error {
		if *table != "" {
			if err := configuredTable(cfg, *table); err != nil {
				return err
			}
		}
		term, stderr := terminal(cmd.ErrOrStderr(), cfg)
		log := newLogger(cfg, stderr)
		limitMemory(load.MemoryBound(cfg.Load))
		var report []string
		var err error
		if *all {
			report, err = load.Recover(cmd.Context(), cfg, load.ReasonRequested, log.Named("recovery"), load.Options{Terminal: term})
		} else {
			report, err = load.Resync(cmd.Context(), cfg, *table, log.Named("resync"), load.Options{Terminal: term})
		}
		printLines(cmd.OutOrStdout(), report)
		return withCode(classify(err), err)
	})
	return cmd
}

// configuredTable returns a usage error unless name is a configured table.
func configuredTable(cfg config.Config, name string) error {
	var names []string
	for _, t := range cfg.Tables {
		if t.Name == name {
			return nil
		}
		names = append(names, t.Name)
	}
	return usageError(fmt.Sprintf("--table %q is not a configured table (configured: %s)", name, strings.Join(names, ", ")))
}

// terminal returns, for setup and resync on a terminal with text logs, the
// terminal that draws progress bars and the writer that prints log lines
// above them; otherwise nil and stderr.
func terminal(stderr io.Writer, cfg config.Config) (*load.Terminal, io.Writer) {
	if f, ok := stderr.(*os.File); ok && cfg.Log.Format == "text" && isatty.IsTerminal(f.Fd()) {
		term := load.NewTerminal(stderr)
		return term, term
	}
	return nil, stderr
}

func printLines(w io.Writer, lines []string) {
	for _, line := range lines {
		fmt.Fprintln(w, line)
	}
}

func runCommand() *cobra.Command {
	cmd := command("run", "Stream changes into ClickHouse until SIGINT or SIGTERM")
	cmd.Long = "run streams the slot into ClickHouse until SIGINT or SIGTERM; SIGHUP reloads the configuration file.\n" +
		"Lost connections are retried from the checkpoint; on a value it cannot map it halts and stays up until\n" +
		"a SIGHUP. It exits 4 when it stops on a condition a restart does not fix (a lost or missing slot, no\n" +
		"checkpoint, a history that does not continue), 1 on other errors, 2 on a configuration error."
	runWithConfig(cmd, func(cmd *cobra.Command, file string, cfg config.Config) error {
		log := newLogger(cfg, cmd.ErrOrStderr())
		limitMemory(2 * cfg.Batch.MaxBytes)
		ctx := cmd.Context()
		if path := os.Getenv(cpuProfileEnv); path != "" {
			stop, err := startCPUProfile(path)
			if err != nil {
				return withCode(exitFailed, fmt.Errorf("cpu profile: %w", err))
			}
			defer stop()
		}
		runner := pipeline.NewRunner(cfg, log)
		runner.Metrics().SetBuildInfo(version, commit)
		runner.SetRecovery(recovery(log))
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go reloadOnHangup(ctx, hup, file, runner, log)
		// Continuous verification (monitor.verify_interval) runs beside
		// replication, over its own connections, until replication ends.
		sampler := verify.NewSampler(cfg, runner.Metrics(), log.Named("verify"))
		vctx, stopVerify := context.WithCancel(ctx)
		compaction := compact.NewSchedule(cfg, runner.Metrics(), log.Named("compact"))
		var g errgroup.Group
		g.Go(func() error { return sampler.Run(vctx) })
		g.Go(func() error { return compaction.Run(vctx) })
		err := runner.Run(ctx)
		stopVerify()
		g.Wait()
		if err != nil {
			// The daemon's log is where its operators look: the final
			// error is a log line like the others (JSON with log.format).
			log.Error("replication stopped", "error", err)
			return withCode(runCode(err), errLogged{err})
		}
		if ctx.Err() != nil {
			log.Info("exiting on SIGINT or SIGTERM")
		}
		return nil
	})
	return cmd
}

// errLogged is an error the command has logged already: main prints
// nothing more for it.
type errLogged struct{ error }

func (e errLogged) Unwrap() error { return e.error }

// recovery gives the daemon `replicator resync` and `replicator verify`
// for the tables a rewrite may have left behind in ClickHouse, and
// `replicator resync --all` for a history that does not continue.
func recovery(log hclog.Logger) pipeline.Recovery {
	return pipeline.Recovery{
		Recopy: func(ctx context.Context, cfg config.Config, source string) error {
			_, err := load.Resync(ctx, cfg, source, log.Named("resync"), load.Options{})
			return err
		},
		Recover: func(ctx context.Context, cfg config.Config, reason string) error {
			_, err := load.Recover(ctx, cfg, reason, log.Named("recovery"), load.Options{})
			return err
		},
		Verify: func(ctx context.Context, cfg config.Config, source string) (bool, string, error) {
			reports, err := verify.Run(ctx, cfg, verify.Options{Table: source}, log.Named("verify"))
			if err != nil {
				return false, "", err
			}
			for _, r := range reports {
				if r.NotVerified != "" {
					return false, r.NotVerified, nil
				}
				if !r.Equal() {
					return false, "", nil
				}
			}
			return true, "", nil
		},
	}
}

// reloadOnHangup reads the configuration file again on each SIGHUP and
// makes the runner continue with it; a file with an error is logged and
// the daemon keeps its configuration.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, path string, runner *pipeline.Runner, log hclog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := config.Load(path, nil)
		if err != nil {
			log.Error("SIGHUP: the configuration has an error; keeping the current one", "error", err)
			runner.ReloadFailed()
			continue
		}
		log.Info("SIGHUP: reloading the configuration", "file", path)
		runner.Reload(cfg)
	}
}

// limitMemory sets the Go heap's soft limit (at least 64 MiB) unless
// GOMEMLIMIT does: for run, 2 × batch.max_bytes, where the buffer and the
// INSERT block in flight fit, and near which the garbage collector works
// harder instead of letting the heap grow to twice what is live.
func limitMemory(bytes uint64) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(max(bytes, 64<<20)))
	}
}

// cpuProfileEnv names a file that `run` writes a CPU profile of its whole
// run to (go tool pprof reads it), for measuring where the time goes; "%p"
// in the name stands for the process id.
const cpuProfileEnv = "REPLICATOR_CPU_PROFILE"

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid())))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

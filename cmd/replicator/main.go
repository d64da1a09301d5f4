// Command replicator copies changes of Postgres tables into ClickHouse.
//
//	replicator setup  --config FILE
//	replicator run    --config FILE
//	replicator status --config FILE [--json] [--max-lag DURATION]
//	replicator verify --config FILE [--table T] [--repair] [--range-rows N]
//	replicator resync --config FILE --table T
//	replicator version
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"
	"golang.org/x/sync/errgroup"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/load"
	"github.com/replicator/replicator/pipeline"
	"github.com/replicator/replicator/status"
	"github.com/replicator/replicator/verify"
)

// version, commit and date are set at build time (make build, make dist)
// with -ldflags "-X main.version=... -X main.commit=... -X main.date=...";
// a build without them reports the module's VCS stamp where Go recorded one.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// versionLine describes the binary: version, commit, build date, Go.
func versionLine() string {
	c, d := commit, date
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
				if len(c) > 12 {
					c = c[:12]
				}
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("replicator %s (commit %s, built %s, %s %s/%s)", version, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

const usage = `usage: replicator <command> [flags]

commands:
  setup   --config FILE           create publication, slot, ClickHouse tables; copy existing rows
  run     --config FILE           stream changes into ClickHouse until SIGINT/SIGTERM
  status  --config FILE [--json] [--max-lag DURATION]
                                  show slot, checkpoint and lag; exit 1 when unhealthy
  verify  --config FILE [--table T] [--repair] [--range-rows N]
                                  compare Postgres and ClickHouse; exit 1 on differences;
                                  --repair copies the differing key ranges again online
  resync  --config FILE --table T copy one table again under the live stream; readers
                                  see the old copy until the new one is swapped in
  resync  --config FILE --all     copy every table again from a new slot (the daemon
                                  stopped), each swapped in when complete: the recovery
                                  of a Postgres history that does not continue
  version                         print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "setup", "run", "status", "verify", "resync":
	default:
		fmt.Fprintf(stderr, "replicator: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (HCL)")
	asJSON := fs.Bool("json", false, "print status as JSON (status only)")
	maxLag := fs.Duration("max-lag", 0, "status exits 1 when lag_seconds exceeds this (status only)")
	table := fs.String("table", "", "the table to verify or resync, \"schema.name\" (verify, resync)")
	all := fs.Bool("all", false, "copy every table again from a new slot, the daemon stopped (resync)")
	rangeRows := fs.Int("range-rows", 0, "rows per key range that verify compares by checksum (verify only; default 50000)")
	repair := fs.Bool("repair", false, "copy the key ranges with lasting differences again, under the live stream (verify only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintf(stderr, "replicator %s: --config FILE is required\n", cmd)
		return 2
	}
	if cmd == "resync" && (*table == "") == !*all {
		fmt.Fprintln(stderr, "replicator resync: one of --table T and --all is required")
		return 2
	}
	cfg, err := config.Load(*path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "replicator:", err)
		return 2
	}
	// setup on a terminal draws progress bars and prints log lines above them.
	var term *load.Terminal
	if f, ok := stderr.(*os.File); ok && (cmd == "setup" || cmd == "resync") && cfg.Log.Format == "text" && isatty.IsTerminal(f.Fd()) {
		term = load.NewTerminal(stderr)
		stderr = term
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "replicator",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     stderr,
	}).With("slot", cfg.Postgres.Slot)

	switch cmd {
	case "run":
		limitMemory(2 * cfg.Batch.MaxBytes)
	case "setup", "resync":
		limitMemory(load.MemoryBound(cfg.Load))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "setup":
		report, err := load.Setup(ctx, cfg, log.Named("setup"), load.Options{Terminal: term})
		for _, line := range report {
			fmt.Fprintln(stdout, line)
		}
		if err != nil {
			log.Error("setup failed", "error", err)
			return 1
		}
		return 0
	case "verify":
		reports, err := verify.Run(ctx, cfg, verify.Options{Table: *table, Repair: *repair, RangeRows: *rangeRows}, log.Named("verify"))
		for _, r := range reports {
			if err != nil {
				printVerify(stdout, r)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "replicator verify:", err)
			return 1
		}
		code := 0
		for _, r := range reports {
			printVerify(stdout, r)
			if !r.Equal() {
				code = 1
			}
		}
		return code
	case "resync":
		resync := func() ([]string, error) {
			return load.Resync(ctx, cfg, *table, log.Named("resync"), load.Options{Terminal: term})
		}
		if *all {
			resync = func() ([]string, error) {
				return load.Recover(ctx, cfg, load.ReasonRequested, log.Named("recovery"), load.Options{Terminal: term})
			}
		}
		report, err := resync()
		for _, line := range report {
			fmt.Fprintln(stdout, line)
		}
		if err != nil {
			log.Error("resync failed", "error", err)
			return 1
		}
		return 0
	case "run":
		if path := os.Getenv(cpuProfileEnv); path != "" {
			stop, err := startCPUProfile(path)
			if err != nil {
				log.Error("cpu profile", "error", err)
				return 1
			}
			defer stop()
		}
		runner := pipeline.NewRunner(cfg, log)
		runner.Metrics().SetBuildInfo(version, commit)
		runner.SetRecovery(recovery(log))
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go reloadOnHangup(ctx, hup, *path, runner, log)
		// Continuous verification (monitor.verify_interval) runs beside
		// replication, over its own connections, until replication ends.
		sampler := verify.NewSampler(cfg, runner.Metrics(), log.Named("verify"))
		vctx, stopVerify := context.WithCancel(ctx)
		var g errgroup.Group
		g.Go(func() error { return sampler.Run(vctx) })
		err := runner.Run(ctx)
		stopVerify()
		g.Wait()
		if err != nil {
			log.Error("replication stopped", "error", err)
			return 1
		}
		return 0
	default:
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := status.Read(sctx, cfg)
		if err != nil {
			fmt.Fprintln(stderr, "replicator status:", err)
			return 1
		}
		if *asJSON {
			if err := printJSON(stdout, st); err != nil {
				fmt.Fprintln(stderr, "replicator status:", err)
				return 1
			}
		} else {
			printStatus(stdout, st)
		}
		if !st.SlotExists || st.WALStatus == "lost" || !st.HasCheckpoint || st.Halt != nil {
			return 1
		}
		if *maxLag > 0 && st.LagSeconds > maxLag.Seconds() {
			fmt.Fprintf(stderr, "replicator status: lag %.3fs exceeds --max-lag %s\n", st.LagSeconds, *maxLag)
			return 1
		}
		return 0
	}
}

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

func lsnOrEmpty(ok bool, s fmt.Stringer) string {
	if !ok {
		return ""
	}
	return s.String()
}

// boolOrNil is *b, or nil (JSON null, "-" in the text) for nil.
func boolOrNil(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func statusFields(st *status.Report) map[string]any {
	m := map[string]any{
		"slot":                st.Slot,
		"protocol":            st.Protocol,
		"slot_exists":         st.SlotExists,
		"slot_active":         st.SlotActive,
		"wal_status":          st.WALStatus,
		"failover_slot":       boolOrNil(st.Failover),
		"slot_synced":         boolOrNil(st.Synced),
		"current_wal_lsn":     st.CurrentWALLSN.String(),
		"confirmed_flush_lsn": lsnOrEmpty(st.SlotExists, st.ConfirmedFlushLSN),
		"restart_lsn":         lsnOrEmpty(st.SlotExists, st.RestartLSN),
		"checkpoint_lsn":      lsnOrEmpty(st.HasCheckpoint, st.CheckpointLSN),
		"lag_bytes":           st.LagBytes,
		"lag_seconds":         st.LagSeconds,
		"retained_wal_bytes":  st.RetainedWALBytes,
		"tables":              st.Tables,
	}
	if st.LagUpperBound {
		m["lag_upper_bound"] = true
	}
	if h := st.History; st.HasCheckpoint && h.Known() {
		m["history"] = map[string]any{"epoch": h.Epoch, "system_id": strconv.FormatUint(h.SystemID, 10), "timeline": h.Timeline}
	}
	m["halted"] = nil
	if h := st.Halt; h != nil {
		m["halted"] = map[string]any{"reason": h.Reason, "error": h.Error, "since": h.Since.UTC().Format(time.RFC3339)}
	}
	if r := st.Recovery; r != nil {
		m["recovery"] = map[string]any{"epoch": r.Epoch, "reason": r.Reason, "started": r.Started.UTC().Format(time.RFC3339),
			"tables": r.Tables, "tables_done": r.TablesDone}
	}
	if !st.LastCommitTime.IsZero() && st.LastCommitTime.Unix() > 0 {
		m["last_commit_time"] = st.LastCommitTime.UTC().Format(time.RFC3339Nano)
	} else {
		m["last_commit_time"] = nil
	}
	return m
}

func printJSON(w io.Writer, st *status.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(statusFields(st))
}

func printStatus(w io.Writer, st *status.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	f := statusFields(st)
	for _, k := range []string{"slot", "protocol", "slot_active", "wal_status", "failover_slot", "slot_synced", "current_wal_lsn", "confirmed_flush_lsn",
		"restart_lsn", "checkpoint_lsn", "lag_bytes", "lag_seconds", "retained_wal_bytes", "last_commit_time"} {
		v := f[k]
		if v == nil || v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%v\n", k, v)
	}
	if h := st.History; st.HasCheckpoint && h.Known() {
		fmt.Fprintf(tw, "history\tepoch %d, system %d, timeline %d\n", h.Epoch, h.SystemID, h.Timeline)
	}
	if r := st.Recovery; r != nil {
		fmt.Fprintf(tw, "recovery\tunder way since %s (%s): %d of %d tables in place, readers see the previous copy of the others\n",
			r.Started.UTC().Format(time.RFC3339), r.Reason, r.TablesDone, r.Tables)
	}
	for _, t := range st.Tables {
		fmt.Fprintf(tw, "table %s\t%d live rows in %s (%d keys with tombstones)\n", t.Source, t.LiveRows, t.Target, t.Rows)
		if c := t.Copy; c != nil {
			fmt.Fprintf(tw, "  copy\t%d of %d chunks, %d rows of about %d copied\n", c.ChunksDone, c.Chunks, c.RowsCopied, c.RowsEstimated)
		}
	}
	tw.Flush()
	var problems []string
	if !st.SlotExists {
		problems = append(problems, "slot does not exist: run `replicator setup`")
	}
	copying := false
	for _, t := range st.Tables {
		copying = copying || t.Copy != nil
	}
	switch {
	case !st.HasCheckpoint && copying:
		problems = append(problems, "the copy of existing rows is running or was interrupted: `replicator setup` resumes it")
	case !st.HasCheckpoint:
		problems = append(problems, "no checkpoint in ClickHouse: run `replicator setup`")
	}
	if st.WALStatus == "lost" {
		problems = append(problems, "slot is lost: data is missing; resync with `replicator setup` after dropping the slot")
	}
	if h := st.Halt; h != nil {
		problems = append(problems, fmt.Sprintf("the daemon halted (%s) at %s and acknowledges nothing until it is fixed, then SIGHUP: %s",
			h.Reason, h.Since.UTC().Format(time.RFC3339), h.Error))
	}
	if len(problems) > 0 {
		fmt.Fprintln(w, "problems:\n  "+strings.Join(problems, "\n  "))
	}
}

func printVerify(w io.Writer, r *verify.Report) {
	if r.NotVerified != "" {
		fmt.Fprintf(w, "table %s: not verified: %s\n", r.Table, r.NotVerified)
		return
	}
	verdict := "equal"
	if !r.Equal() {
		verdict = "DIFFERENT"
	}
	fmt.Fprintf(w, "table %s: %s at snapshot %s\n", r.Table, verdict, r.Snapshot)
	fmt.Fprintf(w, "  compared %d rows in %d key ranges (%d drilled down) in %s, %.0f rows/s\n",
		r.Compared, r.Ranges, r.Drilled, r.Duration.Round(time.Millisecond), r.RowsPerSec)
	fmt.Fprintf(w, "  missing in ClickHouse %d, extra in ClickHouse %d, different %d, skipped (changed after the snapshot) %d\n",
		r.Missing, r.Extra, r.Different, r.Skipped)
	for _, kind := range []string{"missing", "extra", "different"} {
		if keys := r.FirstKeys[kind]; len(keys) > 0 {
			fmt.Fprintf(w, "  first %s: %s\n", kind, strings.Join(keys, ", "))
		}
	}
	if p := r.Repair; p != nil {
		groups := p.Groups
		more := ""
		if len(groups) > 10 {
			groups, more = groups[:10], fmt.Sprintf(" and %d more", len(p.Groups)-10)
		}
		fmt.Fprintf(w, "  REPAIRED %d key ranges (first sorting column = %s%s) with version %s: inserted %d, replaced %d, removed %d, "+
			"rewritten unchanged %d; deleted %d stored rows at or above the purge bound\n",
			len(p.Groups), strings.Join(groups, ", "), more, p.Snapshot-1, p.Inserted, p.Replaced, p.Removed, p.Rewritten, p.Purged)
		for _, kind := range []string{"inserted", "replaced", "removed"} {
			if keys := p.FirstKeys[kind]; len(keys) > 0 {
				fmt.Fprintf(w, "  first %s: %s\n", kind, strings.Join(keys, ", "))
			}
		}
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

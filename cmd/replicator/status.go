package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/status"
)

func statusCommand() *cobra.Command {
	cmd := command("status", "Show slot, checkpoint and lag; exit 1 when unhealthy")
	cmd.Long = "status reads Postgres and ClickHouse (the daemon need not run) and prints the slot, checkpoint and lag.\n" +
		"Exit codes: 0 healthy; 1 unhealthy (no slot, a lost slot, no checkpoint, lag above --max-lag);\n" +
		"2 usage or configuration error; 3 could not read the servers."
	asJSON := cmd.Flags().Bool("json", false, "print the status, or the error, as JSON on stdout")
	maxLag := cmd.Flags().Duration("max-lag", 0, "unhealthy when lag_seconds exceeds this duration (e.g. 30s, 5m)")
	runWithConfig(cmd, func(cmd *cobra.Command, _ string, cfg config.Config) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		defer cancel()
		st, err := status.Read(ctx, cfg)
		if err != nil {
			return withCode(exitUnavailable, err)
		}
		out := cmd.OutOrStdout()
		problems := statusProblems(st, *maxLag)
		if *asJSON {
			f := statusFields(st)
			f["has_checkpoint"] = st.HasCheckpoint
			f["healthy"] = len(problems) == 0
			f["problems"] = problems
			if err := printJSON(out, f); err != nil {
				return withCode(exitFailed, err)
			}
		} else {
			printStatus(out, st, problems)
		}
		if *maxLag > 0 && st.LagSeconds > maxLag.Seconds() {
			fmt.Fprintf(cmd.ErrOrStderr(), "replicator status: lag %.3fs exceeds --max-lag %s\n", st.LagSeconds, *maxLag)
		}
		if len(problems) > 0 {
			return withCode(exitFailed, errLogged{fmt.Errorf("unhealthy: %s", strings.Join(problems, "; "))})
		}
		return nil
	})
	return cmd
}

// statusProblems returns what makes the replication unhealthy, each with
// what to do; none when it is healthy.
func statusProblems(st *status.Report, maxLag time.Duration) []string {
	problems := []string{}
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
	if maxLag > 0 && st.LagSeconds > maxLag.Seconds() {
		problems = append(problems, fmt.Sprintf("lag %.3fs exceeds --max-lag %s", st.LagSeconds, maxLag))
	}
	return problems
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

func printStatus(w io.Writer, st *status.Report, problems []string) {
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
	if len(problems) > 0 {
		fmt.Fprintln(w, "problems:\n  "+strings.Join(problems, "\n  "))
	}
}

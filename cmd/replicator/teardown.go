package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/load"
)

func teardownCommand() *cobra.Command {
	cmd := command("teardown", "Drop the replication slot, and the publication setup created, after a confirmation")
	cmd.Long = "teardown ends a replication for good: it drops the replication slot (so that Postgres no longer\n" +
		"retains WAL for it) and the publication, but only when `replicator setup` created it and no other\n" +
		"slot of the database may stream with it. With --drop-clickhouse it also drops the ClickHouse targets\n" +
		"and views of the configured tables and the slot's rows of the replicator's own tables. It refuses\n" +
		"while the daemon streams from the slot. It asks for a confirmation on a terminal; --yes skips it."
	yes := cmd.Flags().Bool("yes", false, "do not ask for a confirmation (needed without a terminal)")
	dropClickHouse := cmd.Flags().Bool("drop-clickhouse", false, "also drop the ClickHouse targets, views and the slot's rows of the replicator's tables")
	runWithConfig(cmd, func(cmd *cobra.Command, _ string, cfg config.Config) error {
		in, out := cmd.InOrStdin(), cmd.OutOrStdout()
		f, isFile := in.(*os.File)
		interactive := isFile && isatty.IsTerminal(f.Fd())
		if !*yes && !interactive {
			return usageError("standard input is not a terminal to confirm on: pass --yes to tear down without a confirmation")
		}
		t, err := load.PlanTeardown(cmd.Context(), cfg, *dropClickHouse)
		if err != nil {
			return withCode(classify(err), err)
		}
		defer t.Close()
		for _, k := range t.Kept {
			fmt.Fprintln(out, "keep: "+k)
		}
		if t.Empty() {
			fmt.Fprintln(out, "nothing to drop")
			return nil
		}
		for _, s := range t.Steps {
			fmt.Fprintln(out, "will "+s)
		}
		if !*yes {
			fmt.Fprintf(cmd.ErrOrStderr(), "Tear down replication slot %s? This cannot be undone; type yes to go on: ", cfg.Postgres.Slot)
			answer := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(in).ReadString('\n')
				answer <- strings.TrimSpace(line)
			}()
			select {
			case <-cmd.Context().Done(): // SIGINT at the question
				fmt.Fprintln(cmd.ErrOrStderr())
				return withCode(exitFailed, fmt.Errorf("interrupted: nothing was dropped"))
			case a := <-answer:
				if a != "yes" {
					return withCode(exitFailed, fmt.Errorf("not confirmed: nothing was dropped"))
				}
			}
		}
		report, err := t.Run(cmd.Context())
		printLines(out, report)
		return withCode(classify(err), err)
	})
	return cmd
}

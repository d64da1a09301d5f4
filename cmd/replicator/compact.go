package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/replicator/replicator/compact"
	"github.com/replicator/replicator/config"
)

func compactCommand() *cobra.Command {
	cmd := command("compact", "Remove the rows of deleted keys from ClickHouse, below the checkpoint")
	cmd.Long = "compact removes, from each configured table's ClickHouse copy (history tables excepted), every row\n" +
		"of the keys whose newest row is a delete below the stored checkpoint, with a mutation; it runs beside\n" +
		"the daemon. compaction.interval makes the daemon do it on a schedule.\n" +
		"Exit codes: 0 done; 1 failed, or a mutation still running after --wait; 2 usage or configuration error."
	asJSON := cmd.Flags().Bool("json", false, "print the reports as JSON on stdout")
	table := cmd.Flags().String("table", "", "compact only this table, \"schema.name\"")
	wait := cmd.Flags().Duration("wait", 0, "how long to wait for ClickHouse to apply a mutation (default compaction.wait)")
	runWithConfig(cmd, func(cmd *cobra.Command, _ string, cfg config.Config) error {
		if *table != "" {
			if err := configuredTable(cfg, *table); err != nil {
				return err
			}
		}
		opt := compact.Options{Table: *table, Wait: cfg.Compaction.Wait}
		if *wait > 0 {
			opt.Wait = *wait
		}
		log := newLogger(cfg, cmd.ErrOrStderr())
		reports, err := compact.Run(cmd.Context(), cfg, opt, log.Named("compact"))
		out := cmd.OutOrStdout()
		pending := false
		if *asJSON {
			tables := make([]map[string]any, len(reports))
			for i, r := range reports {
				tables[i] = map[string]any{"table": r.Table, "target": r.Target, "skipped": r.Skipped, "below_lsn": r.Bound.String(),
					"keys": r.Places, "rows": r.Rows, "pending": r.Pending}
				pending = pending || r.Pending
			}
			doc := map[string]any{"tables": tables}
			if err != nil {
				doc["error"] = err.Error()
			}
			if perr := printJSON(out, doc); perr != nil && err == nil {
				err = perr
			}
		} else {
			for _, r := range reports {
				fmt.Fprintln(out, r.Line())
				pending = pending || r.Pending
			}
		}
		if err != nil {
			return withCode(classify(err), err)
		}
		if pending {
			return withCode(exitFailed, fmt.Errorf("a mutation is still running: compact again later, or wait longer (--wait)"))
		}
		return nil
	})
	return cmd
}

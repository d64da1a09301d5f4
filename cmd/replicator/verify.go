package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/verify"
)

func verifyCommand() *cobra.Command {
	cmd := command("verify", "Compare Postgres and ClickHouse; exit 1 on differences")
	cmd.Long = "verify compares each configured table in Postgres with its ClickHouse copy on a live system;\n" +
		"--repair copies the key ranges with lasting differences again, under the live stream.\n" +
		"Exit codes: 0 equal; 1 different (also after a repair); 2 usage or configuration error;\n" +
		"3 could not compare (a server unreachable, the daemon's checkpoint not passing the snapshot)."
	asJSON := cmd.Flags().Bool("json", false, "print the reports, or the error, as JSON on stdout")
	table := cmd.Flags().String("table", "", "compare only this table, \"schema.name\"")
	rangeRows := cmd.Flags().Int("range-rows", 0, "rows per key range compared by checksum (default 50000)")
	repair := cmd.Flags().Bool("repair", false, "copy the key ranges with lasting differences again, under the live stream")
	runWithConfig(cmd, func(cmd *cobra.Command, _ string, cfg config.Config) error {
		if *table != "" {
			if err := configuredTable(cfg, *table); err != nil {
				return err
			}
		}
		log := newLogger(cfg, cmd.ErrOrStderr())
		reports, err := verify.Run(cmd.Context(), cfg, verify.Options{Table: *table, Repair: *repair, RangeRows: *rangeRows}, log.Named("verify"))
		out := cmd.OutOrStdout()
		if err != nil {
			if !*asJSON {
				for _, r := range reports {
					printVerify(out, r)
				}
			}
			return withCode(exitUnavailable, err)
		}
		equal := true
		for _, r := range reports {
			equal = equal && r.Equal()
		}
		if *asJSON {
			tables := make([]map[string]any, len(reports))
			for i, r := range reports {
				tables[i] = verifyFields(r)
			}
			if err := printJSON(out, map[string]any{"equal": equal, "tables": tables}); err != nil {
				return withCode(exitFailed, err)
			}
		} else {
			for _, r := range reports {
				printVerify(out, r)
			}
		}
		if !equal {
			return withCode(exitFailed, errLogged{fmt.Errorf("tables differ")})
		}
		return nil
	})
	return cmd
}

// verifyFields is the JSON object of a table's report.
func verifyFields(r *verify.Report) map[string]any {
	m := map[string]any{"table": r.Table}
	if r.NotVerified != "" {
		m["not_verified"] = r.NotVerified
		return m
	}
	keys := func(k map[string][]string) map[string][]string {
		if k == nil {
			return map[string][]string{}
		}
		return k
	}
	m["equal"] = r.Equal()
	m["snapshot"] = r.Snapshot.String()
	m["compared"] = r.Compared
	m["missing"] = r.Missing
	m["extra"] = r.Extra
	m["different"] = r.Different
	m["skipped"] = r.Skipped
	m["ranges"] = r.Ranges
	m["drilled"] = r.Drilled
	m["first_keys"] = keys(r.FirstKeys)
	m["duration_seconds"] = r.Duration.Seconds()
	m["rows_per_second"] = r.RowsPerSec
	if p := r.Repair; p != nil {
		m["repair"] = map[string]any{"snapshot": p.Snapshot.String(), "groups": p.Groups, "inserted": p.Inserted,
			"replaced": p.Replaced, "removed": p.Removed, "rewritten": p.Rewritten, "purged": p.Purged,
			"first_keys": keys(p.FirstKeys)}
	}
	return m
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

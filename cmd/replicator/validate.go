package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/replicator/replicator/config"
)

func validateCommand() *cobra.Command {
	cmd := command("validate", "Check the configuration file offline; exit 0 when valid, 2 otherwise")
	cmd.Long = "validate reads and checks the configuration file, with the environment's overrides, without\n" +
		"connecting to any server, and reports every problem at once. Exit codes: 0 valid; 2 invalid."
	path := configFlag(cmd)
	asJSON := cmd.Flags().Bool("json", false, "print the result as JSON on stdout")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		file, cfg, err := loadConfig(path)
		out := cmd.OutOrStdout()
		if err != nil {
			if !*asJSON || file == "" {
				return err
			}
			problems := []string{err.Error()}
			if ce := (*config.Error)(nil); errors.As(err, &ce) {
				problems = ce.Problems
			}
			printJSON(out, map[string]any{"file": file, "valid": false, "problems": problems,
				"error": err.Error(), "exit_code": exitUsage})
			return withCode(exitUsage, errLogged{err})
		}
		if *asJSON {
			return printJSON(out, map[string]any{"file": file, "valid": true, "problems": []string{}, "tables": len(cfg.Tables)})
		}
		fmt.Fprintf(out, "%s: valid (%d tables)\n", file, len(cfg.Tables))
		return nil
	}
	return cmd
}

func configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration", Args: cobra.NoArgs}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return usageError("a subcommand is required: show")
	}
	cmd.AddCommand(configShowCommand())
	return cmd
}

func configShowCommand() *cobra.Command {
	cmd := command("show", "Print the effective configuration, secrets redacted, and where each value came from")
	cmd.Long = "config show prints every key of the effective configuration (the file, the environment's\n" +
		"overrides and the defaults) with where its value came from: FILE:LINE, env NAME, or default.\n" +
		"Passwords are redacted, also inside postgres.dsn. It connects to no server."
	path := configFlag(cmd)
	asJSON := cmd.Flags().Bool("json", false, "print the settings as JSON on stdout")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		file, err := path()
		if err != nil {
			return err
		}
		cfg, origins, err := config.LoadWithOrigins(file, nil)
		if err != nil {
			return withCode(exitUsage, err)
		}
		out := cmd.OutOrStdout()
		settings := cfg.Settings()
		if *asJSON {
			list := make([]map[string]string, len(settings))
			for i, s := range settings {
				list[i] = map[string]string{"key": s.Key, "value": s.Value, "origin": origins.Origin(s.Key)}
			}
			return printJSON(out, map[string]any{"file": file, "settings": list})
		}
		fmt.Fprintf(out, "# the effective configuration of %s, secrets redacted\n", file)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, s := range settings {
			fmt.Fprintf(tw, "%s = %s\t# %s\n", s.Key, s.Value, origins.Origin(s.Key))
		}
		return tw.Flush()
	}
	return cmd
}

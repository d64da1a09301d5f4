package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
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

func versionCommand() *cobra.Command {
	cmd := command("version", "Print the version, commit, build date and Go toolchain")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		return nil
	}
	return cmd
}

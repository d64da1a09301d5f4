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

// buildInfo is the binary's version, commit, build date and Go toolchain.
type buildInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Built   string `json:"built"`
	Go      string `json:"go"`
	Target  string `json:"target"`
}

// build describes the binary: the values set at build time, else the
// module's VCS stamp where Go recorded one.
func build() buildInfo {
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
	return buildInfo{Version: version, Commit: c, Built: d, Go: runtime.Version(), Target: runtime.GOOS + "/" + runtime.GOARCH}
}

// versionLine describes the binary: version, commit, build date, Go.
func versionLine() string {
	b := build()
	return fmt.Sprintf("replicator %s (commit %s, built %s, %s %s)", b.Version, b.Commit, b.Built, b.Go, b.Target)
}

func versionCommand() *cobra.Command {
	cmd := command("version", "Print the version, commit, build date and Go toolchain")
	asJSON := cmd.Flags().Bool("json", false, "print them as a JSON object")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *asJSON {
			return printJSON(cmd.OutOrStdout(), build())
		}
		fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		return nil
	}
	return cmd
}

// Command replicator copies changes of Postgres tables into ClickHouse.
//
//	replicator setup    --config FILE
//	replicator run      --config FILE
//	replicator status   --config FILE [--json] [--max-lag DURATION]
//	replicator verify   --config FILE [--json] [--table T] [--repair] [--range-rows N]
//	replicator resync   --config FILE (--table T | --all)
//	replicator validate --config FILE [--json]
//	replicator config show --config FILE [--json]
//	replicator teardown --config FILE [--yes] [--drop-clickhouse]
//	replicator version
//	replicator completion bash|zsh|fish|powershell
//
// REPLICATOR_CONFIG names the file when --config is not given. The exit
// codes are those of exitCode. A command's final error is one line on
// stderr, `replicator <command>: <error>`, or with --json the object
// {"error": ..., "exit_code": N} on stdout.
//
// It parses command lines, maps errors to exit codes and prints; the work
// is done by the packages it calls (load, pipeline, status, verify), and
// it never talks to a server itself.
package main

// Package test holds the end-to-end tests: each runs the replicator binary
// against a private PostgreSQL and a private clickhouse-server that package
// harness starts, never against a mock of either. Without the servers they
// skip with a message; with REPLICATOR_E2E=1 (as in CI) they fail instead.
package test

// Package status reads the replication state for `replicator status` from
// Postgres (the slot's row, the current WAL position, a peek at the slot
// when it is idle) and from ClickHouse (the checkpoint, the daemon's
// progress report, row counts). It works whether or not the daemon runs.
//
// It only reads: it never consumes the slot, never writes to either
// database, and never acknowledges anything.
package status

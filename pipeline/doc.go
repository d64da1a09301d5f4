// Package pipeline is the replication daemon: Runner streams the slot with
// retries and backoff, the applier maps each change, buffers it, flushes it
// to ClickHouse and then checkpoints it, the watcher emits heartbeats
// and checks the slot's WAL retention, and the rewrite check compares each
// table's storage with its record and has a table that a rewrite left
// behind verified or copied again (through Recovery, which cmd supplies).
// On bad data (a value it cannot map) Runner halts instead of returning:
// the process stays up, says why, and acknowledges nothing until a reload.
//
// The applier hands Postgres, through the stream, only positions that a
// saved checkpoint covers: data first, then the checkpoint, then the
// acknowledgement. Pipeline never creates tables or slots and never copies
// a table itself (package load does); it never acknowledges what it only
// received.
package pipeline

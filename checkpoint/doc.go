// Package checkpoint stores the replicator's own state in ClickHouse:
// replication positions, truncations, and the chunk state of table copies.
//
// A checkpoint is written after the data it covers and read at start to
// resume; the daemon's progress report (what it received and has not
// stored) is kept beside it for `replicator status`; a copy records each
// chunk once its rows are stored, so that a stopped copy resumes. The
// tables are created from package ddl. Store never writes data rows and
// never talks to Postgres.
package checkpoint

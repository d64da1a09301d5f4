// Package checkpoint stores replication positions in ClickHouse.
//
// A checkpoint is written after the data it covers and read at start to
// resume; the daemon's progress report (what it received and has not
// stored) is kept beside it for `replicator status`. The tables are created
// from package ddl. Store never writes data rows and never talks to Postgres.
package checkpoint

// Package sink writes to the target ClickHouse over the native protocol.
//
// Client is the connection: it probes the server (Server: its version,
// settings, database engine, Cloud, table comments, and so the features
// the mapping and the DDL may use, and the session settings), runs
// statements and queries,
// reads a table's columns, and classifies errors as retryable by the
// server's named error codes. Writer buffers mapped rows per target table,
// keeps the last image per key, and writes them with one INSERT per table;
// in a table's replay window it leaves out the rows that a stored row of a
// later change of their transaction supersedes (Superseded).
//
// Sink writes rows; it never writes or advances checkpoints (package
// checkpoint does, after a flush returned) and never talks to Postgres.
package sink

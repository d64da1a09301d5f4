// Package postgres is the replicator's SQL access to the source Postgres:
// connections with the session settings every value parser relies on, the
// catalog (table columns and replica identity, publications, slot rows, the
// current WAL position, server settings), snapshot transactions that read
// tables as text rows of mapping values, and the errors that say what to
// change on the server.
//
// It never speaks the replication protocol (package replication does, over
// a connection configured here) and never writes to ClickHouse.
package postgres

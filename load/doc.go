// Package load prepares replication and copies the existing rows: `replicator
// setup` checks the server, creates the publication, the ClickHouse
// database, target tables, live views and the replicator's own tables, and,
// when the slot is new, creates it and copies every table inside the
// snapshot its creation exported, with the slot's consistent point − 1 as
// version. It then saves that point as the first checkpoint.
//
// The copy splits each table into chunks of heap pages, copies them with
// several workers (binary COPY into columnar blocks), records each chunk in
// ClickHouse once its rows are stored, and resumes a stopped copy in the
// snapshot of a temporary slot.
//
// It never streams changes (package pipeline does) and never acknowledges
// anything to Postgres.
package load

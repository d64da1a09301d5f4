// Package load prepares replication and copies the existing rows: `replicator
// setup` checks the server, creates the publication, the ClickHouse
// database, target tables, live views and the replicator's own tables, and,
// when the slot is new, creates it and copies every table inside the
// snapshot its creation exported, with the slot's consistent point as
// version. It then saves that point as the first checkpoint.
//
// It never streams changes (package pipeline does) and never acknowledges
// anything to Postgres.
package load

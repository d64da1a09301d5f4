// Package ddl renders every statement that creates, changes or fills a
// ClickHouse table of the replicator: the database, the target tables and
// their live views, TRUNCATE, the checkpoint and progress tables, and the
// INSERT heads of data and checkpoint rows. Database carries what changes
// the syntax (the database name and engine, a cluster, the server's
// version, whether it is ClickHouse Cloud and keeps table comments: facts
// the sink probed), so such a change is made here only.
//
// It is pure: it never connects to a server and never decides what to run.
package ddl

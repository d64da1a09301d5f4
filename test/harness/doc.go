// Package harness starts private servers for tests and for the demo: a
// PostgreSQL cluster with wal_level=logical and a ClickHouse server, each
// in its own temp directory and listening only on a free port of 127.0.0.1.
// It never touches a system-wide cluster: it does not read or change
// /var/lib/postgresql, /var/lib/clickhouse or any service, and it only reads
// binaries installed from Debian's packages (test/install-deps.sh installs
// them) or, for a PostgreSQL version other than Debian's 15 chosen with
// PG_VERSION, from the npm builds test/install-pg.sh installs under
// .cache/postgres.
//
// Both servers run as direct children of the calling process, in their own
// process group, with a parent-death signal of SIGKILL, so they do not
// outlive a test binary that panics or is killed. Still, call Close (or
// Stop) when done: Stop shuts a server down cleanly and keeps its directory
// for a later Restart; Close also removes the directory.
//
// A PostgreSQL server can get a physical streaming standby
// (Postgres.StartStandby; with StandbyOptions.SyncSlots on 17+ one that
// keeps the primary's failover slots), which FailOver promotes at the
// primary's address after killing the primary; Postgres.CopyDataDir and
// PutBackDataDir take a data directory back in time.
//
// When the caller is root, PostgreSQL (which refuses to run as root) runs as
// the "postgres" user: its directory is chowned to that user, and parent
// directories that the user cannot traverse get o+x.
package harness

// Package sql holds the DDL and queries users read: the ClickHouse target
// table, live view and checkpoint table that `replicator setup` creates for
// config.example.hcl, the Postgres side of the setup, and the seed queries
// rewritten on the live view. The test in this package keeps the generated
// DDL and these files identical (go test ./sql -update rewrites them).
package sql

// Package history decides whether a Postgres server continues the history
// that a ClickHouse checkpoint was taken on (invariant 12 of DESIGN.md): at
// connect from what the server says of itself and of the slot (Check), and
// from the first transactions it streams (Witness). An LSN alone is not a
// position: after a failover to a standby that missed commits, or a data
// directory put back, the same LSNs name other transactions.
package history

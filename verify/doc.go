// Package verify compares each configured table in Postgres with its
// ClickHouse copy under the mapping rules, on a live system: Postgres is
// read in one snapshot at a known WAL position, ClickHouse once its
// checkpoint passed that position; both sides compute counts and checksums
// per key range, and only ranges that differ are read row by row.
//
// It only reads: it never repairs a difference, never writes to either
// database, and never touches the replication slot.
package verify

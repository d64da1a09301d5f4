// Package verify compares each configured table in Postgres with its
// ClickHouse copy under the mapping rules, on a live system: Postgres is
// read in one snapshot at a known WAL position, ClickHouse once its
// checkpoint passed that position; both sides compute counts and checksums
// per key range of the first sorting column, and only ranges that differ
// are read row by row.
//
// Comparing only reads. Repair (Options.Repair) is the one writer: it
// copies again the key ranges with lasting differences, in the snapshot of
// a temporary slot, after a mutation that deletes the stored rows that
// could outrank the copy; it never writes a checkpoint and never touches
// the daemon's slot. Sampler is continuous verification inside the
// daemon: it only reads, and reports by metrics and logs.
package verify

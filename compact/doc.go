// Package compact removes deleted rows from ClickHouse targets.
//
// A delete is stored as a tombstone, and ReplacingMergeTree keeps the
// newest row of a key, tombstone or not, forever. A compaction removes
// every row of each place (sorting key, and partition key when the target
// has one) whose newest row is a tombstone at a version below the stored
// checkpoint, and only rows at versions below it: the stream never writes
// such a version again (a replay starts at the checkpoint and skips what
// it covers), so no row of a later change, and no row a copy writes later,
// is ever removed. The rows to remove are decided once, by the newest row
// of each place, and written to a table of the compaction's own, which a
// mutation of the target then names by key and version.
//
// compact never writes a row into a target, never compacts a history
// table, and never advances a checkpoint.
package compact

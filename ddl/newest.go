package ddl

import (
	"fmt"

	"github.com/replicator/replicator/mapping"
)

// The newest rows of a target are those its reads compare: the newest by
// (_version, _seq) of each sorting key in each partition, tombstones
// included. On an unpartitioned target FINAL gives them. On a partitioned
// one FINAL also collapses rows across partitions (the daemon's sessions
// pin do_not_merge_across_partitions_select_final = 0 where the server has
// it), where the tombstone and the new row of a partition move share a
// sorting key and a version and FINAL may keep the tombstone; so there the
// rows are picked per partition, which is exact because a tombstone always
// lives in its row's partition. The forms run on every server version and
// send no setting.

// Newest returns the FROM source of the newest rows of table (a quoted
// database.table) among those matching where, a condition on sorting key
// columns only (empty for all): table FINAL when partitionKey is empty,
// else a subquery that keeps the newest row of each sorting key and
// partition. sortingKey and partitionKey are the target's keys as
// ClickHouse renders them ("author_id, created_at, id",
// "toYYYYMM(created_at)"). Its columns are the table's; a reader filters
// tombstones (and the range again) in its own WHERE.
func Newest(table, sortingKey, partitionKey, where string) string {
	if partitionKey == "" {
		return table + " FINAL"
	}
	if where != "" {
		where = " WHERE " + where
	}
	return fmt.Sprintf("(SELECT * FROM %s%s ORDER BY %s DESC, %s DESC LIMIT 1 BY %s, %s)",
		table, where, Quote(mapping.VersionColumn), Quote(mapping.SeqColumn), sortingKey, partitionKey)
}

// CountNewest returns the query of the number of the newest rows of table
// (see Newest) and of those that are not tombstones, both UInt64. On a
// partitioned target it groups by the keys: it reads two columns where a
// sort would read the rows.
func CountNewest(table, sortingKey, partitionKey string) string {
	if partitionKey == "" {
		return fmt.Sprintf("SELECT count(), countIf(%s = 0) FROM %s FINAL", Quote(mapping.DeletedColumn), table)
	}
	return fmt.Sprintf("SELECT count(), countIf(%[1]s = 0) FROM (SELECT argMax(%[2]s, (%[3]s, %[4]s)) AS %[1]s FROM %[5]s GROUP BY %[6]s, %[7]s)",
		Quote(liveDeleted), Quote(mapping.DeletedColumn), Quote(mapping.VersionColumn), Quote(mapping.SeqColumn), table, sortingKey, partitionKey)
}

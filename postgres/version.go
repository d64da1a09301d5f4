package postgres

// The PostgreSQL versions the replicator supports, and the first major
// version of each server feature it asks for. Every such feature is gated
// by the server's version here, never assumed: a feature a server lacks
// takes another path or is refused at setup or start with an error that
// says so.
const (
	// MinVersion is the oldest supported major version. 13 brought what
	// the replicator cannot do without: wal_status in pg_replication_slots
	// (the lost-slot check), publish_via_partition_root (partitioned
	// tables), and pg_current_snapshot and xid8 (the copy's and the
	// stream's transaction ids).
	MinVersion = 13
	// MessagesVersion is the first version whose pgoutput forwards logical
	// messages (the `messages` option). Before it, heartbeats still write
	// WAL that keepalives report, and a resync is marked by a row of
	// MarkTable instead of a message.
	MessagesVersion = 14
	// StreamingVersion is the first version that streams in-progress
	// transactions (pgoutput protocol version 2, `streaming`).
	StreamingVersion = 14
	// TIDRangeVersion is the first version that scans a range of ctids
	// without reading the whole table: copies are split into page ranges
	// from it on.
	TIDRangeVersion = 14
	// InvalidationReasonVersion is the first version whose
	// pg_replication_slots says why a slot was invalidated
	// (invalidation_reason): a slot invalidated for another reason than
	// removed WAL (e.g. idle_replication_slot_timeout on 18) is lost too.
	InvalidationReasonVersion = 17
	// FailoverSlotVersion is the first version with failover slots: a
	// logical slot created or altered with FAILOVER is kept by standbys
	// that synchronize slots (sync_replication_slots), so that a promoted
	// standby goes on from it; pg_replication_slots shows failover and
	// synced from it on.
	FailoverSlotVersion = 17
	// GeneratedVersion is the first version whose pgoutput can send
	// stored generated columns (the publication option
	// publish_generated_columns = stored). Before it no generated column
	// is ever sent; virtual generated columns (18) are never sent.
	GeneratedVersion = 18
)

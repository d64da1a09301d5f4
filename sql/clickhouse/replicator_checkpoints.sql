CREATE TABLE IF NOT EXISTS `analytics`.`replicator_checkpoints`
(
    slot String,
    lsn UInt64,
    commit UInt8,
    commit_time DateTime('UTC'),
    written_at DateTime('UTC'),
    epoch UInt32,
    system_id UInt64 DEFAULT 0,
    timeline UInt32 DEFAULT 0,
    last_lsn UInt64 DEFAULT 0,
    last_xid UInt32 DEFAULT 0,
    last_time UInt64 DEFAULT 0
)
ENGINE = ReplacingMergeTree(lsn)
ORDER BY (slot, epoch);

CREATE TABLE IF NOT EXISTS `analytics`.`replicator_progress`
(
    slot String,
    updated_us UInt64,
    oldest_unstored_us UInt64,
    halt_reason String DEFAULT '',
    halt_error String DEFAULT ''
)
ENGINE = ReplacingMergeTree(updated_us)
ORDER BY slot;

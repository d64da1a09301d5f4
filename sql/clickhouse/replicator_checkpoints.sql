CREATE TABLE IF NOT EXISTS `analytics`.`replicator_checkpoints`
(
    slot String,
    lsn UInt64,
    commit UInt8,
    commit_time DateTime('UTC'),
    written_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(lsn)
ORDER BY slot;

CREATE TABLE IF NOT EXISTS `analytics`.`replicator_progress`
(
    slot String,
    updated_us UInt64,
    oldest_unstored_us UInt64
)
ENGINE = ReplacingMergeTree(updated_us)
ORDER BY slot;

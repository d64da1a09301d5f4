CREATE TABLE IF NOT EXISTS `analytics`.`events_local` ON CLUSTER `analytics`
(
    `id` UInt64 DEFAULT 0,
    `project_id` UInt64 DEFAULT 0,
    `author_id` UInt64 DEFAULT 0,
    `target_id` UInt64 DEFAULT 0,
    `created_at` DateTime('UTC'),
    `updated_at` DateTime('UTC'),
    `action` UInt8 DEFAULT 0,
    `target_type` LowCardinality(String) DEFAULT '',
    `group_id` UInt64 DEFAULT 0,
    `fingerprint` UInt64 DEFAULT 0,
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/analytics/events', '{replica}', _version)
ORDER BY (`id`);

CREATE TABLE IF NOT EXISTS `analytics`.`events` ON CLUSTER `analytics` AS `analytics`.`events_local`
ENGINE = Distributed(`analytics`, `analytics`, `events_local`, sipHash64(`id`));

CREATE VIEW IF NOT EXISTS `analytics`.`events_live` ON CLUSTER `analytics` AS
SELECT `id`, `project_id`, `author_id`, `target_id`, `created_at`, `updated_at`, `action`, `target_type`, `group_id`, `fingerprint`
FROM `analytics`.`events` FINAL
WHERE _deleted = 0;

CREATE TABLE IF NOT EXISTS `analytics`.`replicator_checkpoints` ON CLUSTER `analytics`
(
    slot String,
    lsn UInt64,
    commit UInt8,
    commit_time DateTime('UTC'),
    written_at DateTime('UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_checkpoints', '{shard}-{replica}', lsn)
ORDER BY slot;

TRUNCATE TABLE `analytics`.`events_local` ON CLUSTER `analytics`;

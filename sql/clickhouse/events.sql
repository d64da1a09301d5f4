CREATE TABLE IF NOT EXISTS `analytics`.`events`
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
ENGINE = ReplacingMergeTree(_version)
ORDER BY (`id`);

CREATE VIEW IF NOT EXISTS `analytics`.`events_live` AS
SELECT `id`, `project_id`, `author_id`, `target_id`, `created_at`, `updated_at`, `action`, `target_type`, `group_id`, `fingerprint`
FROM `analytics`.`events` FINAL
WHERE _deleted = 0;

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

CREATE VIEW IF NOT EXISTS `analytics`.`events_committed` AS
SELECT `id`, `project_id`, `author_id`, `target_id`, `created_at`, `updated_at`, `action`, `target_type`, `group_id`, `fingerprint`
FROM
(
    SELECT `id`,
           argMax(`project_id`, (`_version`, `_seq`)) AS `project_id`,
           argMax(`author_id`, (`_version`, `_seq`)) AS `author_id`,
           argMax(`target_id`, (`_version`, `_seq`)) AS `target_id`,
           argMax(`created_at`, (`_version`, `_seq`)) AS `created_at`,
           argMax(`updated_at`, (`_version`, `_seq`)) AS `updated_at`,
           argMax(`action`, (`_version`, `_seq`)) AS `action`,
           argMax(`target_type`, (`_version`, `_seq`)) AS `target_type`,
           argMax(`group_id`, (`_version`, `_seq`)) AS `group_id`,
           argMax(`fingerprint`, (`_version`, `_seq`)) AS `fingerprint`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`events`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'replicator_events')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'replicator_events' AND target = 'events_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

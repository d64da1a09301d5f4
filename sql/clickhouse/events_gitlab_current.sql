CREATE TABLE IF NOT EXISTS `analytics`.`events`
(
    `id` UInt64 DEFAULT 0,
    `project_id` UInt64 DEFAULT 0,
    `author_id` UInt64 DEFAULT 0,
    `target_id` UInt64 DEFAULT 0,
    `created_at` DateTime64(6, 'UTC'),
    `updated_at` DateTime64(6, 'UTC'),
    `action` UInt8 DEFAULT 0,
    `target_type` LowCardinality(String) DEFAULT '',
    `group_id` UInt64 DEFAULT 0,
    `fingerprint` UInt64 DEFAULT 0,
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0,
    INDEX `project_id_index` project_id TYPE minmax GRANULARITY 10,
    PROJECTION `events_by_project` (SELECT * ORDER BY project_id, created_at)
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(created_at)
ORDER BY (`author_id`, `created_at`, `id`)
TTL toDateTime(created_at) + INTERVAL 1 YEAR
SETTINGS deduplicate_merge_projection_mode = 'rebuild';

CREATE VIEW IF NOT EXISTS `analytics`.`events_live` AS
SELECT `id`, `project_id`, `author_id`, `target_id`, `created_at`, `updated_at`, `action`, `target_type`, `group_id`, `fingerprint`
FROM
(
    SELECT `author_id`, `created_at`, `id`,
           argMax(`project_id`, (`_version`, `_seq`)) AS `project_id`,
           argMax(`target_id`, (`_version`, `_seq`)) AS `target_id`,
           argMax(`updated_at`, (`_version`, `_seq`)) AS `updated_at`,
           argMax(`action`, (`_version`, `_seq`)) AS `action`,
           argMax(`target_type`, (`_version`, `_seq`)) AS `target_type`,
           argMax(`group_id`, (`_version`, `_seq`)) AS `group_id`,
           argMax(`fingerprint`, (`_version`, `_seq`)) AS `fingerprint`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`events`
    GROUP BY `author_id`, `created_at`, `id`
)
WHERE `_deleted_latest` = 0;

CREATE VIEW IF NOT EXISTS `analytics`.`events_committed` AS
SELECT `id`, `project_id`, `author_id`, `target_id`, `created_at`, `updated_at`, `action`, `target_type`, `group_id`, `fingerprint`
FROM
(
    SELECT `author_id`, `created_at`, `id`,
           argMax(`project_id`, (`_version`, `_seq`)) AS `project_id`,
           argMax(`target_id`, (`_version`, `_seq`)) AS `target_id`,
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
    GROUP BY `author_id`, `created_at`, `id`
)
WHERE `_deleted_latest` = 0;

ALTER TABLE `analytics`.`events` ADD INDEX IF NOT EXISTS `project_id_index` project_id TYPE minmax GRANULARITY 10;

ALTER TABLE `analytics`.`events` MATERIALIZE INDEX `project_id_index`;

ALTER TABLE `analytics`.`events` MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';

ALTER TABLE `analytics`.`events` ADD PROJECTION IF NOT EXISTS `events_by_project` (SELECT * ORDER BY project_id, created_at);

ALTER TABLE `analytics`.`events` MATERIALIZE PROJECTION `events_by_project`;

ALTER TABLE `analytics`.`events` MODIFY TTL toDateTime(created_at) + INTERVAL 1 YEAR;

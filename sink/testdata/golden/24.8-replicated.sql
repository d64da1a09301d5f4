-- ClickHouse 24.8, database engine Replicated, table comments true, cloud false

-- ===== one server =====

-- session settings
SET aggregate_functions_null_for_empty = 0;
SET async_insert = 0;
SET distributed_group_by_no_merge = 0;
SET do_not_merge_across_partitions_select_final = 0;
SET empty_result_for_aggregation_by_empty_set = 0;
SET extremes = 0;
SET final = 0;
SET limit = 0;
SET offset = 0;
SET optimize_move_to_prewhere_if_final = 0;
SET skip_unavailable_shards = 0;
SET wait_for_async_insert = 1;
-- DROP and TRUNCATE add SETTINGS max_table_size_to_drop = 0: true

-- setup: database and own tables
CREATE DATABASE IF NOT EXISTS `analytics`;
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
ENGINE = ReplicatedReplacingMergeTree(lsn)
ORDER BY (slot, epoch);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_progress`
(
    slot String,
    updated_us UInt64,
    oldest_unstored_us UInt64,
    halt_reason String DEFAULT '',
    halt_error String DEFAULT ''
)
ENGINE = ReplicatedReplacingMergeTree(updated_us)
ORDER BY slot;
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_truncations`
(
    slot String,
    source String,
    version UInt64,
    seq UInt64,
    written_at DateTime('UTC')
)
ENGINE = ReplicatedReplacingMergeTree(version)
ORDER BY (slot, source);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_columns`
(
    slot String,
    source String,
    columns Array(String),
    updated UInt64
)
ENGINE = ReplicatedReplacingMergeTree(updated)
ORDER BY (slot, source);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_copy_chunks`
(
    slot String,
    source String,
    chunk UInt32,
    relation String,
    first_page UInt32,
    end_page UInt32,
    filenode UInt32,
    load_lsn UInt64,
    lsn UInt64,
    xmin UInt64,
    rows UInt64,
    estimate UInt64,
    updated UInt64,
    whole_lsn UInt64 DEFAULT 0,
    target String DEFAULT ''
)
ENGINE = ReplicatedReplacingMergeTree(updated)
ORDER BY (slot, source, chunk);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_storage`
(
    slot String,
    source String,
    storage String,
    updated UInt64
)
ENGINE = ReplicatedReplacingMergeTree(updated)
ORDER BY (slot, source);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_recoveries`
(
    slot String,
    epoch UInt32,
    reason String,
    load_lsn UInt64,
    started DateTime('UTC'),
    tables UInt32,
    tables_done UInt32,
    finished UInt8,
    updated UInt64
)
ENGINE = ReplicatedReplacingMergeTree(updated)
ORDER BY (slot, epoch);

-- setup: target with a partition key, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`events`
(
    `id` Int64 DEFAULT 0,
    `created` DateTime64(6, 'UTC'),
    `note` String DEFAULT '',
    `done` Bool,
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
PARTITION BY toYYYYMM(created)
ORDER BY (`id`);
CREATE VIEW IF NOT EXISTS `analytics`.`events_live` AS
SELECT `id`, `created`, `note`, `done`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`)
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`events_committed` AS
SELECT `id`, `created`, `note`, `done`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`
        WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
           OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'events_resync' GROUP BY source
                         HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0))
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;

-- setup: target without one, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`users`
(
    `id` Int64 DEFAULT 0,
    `name` String DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`);
CREATE VIEW IF NOT EXISTS `analytics`.`users_live` AS
SELECT `id`, `name`
FROM `analytics`.`users` FINAL
WHERE _deleted = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`users_committed` AS
SELECT `id`, `name`
FROM
(
    SELECT `id`,
           argMax(`name`, (`_version`, `_seq`)) AS `name`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`users`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'users_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

-- setup: a target with a Map(String, Nullable(String)) column, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`docs`
(
    `id` Int64 DEFAULT 0,
    `attrs` Map(String, Nullable(String)),
    `doc` String DEFAULT '',
    `state` LowCardinality(String) DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`);
CREATE VIEW IF NOT EXISTS `analytics`.`docs_live` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM `analytics`.`docs` FINAL
WHERE _deleted = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`docs_committed` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM
(
    SELECT `id`,
           argMax(`attrs`, (`_version`, `_seq`)) AS `attrs`,
           argMax(`doc`, (`_version`, `_seq`)) AS `doc`,
           argMax(`state`, (`_version`, `_seq`)) AS `state`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`docs`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'docs_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

-- setup: a target with a JSON column: refused: table public.docs column doc: type JSON needs ClickHouse >= 25.3 (production ready there, experimental before); use String

-- setup: a target with a Enum column, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`docs`
(
    `id` Int64 DEFAULT 0,
    `attrs` String DEFAULT '',
    `doc` String DEFAULT '',
    `state` Enum8('' = 0, 'draft' = 1, 'is open, (x = 1)' = 2),
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`);
CREATE VIEW IF NOT EXISTS `analytics`.`docs_live` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM `analytics`.`docs` FINAL
WHERE _deleted = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`docs_committed` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM
(
    SELECT `id`,
           argMax(`attrs`, (`_version`, `_seq`)) AS `attrs`,
           argMax(`doc`, (`_version`, `_seq`)) AS `doc`,
           argMax(`state`, (`_version`, `_seq`)) AS `state`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`docs`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'docs_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

-- schema change: a label added to an enum
ALTER TABLE `analytics`.`docs` MODIFY COLUMN `state` Enum8('' = 0, 'draft' = 1, 'is open, (x = 1)' = 2, 'closed' = 3);

-- setup: a target with engine_is_deleted = true
CREATE TABLE IF NOT EXISTS `analytics`.`users`
(
    `id` Int64 DEFAULT 0,
    `name` String DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version, _deleted)
ORDER BY (`id`);

-- resync: the shadow
DROP TABLE IF EXISTS `analytics`.`users_resync` SYNC;
CREATE TABLE IF NOT EXISTS `analytics`.`users_resync`
(
    `id` Int64 DEFAULT 0,
    `name` String DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`)
COMMENT 'replicator copy mk2f5c1a0';

-- resync: swap (same shape), then drop the replaced copy
EXCHANGE TABLES `analytics`.`users` AND `analytics`.`users_resync`;
RENAME TABLE `analytics`.`users_resync` TO `analytics`.`users_replaced`;
DROP TABLE IF EXISTS `analytics`.`users_replaced` SYNC;

-- resync: swap of a new shape
DROP TABLE IF EXISTS `analytics`.`users_live` SYNC;
DROP TABLE IF EXISTS `analytics`.`users_committed` SYNC;
EXCHANGE TABLES `analytics`.`users` AND `analytics`.`users_resync`;
RENAME TABLE `analytics`.`users_resync` TO `analytics`.`users_replaced`;

-- schema change: ADD COLUMN
ALTER TABLE `analytics`.`events` ADD COLUMN IF NOT EXISTS `extra` Int64 DEFAULT 0 AFTER `done`;
DROP TABLE IF EXISTS `analytics`.`events_live` SYNC;
DROP TABLE IF EXISTS `analytics`.`events_committed` SYNC;
CREATE VIEW IF NOT EXISTS `analytics`.`events_live` AS
SELECT `id`, `created`, `note`, `done`, `extra`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`extra`, (`_version`, `_seq`)) AS `extra`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`)
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`events_committed` AS
SELECT `id`, `created`, `note`, `done`, `extra`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`extra`, (`_version`, `_seq`)) AS `extra`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`
        WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
           OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'events_resync' GROUP BY source
                         HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0))
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;

-- schema change: MODIFY COLUMN
ALTER TABLE `analytics`.`events` MODIFY COLUMN `note` Nullable(String);

-- compaction
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_compact_slot_1`
(
    key String,
    version UInt64
)
ENGINE = ReplicatedReplacingMergeTree()
ORDER BY (key, version);
INSERT INTO `analytics`.`replicator_compact_slot_1` (key, version)
SELECT _replicator_key, _version FROM (SELECT toString(tuple(id, toYYYYMM(created_at))) AS _replicator_key, _version FROM `analytics`.`events` WHERE _version + 1 < 1000)
WHERE _replicator_key GLOBAL IN (
    SELECT toString(tuple(id, toYYYYMM(created_at))) AS _replicator_key FROM `analytics`.`events` GROUP BY _replicator_key
    HAVING argMax(_deleted, (_version, _seq)) = 1 AND max(_version) + 1 < 1000)
GROUP BY _replicator_key, _version;
ALTER TABLE `analytics`.`events` DELETE WHERE (toString(tuple(id, toYYYYMM(created_at))), `_version`) IN (SELECT key, version FROM `analytics`.`replicator_compact_slot_1`) AND _deleted = 0 AND (SELECT count() FROM `analytics`.`replicator_recoveries` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch = 1 AND lsn >= 1000) > 0;
ALTER TABLE `analytics`.`events` DELETE WHERE (toString(tuple(id, toYYYYMM(created_at))), `_version`) IN (SELECT key, version FROM `analytics`.`replicator_compact_slot_1`) AND 1 AND (SELECT count() FROM `analytics`.`replicator_recoveries` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch = 1 AND lsn >= 1000) > 0;
DROP TABLE IF EXISTS `analytics`.`replicator_compact_slot_1` SYNC;

-- TRUNCATE
TRUNCATE TABLE `analytics`.`events`;

-- DROP
DROP TABLE IF EXISTS `analytics`.`events_live` SYNC;
DROP TABLE IF EXISTS `analytics`.`events_committed` SYNC;
DROP TABLE IF EXISTS `analytics`.`events` SYNC;

-- ===== on cluster c (2 shards x 2 replicas) =====

-- session settings
SET aggregate_functions_null_for_empty = 0;
SET async_insert = 0;
SET database_replicated_allow_replicated_engine_arguments = 1;
SET distributed_foreground_insert = 1;
SET distributed_group_by_no_merge = 0;
SET do_not_merge_across_partitions_select_final = 0;
SET empty_result_for_aggregation_by_empty_set = 0;
SET extremes = 0;
SET final = 0;
SET insert_quorum = 2;
SET insert_quorum_parallel = 0;
SET insert_quorum_timeout = 30000;
SET limit = 0;
SET max_bytes_in_distinct = 0;
SET max_bytes_in_join = 0;
SET max_bytes_in_set = 0;
SET max_bytes_to_read = 0;
SET max_bytes_to_read_leaf = 0;
SET max_bytes_to_sort = 0;
SET max_bytes_to_transfer = 0;
SET max_execution_time = 0;
SET max_result_bytes = 0;
SET max_result_rows = 0;
SET max_rows_in_distinct = 0;
SET max_rows_in_join = 0;
SET max_rows_in_set = 0;
SET max_rows_to_group_by = 0;
SET max_rows_to_read = 0;
SET max_rows_to_read_leaf = 0;
SET max_rows_to_sort = 0;
SET max_rows_to_transfer = 0;
SET offset = 0;
SET optimize_move_to_prewhere_if_final = 0;
SET select_sequential_consistency = 1;
SET skip_unavailable_shards = 0;
SET wait_for_async_insert = 1;
-- DROP and TRUNCATE add SETTINGS max_table_size_to_drop = 0: true

-- setup: database and own tables
CREATE DATABASE IF NOT EXISTS `analytics`;
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_checkpoints', '{shard}-{replica}', lsn)
ORDER BY (slot, epoch);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_progress`
(
    slot String,
    updated_us UInt64,
    oldest_unstored_us UInt64,
    halt_reason String DEFAULT '',
    halt_error String DEFAULT ''
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_progress', '{shard}-{replica}', updated_us)
ORDER BY slot;
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_truncations`
(
    slot String,
    source String,
    version UInt64,
    seq UInt64,
    written_at DateTime('UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_truncations', '{shard}-{replica}', version)
ORDER BY (slot, source);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_columns`
(
    slot String,
    source String,
    columns Array(String),
    updated UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_columns', '{shard}-{replica}', updated)
ORDER BY (slot, source);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_copy_chunks`
(
    slot String,
    source String,
    chunk UInt32,
    relation String,
    first_page UInt32,
    end_page UInt32,
    filenode UInt32,
    load_lsn UInt64,
    lsn UInt64,
    xmin UInt64,
    rows UInt64,
    estimate UInt64,
    updated UInt64,
    whole_lsn UInt64 DEFAULT 0,
    target String DEFAULT ''
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_copy_chunks', '{shard}-{replica}', updated)
ORDER BY (slot, source, chunk);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_storage`
(
    slot String,
    source String,
    storage String,
    updated UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_storage', '{shard}-{replica}', updated)
ORDER BY (slot, source);
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_recoveries`
(
    slot String,
    epoch UInt32,
    reason String,
    load_lsn UInt64,
    started DateTime('UTC'),
    tables UInt32,
    tables_done UInt32,
    finished UInt8,
    updated UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_recoveries', '{shard}-{replica}', updated)
ORDER BY (slot, epoch);

-- setup: target with a partition key, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`events_local`
(
    `id` Int64 DEFAULT 0,
    `created` DateTime64(6, 'UTC'),
    `note` String DEFAULT '',
    `done` Bool,
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
PARTITION BY toYYYYMM(created)
ORDER BY (`id`);
CREATE TABLE IF NOT EXISTS `analytics`.`events` AS `analytics`.`events_local`
ENGINE = Distributed(`c`, `analytics`, `events_local`, sipHash64(`id`));
CREATE VIEW IF NOT EXISTS `analytics`.`events_live` AS
SELECT `id`, `created`, `note`, `done`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`)
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`events_committed` AS
SELECT `id`, `created`, `note`, `done`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`
        WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
           OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'events_resync' GROUP BY source
                         HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0))
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;

-- setup: target without one, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`users_local`
(
    `id` Int64 DEFAULT 0,
    `name` String DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`);
CREATE TABLE IF NOT EXISTS `analytics`.`users` AS `analytics`.`users_local`
ENGINE = Distributed(`c`, `analytics`, `users_local`, sipHash64(`id`));
CREATE VIEW IF NOT EXISTS `analytics`.`users_live` AS
SELECT `id`, `name`
FROM `analytics`.`users` FINAL
WHERE _deleted = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`users_committed` AS
SELECT `id`, `name`
FROM
(
    SELECT `id`,
           argMax(`name`, (`_version`, `_seq`)) AS `name`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`users`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'users_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

-- setup: a target with a Map(String, Nullable(String)) column, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`docs_local`
(
    `id` Int64 DEFAULT 0,
    `attrs` Map(String, Nullable(String)),
    `doc` String DEFAULT '',
    `state` LowCardinality(String) DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`);
CREATE TABLE IF NOT EXISTS `analytics`.`docs` AS `analytics`.`docs_local`
ENGINE = Distributed(`c`, `analytics`, `docs_local`, sipHash64(`id`));
CREATE VIEW IF NOT EXISTS `analytics`.`docs_live` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM `analytics`.`docs` FINAL
WHERE _deleted = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`docs_committed` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM
(
    SELECT `id`,
           argMax(`attrs`, (`_version`, `_seq`)) AS `attrs`,
           argMax(`doc`, (`_version`, `_seq`)) AS `doc`,
           argMax(`state`, (`_version`, `_seq`)) AS `state`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`docs`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'docs_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

-- setup: a target with a JSON column: refused: table public.docs column doc: type JSON needs ClickHouse >= 25.3 (production ready there, experimental before); use String

-- setup: a target with a Enum column, and its views
CREATE TABLE IF NOT EXISTS `analytics`.`docs_local`
(
    `id` Int64 DEFAULT 0,
    `attrs` String DEFAULT '',
    `doc` String DEFAULT '',
    `state` Enum8('' = 0, 'draft' = 1, 'is open, (x = 1)' = 2),
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`);
CREATE TABLE IF NOT EXISTS `analytics`.`docs` AS `analytics`.`docs_local`
ENGINE = Distributed(`c`, `analytics`, `docs_local`, sipHash64(`id`));
CREATE VIEW IF NOT EXISTS `analytics`.`docs_live` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM `analytics`.`docs` FINAL
WHERE _deleted = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`docs_committed` AS
SELECT `id`, `attrs`, `doc`, `state`
FROM
(
    SELECT `id`,
           argMax(`attrs`, (`_version`, `_seq`)) AS `attrs`,
           argMax(`doc`, (`_version`, `_seq`)) AS `doc`,
           argMax(`state`, (`_version`, `_seq`)) AS `state`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM `analytics`.`docs`
    WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
       OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'docs_resync' GROUP BY source
                     HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0)
    GROUP BY `id`
)
WHERE `_deleted_latest` = 0;

-- schema change: a label added to an enum
ALTER TABLE `analytics`.`docs_local` MODIFY COLUMN `state` Enum8('' = 0, 'draft' = 1, 'is open, (x = 1)' = 2, 'closed' = 3);

-- setup: a target with engine_is_deleted = true
CREATE TABLE IF NOT EXISTS `analytics`.`users_local`
(
    `id` Int64 DEFAULT 0,
    `name` String DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version, _deleted)
ORDER BY (`id`);
CREATE TABLE IF NOT EXISTS `analytics`.`users` AS `analytics`.`users_local`
ENGINE = Distributed(`c`, `analytics`, `users_local`, sipHash64(`id`));

-- resync: the shadow
DROP TABLE IF EXISTS `analytics`.`users_resync` SYNC;
DROP TABLE IF EXISTS `analytics`.`users_resync_local` SYNC;
CREATE TABLE IF NOT EXISTS `analytics`.`users_resync_local`
(
    `id` Int64 DEFAULT 0,
    `name` String DEFAULT '',
    `_version` UInt64,
    `_deleted` UInt8 DEFAULT 0,
    `_seq` UInt64 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree(_version)
ORDER BY (`id`)
COMMENT 'replicator copy mk2f5c1a0';
CREATE TABLE IF NOT EXISTS `analytics`.`users_resync` AS `analytics`.`users_resync_local`
ENGINE = Distributed(`c`, `analytics`, `users_resync_local`, sipHash64(`id`));

-- resync: swap (same shape), then drop the replaced copy
EXCHANGE TABLES `analytics`.`users_local` AND `analytics`.`users_resync_local`;
RENAME TABLE `analytics`.`users_resync_local` TO `analytics`.`users_replaced_local`;
DROP TABLE IF EXISTS `analytics`.`users_resync` SYNC;
DROP TABLE IF EXISTS `analytics`.`users_replaced` SYNC;
DROP TABLE IF EXISTS `analytics`.`users_replaced_local` SYNC;

-- resync: swap of a new shape
DROP TABLE IF EXISTS `analytics`.`users_live` SYNC;
DROP TABLE IF EXISTS `analytics`.`users_committed` SYNC;
EXCHANGE TABLES `analytics`.`users_local` AND `analytics`.`users_resync_local`;
RENAME TABLE `analytics`.`users_resync_local` TO `analytics`.`users_replaced_local`;
DROP TABLE IF EXISTS `analytics`.`users_resync` SYNC;
DROP TABLE IF EXISTS `analytics`.`users` SYNC;
CREATE TABLE IF NOT EXISTS `analytics`.`users` AS `analytics`.`users_local`
ENGINE = Distributed(`c`, `analytics`, `users_local`, sipHash64(`id`));

-- schema change: ADD COLUMN
ALTER TABLE `analytics`.`events_local` ADD COLUMN IF NOT EXISTS `extra` Int64 DEFAULT 0 AFTER `done`;
DROP TABLE IF EXISTS `analytics`.`events` SYNC;
CREATE TABLE IF NOT EXISTS `analytics`.`events` AS `analytics`.`events_local`
ENGINE = Distributed(`c`, `analytics`, `events_local`, sipHash64(`id`));
DROP TABLE IF EXISTS `analytics`.`events_live` SYNC;
DROP TABLE IF EXISTS `analytics`.`events_committed` SYNC;
CREATE VIEW IF NOT EXISTS `analytics`.`events_live` AS
SELECT `id`, `created`, `note`, `done`, `extra`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`extra`, (`_version`, `_seq`)) AS `extra`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`)
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;
CREATE VIEW IF NOT EXISTS `analytics`.`events_committed` AS
SELECT `id`, `created`, `note`, `done`, `extra`
FROM
(
    SELECT `id`,
           argMax(`created`, (`_version`, `_seq`)) AS `created`,
           argMax(`note`, (`_version`, `_seq`)) AS `note`,
           argMax(`done`, (`_version`, `_seq`)) AS `done`,
           argMax(`extra`, (`_version`, `_seq`)) AS `extra`,
           argMax(`_deleted`, (`_version`, `_seq`)) AS `_deleted_latest`
    FROM (SELECT *, toYYYYMM(created) AS _replicator_partition FROM `analytics`.`events`
        WHERE `_version` < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot')
           OR `_version` + 1 IN (SELECT max(lsn) FROM `analytics`.`replicator_copy_chunks` FINAL WHERE slot = 'slot' AND target = 'events_resync' GROUP BY source
                         HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0))
    GROUP BY `id`, _replicator_partition
)
WHERE `_deleted_latest` = 0;

-- schema change: MODIFY COLUMN
ALTER TABLE `analytics`.`events_local` MODIFY COLUMN `note` Nullable(String);
DROP TABLE IF EXISTS `analytics`.`events` SYNC;
CREATE TABLE IF NOT EXISTS `analytics`.`events` AS `analytics`.`events_local`
ENGINE = Distributed(`c`, `analytics`, `events_local`, sipHash64(`id`));

-- compaction
CREATE TABLE IF NOT EXISTS `analytics`.`replicator_compact_slot_1`
(
    key String,
    version UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/replicator/analytics/replicator_compact_slot_1', '{shard}-{replica}')
ORDER BY (key, version);
INSERT INTO `analytics`.`replicator_compact_slot_1` (key, version)
SELECT _replicator_key, _version FROM (SELECT toString(tuple(id, toYYYYMM(created_at))) AS _replicator_key, _version FROM `analytics`.`events` WHERE _version + 1 < 1000)
WHERE _replicator_key GLOBAL IN (
    SELECT toString(tuple(id, toYYYYMM(created_at))) AS _replicator_key FROM `analytics`.`events` GROUP BY _replicator_key
    HAVING argMax(_deleted, (_version, _seq)) = 1 AND max(_version) + 1 < 1000)
GROUP BY _replicator_key, _version;
ALTER TABLE `analytics`.`events_local` DELETE WHERE (toString(tuple(id, toYYYYMM(created_at))), `_version`) IN (SELECT key, version FROM `analytics`.`replicator_compact_slot_1`) AND _deleted = 0 AND (SELECT count() FROM `analytics`.`replicator_recoveries` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch = 1 AND lsn >= 1000) > 0;
ALTER TABLE `analytics`.`events_local` DELETE WHERE (toString(tuple(id, toYYYYMM(created_at))), `_version`) IN (SELECT key, version FROM `analytics`.`replicator_compact_slot_1`) AND 1 AND (SELECT count() FROM `analytics`.`replicator_recoveries` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch > 1) = 0 AND (SELECT count() FROM `analytics`.`replicator_checkpoints` WHERE slot = 'slot' AND epoch = 1 AND lsn >= 1000) > 0;
DROP TABLE IF EXISTS `analytics`.`replicator_compact_slot_1` SYNC;

-- TRUNCATE
TRUNCATE TABLE `analytics`.`events_local`;

-- DROP
DROP TABLE IF EXISTS `analytics`.`events_live` SYNC;
DROP TABLE IF EXISTS `analytics`.`events_committed` SYNC;
DROP TABLE IF EXISTS `analytics`.`events` SYNC;
DROP TABLE IF EXISTS `analytics`.`events_local` SYNC;

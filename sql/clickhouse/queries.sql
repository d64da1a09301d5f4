-- GitLab's activity queries on the replicated events, in two forms:
-- on the live view (FINAL, one row per id, deleted rows hidden), and with
-- argMax over (_version, _seq), which is often faster for large
-- aggregations. _seq breaks the tie between rows of equal _version (one key
-- changed in two chunks of one large transaction) as the merge does: the
-- later change wins. argMax over _version alone may pick the earlier one.

-- Contribution calendar of one user (per day, one year).
SELECT toDate(created_at) AS day, count() AS contributions
FROM analytics.events_live
WHERE author_id = 1
  AND created_at BETWEEN '2022-01-17 23:00:00' AND '2023-01-18 22:59:59'
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

SELECT toDate(created_at) AS day, count() AS contributions
FROM
(
    SELECT id,
           argMax(author_id, (_version, _seq))   AS author_id,
           argMax(action, (_version, _seq))      AS action,
           argMax(target_type, (_version, _seq)) AS target_type,
           argMax(created_at, (_version, _seq))  AS created_at,
           argMax(_deleted, (_version, _seq))    AS deleted
    FROM analytics.events
    GROUP BY id
)
WHERE deleted = 0
  AND author_id = 1
  AND created_at BETWEEN '2022-01-17 23:00:00' AND '2023-01-18 22:59:59'
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

-- Contributions per user in a group's projects.
SELECT author_id, target_type, action, count() AS events
FROM analytics.events_live
WHERE created_at BETWEEN '2022-01-17 23:00:00' AND '2023-03-18 22:59:59'
  AND project_id IN (1, 2, 3)
GROUP BY author_id, target_type, action;

-- Filters go outside the argMax subquery: filtering versions inside it
-- would let an older version win over a newer one that no longer matches.
SELECT author_id, target_type, action, count() AS events
FROM
(
    SELECT id,
           argMax(author_id, (_version, _seq))   AS author_id,
           argMax(target_type, (_version, _seq)) AS target_type,
           argMax(action, (_version, _seq))      AS action,
           argMax(project_id, (_version, _seq))  AS project_id,
           argMax(created_at, (_version, _seq))  AS created_at,
           argMax(_deleted, (_version, _seq))    AS deleted
    FROM analytics.events
    GROUP BY id
)
WHERE deleted = 0
  AND created_at BETWEEN '2022-01-17 23:00:00' AND '2023-03-18 22:59:59'
  AND project_id IN (1, 2, 3)
GROUP BY author_id, target_type, action;

-- A user's contributions, newest first, by keyset pagination
-- (pass the last page's created_at and id).
SELECT id, project_id, action, target_type, created_at
FROM analytics.events_live
WHERE author_id = 4
  AND (created_at < toDateTime('2023-06-01 00:00:00', 'UTC')
       OR created_at = toDateTime('2023-06-01 00:00:00', 'UTC') AND id < 123456)
ORDER BY created_at DESC, id DESC
LIMIT 20;

-- On a table sorted by the seed's key, (author_id, created_at, id) (see
-- README, "Sorting and partition keys"), filters on sorting key columns
-- may go inside the argMax subquery when it groups by the whole sorting
-- key: every version of a group has the same author_id and created_at, so
-- the filter keeps all of a group's versions or none, and ClickHouse reads
-- only the user's part of the primary index. Other filters stay outside.
SELECT toDate(created_at) AS day, count() AS contributions
FROM
(
    SELECT author_id, created_at, id,
           argMax(action, (_version, _seq))      AS action,
           argMax(target_type, (_version, _seq)) AS target_type,
           argMax(_deleted, (_version, _seq))    AS deleted
    FROM analytics.events
    WHERE author_id = 1
      AND created_at BETWEEN '2022-01-17 23:00:00' AND '2023-01-18 22:59:59'
    GROUP BY author_id, created_at, id
)
WHERE deleted = 0
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

-- The committed view shows the table as of the newest checkpoint: never a
-- part of a transaction (the live view shows a large one as it is
-- written). It reads with GROUP BY, as the argMax form.
SELECT author_id, target_type, action, count() AS events
FROM analytics.events_committed
WHERE created_at BETWEEN '2022-01-17 23:00:00' AND '2023-03-18 22:59:59'
  AND project_id IN (1, 2, 3)
GROUP BY author_id, target_type, action;

-- The committed view groups the whole table before a filter applies (as
-- the live view of a partitioned table does): filtered by sorting key
-- inside, as above, with the committed view's bound (the checkpoint, and
-- a new copy of the table while the checkpoint is held below it), the
-- same read is committed and takes milliseconds (see README, "Reading").
SELECT toDate(created_at) AS day, count() AS contributions
FROM
(
    SELECT author_id, created_at, id,
           argMax(action, (_version, _seq))      AS action,
           argMax(target_type, (_version, _seq)) AS target_type,
           argMax(_deleted, (_version, _seq))    AS deleted
    FROM analytics.events
    WHERE author_id = 1
      AND created_at BETWEEN '2022-01-17 23:00:00' AND '2023-01-18 22:59:59'
      AND (_version < (SELECT argMax(lsn + commit, (epoch, lsn, commit)) FROM analytics.replicator_checkpoints WHERE slot = 'replicator_events')
           OR _version + 1 IN (SELECT max(lsn) FROM analytics.replicator_copy_chunks FINAL
                               WHERE slot = 'replicator_events' AND target = 'events_resync' GROUP BY source
                               HAVING min(lsn) = max(lsn) AND min(whole_lsn) = max(lsn) AND min(lsn) > 0))
    GROUP BY author_id, created_at, id
)
WHERE deleted = 0
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

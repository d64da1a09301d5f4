-- The queries of ../clickhouse/queries.sql on the Postgres source, in the
-- same order: each returns what its ClickHouse twin returns (the tests
-- compare them, on a replicated table sorted by the seed's key).

-- Contribution calendar of one user (per day, one year).
SELECT date(created_at AT TIME ZONE 'UTC') AS day, count(*) AS contributions
FROM events
WHERE author_id = 1
  AND created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-01-18 22:59:59+00'
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

-- (The same, for the argMax form.)
SELECT date(created_at AT TIME ZONE 'UTC') AS day, count(*) AS contributions
FROM events
WHERE author_id = 1
  AND created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-01-18 22:59:59+00'
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

-- Contributions per user in a group's projects.
SELECT author_id, coalesce(target_type, '') AS target_type, action, count(*) AS events
FROM events
WHERE created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-03-18 22:59:59+00'
  AND project_id IN (1, 2, 3)
GROUP BY author_id, target_type, action;

-- (The same, for the argMax form.)
SELECT author_id, coalesce(target_type, '') AS target_type, action, count(*) AS events
FROM events
WHERE created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-03-18 22:59:59+00'
  AND project_id IN (1, 2, 3)
GROUP BY author_id, target_type, action;

-- A user's contributions, newest first, by keyset pagination.
SELECT id, coalesce(project_id, 0), action, coalesce(target_type, ''), created_at
FROM events
WHERE author_id = 4
  AND (created_at < '2023-06-01 00:00:00+00'
       OR created_at = '2023-06-01 00:00:00+00' AND id < 123456)
ORDER BY created_at DESC, id DESC
LIMIT 20;

-- (The contribution calendar, for the form grouped by the sorting key.)
SELECT date(created_at AT TIME ZONE 'UTC') AS day, count(*) AS contributions
FROM events
WHERE author_id = 1
  AND created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-01-18 22:59:59+00'
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

-- (Contributions per user, for the committed view.)
SELECT author_id, coalesce(target_type, '') AS target_type, action, count(*) AS events
FROM events
WHERE created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-03-18 22:59:59+00'
  AND project_id IN (1, 2, 3)
GROUP BY author_id, target_type, action;

-- (The contribution calendar, for the committed form grouped by the sorting key.)
SELECT date(created_at AT TIME ZONE 'UTC') AS day, count(*) AS contributions
FROM events
WHERE author_id = 1
  AND created_at BETWEEN '2022-01-17 23:00:00+00' AND '2023-01-18 22:59:59+00'
  AND (action = 5
       OR (action IN (1, 3) AND target_type IN ('Issue', 'WorkItem'))
       OR (action IN (7, 1, 3) AND target_type = 'MergeRequest')
       OR action = 6)
GROUP BY day
ORDER BY day;

-- What `replicator setup` needs and does on the Postgres side, for
-- config.example.hcl. Run by hand only if you prefer to do it yourself.

-- 1. Server: logical decoding (needs a restart).
--    ALTER SYSTEM SET wal_level = logical;
--    Advice: bound the WAL a stalled slot may hold, e.g.
--    ALTER SYSTEM SET max_slot_wal_keep_size = '50GB';

-- 2. A role that may stream changes and read the tables.
--    CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD '...';
--    GRANT SELECT ON public.events TO replicator;

-- 3. Deletes must identify their row: the primary key (REPLICA IDENTITY
--    DEFAULT) does for events. Tables without one need:
--    ALTER TABLE public.some_table REPLICA IDENTITY FULL;
--    (FULL also spares the lookups of a row's place when order_by or
--    partition_by use columns outside the primary key.)

-- 4. The publication (setup creates it if missing; needs table ownership).
CREATE PUBLICATION replicator_events FOR TABLE ONLY public.events;

-- 5. The slot is created by `replicator setup` over a replication connection
--    (CREATE_REPLICATION_SLOT replicator_events LOGICAL pgoutput EXPORT_SNAPSHOT),
--    because the initial copy must read inside the snapshot it exports.

# replicator configuration for GitLab-style public.events.
#
# Every key below is shown with the value this example uses. Keys marked
# "default" may be omitted. Unknown keys are errors. Strings may call
# env("NAME") to read an environment variable (an unset variable is an error).
# Connection settings can also be overridden by environment variables:
#   REPLICATOR_POSTGRES_DSN, REPLICATOR_CLICKHOUSE_ADDR (comma-separated),
#   REPLICATOR_CLICKHOUSE_DATABASE, REPLICATOR_CLICKHOUSE_USERNAME,
#   REPLICATOR_CLICKHOUSE_PASSWORD.

postgres {
  # libpq URL or key=value string. The role needs the REPLICATION attribute,
  # and for `replicator setup` the right to create a publication (owner of the
  # tables) and to read them. Passwords never appear in logs or errors.
  dsn = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

  # Logical replication slot (pgoutput) that `setup` creates and `run` reads.
  # Lowercase letters, digits and underscores. Default "replicator".
  slot = "replicator_events"

  # Publication that `setup` creates for the tables below. Default "replicator".
  publication = "replicator_events"

  # When the server does not continue the history of the ClickHouse
  # checkpoint (a failover to a standby that missed transactions, a restore,
  # a data directory put back, a lost slot): "auto" copies every table again
  # online, readers keep the previous copy of each table until its new copy
  # is complete; "manual" stops with the command that does it
  # (`replicator resync --all`). Default "auto".
  recovery = "auto"
}

clickhouse {
  # Native protocol addresses (port 9000 by default), tried in order.
  addr = ["127.0.0.1:9000"]

  # Target database; `setup` creates it. Default "default".
  database = "analytics"

  username = "default"  # default "default"
  password = ""         # e.g. env("CLICKHOUSE_PASSWORD")
  # password_file = "/run/secrets/clickhouse"  # its first line; instead of password.
  # A relative name is a systemd credential of the unit (LoadCredential=):
  # password_file = "clickhouse-password" reads $CREDENTIALS_DIRECTORY/clickhouse-password.

  # A cluster of the servers' remote_servers: replicated, sharded targets.
  # cluster        = "analytics"
  # zookeeper_path = "/clickhouse/tables/{shard}/{database}/{table}"

  # The native protocol over TLS (the server's tcp_port_secure, often 9440);
  # never a fallback to plaintext.
  # tls {
  #   ca_file   = "/etc/replicator/ca.pem"      # default: the system's roots
  #   cert_file = "/etc/replicator/client.pem"  # a client certificate, with key_file
  #   key_file  = "/etc/replicator/client.key"
  #   server_name = "clickhouse.internal"       # default: the host of addr
  # }
}

batch {
  # Flush to ClickHouse when this many rows are buffered (default 50000)...
  max_rows = 50000
  # ...or when the buffered rows hold this much memory (default "64MiB")...
  max_bytes = "64MiB"
  # ...or when the oldest buffered change has waited this long (default "1s").
  max_delay = "1s"
  # Complete transactions are written as soon as the previous flush has
  # finished, but flushes start at most this often, so that ClickHouse gets
  # few enough parts to merge (default "200ms").
  min_interval = "200ms"
}

stream {
  # Receive large transactions while they run (PostgreSQL 14 and later,
  # pgoutput protocol version 2), so that they are written within moments of
  # their commit instead of after Postgres decodes them (default true).
  enabled = true
  # Streamed transactions are kept here until their commit or abort once
  # they exceed `memory`; at most `spill_limit` bytes of files.
  # `run` checks at start that it can write there.
  spill_dir   = "/var/lib/replicator/spill"   # default: $STATE_DIRECTORY/spill under systemd, else $TMPDIR/replicator-spill
  spill_limit = "10GiB"
  memory      = "32MiB"
}

load {
  # How many chunks of the copy (setup's initial copy, and any later copy of
  # a table) run at once, each over its own Postgres and ClickHouse
  # connection (default 3).
  workers = 3
  # Heap size of one chunk: the unit of parallel work and of resumption
  # after a crash (default "16MiB").
  chunk_size = "16MiB"
}

log {
  level  = "info"  # trace, debug, info, warn, error (default "info")
  format = "text"  # text or json (default "text")
}

monitor {
  # HTTP address of /metrics (Prometheus), /healthz and /readyz; "" turns
  # it off. Default "127.0.0.1:9721" (loopback only).
  listen = "127.0.0.1:9721"

  # /readyz fails when lag_seconds exceeds this (default "30s").
  ready_max_lag = "30s"

  # pg_logical_emit_message heartbeats keep the slot advancing while the
  # published tables are quiet; "0s" turns them off (default "10s"). They
  # need the REPLICATION attribute (or superuser) of the postgres role.
  heartbeat_interval = "10s"

  # Log a warning each minute while the slot retains more WAL than this on
  # the Postgres server (default "10GiB").
  retained_wal_warning = "10GiB"

  # How often each table's storage (column attribute numbers and types, the
  # files of its rows) is compared with the record of what ClickHouse
  # holds, to notice rewrites no change announces: VACUUM FULL, CLUSTER, a
  # type change with USING, a column dropped and added again (default "1m").
  rewrite_check_interval = "1m"

  # Continuous verification (off by default): every verify_interval the
  # daemon compares verify_sample_rows rows of each table with Postgres, in
  # key ranges taken in turn (the next pass goes on where this one
  # stopped), reading at most verify_rate rows per second, over its own
  # connections, one snapshot per range. It exports
  # replicator_verify_differences{table} and logs each lasting difference;
  # it never repairs (run `replicator verify --repair`).
  # verify_interval    = "1h"
  # verify_rate        = 10000
  # verify_sample_rows = 100000
}

# Scheduled compaction (off by default): every interval the daemon removes,
# from each table but history tables, the rows of the keys whose newest row
# is a delete below the checkpoint (`replicator compact` does it by hand),
# waiting at most wait for ClickHouse's mutation.
# compaction {
#   interval = "24h"
#   wait     = "10m"
# }

# One block per replicated table, labelled "schema.table".
table "public.events" {
  # "apply" (default): columns added or widened in Postgres are added or
  # widened in ClickHouse; "stop": such a change stops the daemon.
  schema_changes = "apply"
  # ClickHouse table name in the database above. Default: the table name.
  target = "events"

  # ClickHouse sorting key, by ClickHouse column names. It may use any
  # replicated columns; when it uses columns outside the replica identity
  # (the primary key), it must hold the whole replica identity, and a
  # delete's tombstone takes the other values from the row's latest image.
  # GitLab's queries read by author and time:
  #   order_by = ["author_id", "created_at", "id"]
  order_by = ["id"]

  # Optional PARTITION BY expression over ClickHouse columns, e.g. by month:
  # partition_by = "toYYYYMM(created_at)"

  # When the replica identity has columns that order_by lacks (e.g.
  # PRIMARY KEY (id, created_at) with order_by = ["id"]), two rows that
  # differ only there would be one ClickHouse row: setup and run refuse
  # that, unless these order_by columns are unique by themselves in
  # Postgres (a unique index, or ids from one sequence), which says so:
  # unique_key = ["id"]

  # "latest" (one row per key) or "history" (a row per change, with _op).
  # mode = "latest"
  # Changes not written: "delete", "truncate".
  # ignore = []
  # Postgres columns not replicated:
  # exclude = ["group_id"]

  # Storage on newer ClickHouse servers (setup names the version needed):
  # ttl = "toDateTime(created_at) + INTERVAL 1 YEAR"
  # index "project_id_index" {
  #   expression  = "project_id"
  #   type        = "minmax"
  #   granularity = 10
  # }
  # projection "events_by_project" {
  #   query = "SELECT * ORDER BY project_id, created_at"
  # }

  # Columns not listed map by default rules: smallint -> Int16, integer ->
  # Int32, bigint -> Int64, boolean -> UInt8, real/double -> Float32/Float64,
  # timestamp(tz) -> DateTime64(6, 'UTC') (DateTime('UTC') before ClickHouse
  # 20.1), date -> Date, uuid -> UUID, everything else -> String.
  # SQL NULL becomes the type's default (0, '', epoch) unless nullable = true.
  column "id"          { type = "UInt64" }
  column "project_id"  { type = "UInt64" }
  column "group_id"    { type = "UInt64" }
  column "author_id"   { type = "UInt64" }
  column "target_id"   { type = "UInt64" }
  column "target_type" { type = "LowCardinality(String)" }
  column "action"      { type = "UInt8" }

  # bytea fingerprint -> xxHash64 of its raw bytes (NULL -> 0).
  column "fingerprint" {
    type      = "UInt64"
    transform = "xxhash64"
  }

  # A column may have another name in ClickHouse:
  # column "target_type" { name = "kind" }

  # A column of a Postgres enum type may be an Enum8/Enum16 of its labels
  # (labels added later with ALTER TYPE ... ADD VALUE are added to it):
  # column "state" { type = "Enum" }

  # A column may keep NULLs instead of defaults:
  # column "target_id" {
  #   type     = "UInt64"
  #   nullable = true
  # }

  # Opt-in native types (see docs/types.md, "Opt-in types"): an hstore as a
  # Map (ClickHouse >= 21.8), a json or jsonb as JSON (>= 25.3).
  # column "attrs"   { type = "Map(String, Nullable(String))" }
  # column "payload" { type = "JSON" }
}

package status

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// Report is the replication state read from Postgres and ClickHouse.
type Report struct {
	Slot string `json:"slot"`
	// Protocol is the pgoutput protocol the daemon uses with this server
	// and configuration.
	Protocol   string `json:"protocol"`
	SlotExists bool   `json:"slot_exists"`
	SlotActive bool   `json:"slot_active"`
	WALStatus  string `json:"wal_status"`
	// Failover tells whether the slot is a failover slot, which standbys
	// that synchronize slots keep; Synced whether it was synchronized from
	// a former primary (the server is a promoted standby). Both are nil
	// before PostgreSQL 17 (postgres.FailoverSlotVersion) or without a
	// slot.
	Failover          *bool         `json:"failover_slot"`
	Synced            *bool         `json:"slot_synced"`
	CurrentWALLSN     pglogrepl.LSN `json:"-"`
	ConfirmedFlushLSN pglogrepl.LSN `json:"-"`
	RestartLSN        pglogrepl.LSN `json:"-"`
	CheckpointLSN     pglogrepl.LSN `json:"-"`
	HasCheckpoint     bool          `json:"has_checkpoint"`
	// History is the Postgres history of the checkpoint.
	History checkpoint.History `json:"-"`
	// Recovery is the recovery under way (every table copied again after
	// a history break); nil when there is none.
	Recovery *checkpoint.Recovery `json:"-"`
	// Halt is set when the daemon's newest report is a halt: it stopped on
	// an error a restart cannot fix (bad data) and acknowledges nothing
	// until it is fixed. A daemon that streams again clears it.
	Halt             *checkpoint.Halt `json:"-"`
	LagBytes         uint64           `json:"lag_bytes"`
	RetainedWALBytes uint64           `json:"retained_wal_bytes"`
	LastCommitTime   time.Time        `json:"-"`
	// LagSeconds is the age of the oldest committed change of the
	// published tables that is not yet in ClickHouse; 0 when caught up.
	LagSeconds float64 `json:"lag_seconds"`
	// LagUpperBound is true when LagSeconds is an upper bound, the age
	// of the last stored commit: the idle slot's backlog was too large to
	// read within peekLimit.
	LagUpperBound bool    `json:"lag_upper_bound,omitempty"`
	Tables        []Table `json:"tables"`
}

// Table is the row count of one target table.
type Table struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Rows     uint64 `json:"rows"`
	LiveRows uint64 `json:"live_rows"`
	// Copy is the state of the table's copy while it is not complete.
	Copy *Copy `json:"copy,omitempty"`
}

// Copy is the progress of a table's copy, from the chunk state the copy
// stores in ClickHouse as each chunk finishes.
type Copy struct {
	Chunks     int    `json:"chunks"`
	ChunksDone int    `json:"chunks_done"`
	RowsCopied uint64 `json:"rows_copied"`
	// RowsEstimated is Postgres' estimate of the table's rows.
	RowsEstimated uint64 `json:"rows_estimated"`
}

// copyProgress summarises a table's chunks; nil when the copy is complete.
func copyProgress(chunks []checkpoint.Chunk) *Copy {
	if len(chunks) == 0 || checkpoint.Horizon(chunks) != 0 {
		return nil
	}
	c := &Copy{Chunks: len(chunks)}
	for _, ch := range chunks {
		if ch.Done() {
			c.ChunksDone++
			c.RowsCopied += ch.Rows
		}
		c.RowsEstimated += ch.Estimate
	}
	return c
}

// Read reads the replication state. It does not need the daemon to run.
func Read(ctx context.Context, cfg config.Config) (*Report, error) {
	st := &Report{Slot: cfg.Postgres.Slot}
	pg, err := postgres.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	if st.CurrentWALLSN, err = pg.CurrentWAL(ctx); err != nil {
		return nil, err
	}
	st.Protocol = replication.Protocol(pg.ServerVersion(), cfg.Stream.Enabled)
	slot, err := pg.Slot(ctx, cfg.Postgres.Slot)
	switch {
	case errors.Is(err, postgres.ErrSlotMissing):
	case err != nil:
		return nil, err
	default:
		st.SlotExists = true
		st.SlotActive = slot.Active
		st.WALStatus = slot.WALStatus
		if pg.ServerVersion() >= postgres.FailoverSlotVersion {
			st.Failover, st.Synced = &slot.Failover, &slot.Synced
		}
		st.ConfirmedFlushLSN = slot.ConfirmedFlushLSN
		st.RestartLSN = slot.RestartLSN
		if slot.RestartLSN != 0 {
			st.RetainedWALBytes = bytesAfter(st.CurrentWALLSN, slot.RestartLSN)
		}
	}

	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	pos, found, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if found {
		st.HasCheckpoint = true
		st.CheckpointLSN = pos.LSN
		st.History = pos.History
		rec, ok, err := store.LoadRecovery(ctx)
		if err == nil && ok && rec.Pending(pos.History.Epoch) {
			st.Recovery = &rec
		}
		if p, ok, err := store.LoadProgress(ctx); err == nil && ok {
			st.Halt = p.Halt
		}
		st.LastCommitTime = pos.CommitTime
		st.LagBytes = bytesAfter(st.CurrentWALLSN, pos.LSN)
		lag, bound, err := readLag(ctx, pg, cfg, st, pos, store)
		if err != nil {
			return nil, err
		}
		st.LagSeconds, st.LagUpperBound = lag.Seconds(), bound
	}
	// Older setups have no chunk state: no copy progress to show.
	chunks, _ := store.LoadChunks(ctx)
	for _, t := range cfg.Tables {
		ts := Table{Source: t.Name, Target: t.Target, Copy: copyProgress(chunks[t.Name])}
		// Counted per sorting key and partition (see ddl.CountNewest); a
		// target missing or unreadable shows no rows.
		if schema, err := client.Schema(ctx, t.Target); err == nil && schema.Exists() {
			rows, err := client.Query(ctx, ddl.CountNewest(client.DB().Table(t.Target), schema.SortingKey, schema.PartitionKey))
			if err == nil && len(rows) == 1 {
				ts.Rows, _ = rows[0][0].(uint64)
				ts.LiveRows, _ = rows[0][1].(uint64)
			}
		}
		st.Tables = append(st.Tables, ts)
	}
	return st, nil
}

// bytesAfter returns how far cur is past lsn, 0 when it is not.
func bytesAfter(cur, lsn pglogrepl.LSN) uint64 {
	if cur > lsn {
		return uint64(cur - lsn)
	}
	return 0
}

// progressFresh is how recent the daemon's progress report must be for
// status to use it.
const progressFresh = 10 * time.Second

// readLag computes lag_seconds. While the daemon streams, it reports the
// commit time of the oldest transaction it received and has not stored
// (replicator_progress, about once a second). While the slot is idle and
// WAL was written after the checkpoint, the slot itself is read without
// consuming it, for at most peekLimit: the first transaction after the
// checkpoint gives the commit time. On a backlog too large for that, the
// lag is bounded by the last stored commit (bound is true).
func readLag(ctx context.Context, pg *postgres.Conn, cfg config.Config, st *Report, pos checkpoint.Position,
	store *checkpoint.Store) (lag time.Duration, bound bool, err error) {
	now := time.Now()
	if st.SlotActive {
		p, found, err := store.LoadProgress(ctx)
		if err != nil {
			return 0, false, err
		}
		return activeLag(now, p, found, st.LagBytes, pos), false, nil
	}
	if !st.SlotExists || st.WALStatus == "lost" || st.LagBytes == 0 {
		// Nothing to wait for, or nothing to read: peeking would take the
		// slot for a moment, and a daemon starting then would wait for it.
		return 0, false, nil
	}
	commit, found, err := firstPendingCommit(ctx, pg, cfg, pos, peekLimit)
	if errors.Is(err, postgres.ErrPeekTimeout) {
		lag, bound := idleLag(now, pos)
		return lag, bound, nil
	}
	if err != nil || !found {
		return 0, false, err
	}
	return max(now.Sub(commit), 0), false, nil
}

// peekLimit bounds the time status holds an idle slot to read its first
// pending transaction: Postgres decodes the slot from its restart point,
// which on a backlog of millions of changes takes longer than a starting
// daemon waits for a slot in use (10 s) before it exits.
const peekLimit = 2 * time.Second

// idleLag is the lag of an idle slot whose backlog was too large to read:
// the first pending transaction committed after the last stored one, so
// the age of that one bounds the lag (bound is false when the checkpoint
// names no commit time).
func idleLag(now time.Time, pos checkpoint.Position) (lag time.Duration, bound bool) {
	if pos.CommitTime.IsZero() || pos.CommitTime.Unix() <= 0 {
		return 0, false
	}
	return max(now.Sub(pos.CommitTime), 0), true
}

// activeLag is the lag while the daemon streams: from its fresh progress
// report, else (an older daemon, or one that hangs) bounded by the last
// stored commit when WAL is pending.
func activeLag(now time.Time, p checkpoint.Progress, found bool, lagBytes uint64, pos checkpoint.Position) time.Duration {
	if found && now.Sub(p.Updated) < progressFresh {
		if p.OldestUnstored.IsZero() {
			return 0
		}
		return max(now.Sub(p.OldestUnstored), 0)
	}
	if lagBytes > 0 && !pos.CommitTime.IsZero() && pos.CommitTime.Unix() > 0 {
		return max(now.Sub(pos.CommitTime), 0)
	}
	return 0
}

// firstPendingCommit peeks at the idle slot for the first transaction that
// the checkpoint does not cover, for at most limit in all
// (postgres.ErrPeekTimeout after that).
func firstPendingCommit(ctx context.Context, pg *postgres.Conn, cfg config.Config, pos checkpoint.Position,
	limit time.Duration) (time.Time, bool, error) {
	end := time.Now().Add(limit)
	for n := 1; n <= 1<<22; n *= 16 {
		var commit time.Time
		found := false
		left := time.Until(end)
		if left <= 0 {
			return time.Time{}, false, fmt.Errorf("peek slot %s: %w (%s)", cfg.Postgres.Slot, postgres.ErrPeekTimeout, limit)
		}
		got, err := pg.PeekChanges(ctx, cfg.Postgres.Slot, cfg.Postgres.Publication, n, left, func(data []byte) error {
			if found || len(data) == 0 || data[0] != 'B' {
				return nil
			}
			m, err := replication.NewDecoder().Decode(data)
			if err != nil {
				return err
			}
			if b := m.(*replication.Begin); !pos.Done(b.FinalLSN) {
				commit, found = b.CommitTime, true
			}
			return nil
		})
		if err != nil {
			return time.Time{}, false, err
		}
		if found || got < n {
			return commit, found, nil
		}
	}
	return time.Time{}, false, nil
}

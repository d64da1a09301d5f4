package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// Status is the replication state read from Postgres and ClickHouse. It
// does not need the daemon to run.
type Status struct {
	Slot              string        `json:"slot"`
	SlotExists        bool          `json:"slot_exists"`
	SlotActive        bool          `json:"slot_active"`
	WALStatus         string        `json:"wal_status"`
	CurrentWALLSN     pglogrepl.LSN `json:"-"`
	ConfirmedFlushLSN pglogrepl.LSN `json:"-"`
	RestartLSN        pglogrepl.LSN `json:"-"`
	CheckpointLSN     pglogrepl.LSN `json:"-"`
	HasCheckpoint     bool          `json:"has_checkpoint"`
	LagBytes          uint64        `json:"lag_bytes"`
	RetainedWALBytes  uint64        `json:"retained_wal_bytes"`
	LastCommitTime    time.Time     `json:"-"`
	// LagSeconds is the age of the oldest committed change of the
	// published tables that is not yet in ClickHouse; 0 when caught up.
	LagSeconds float64       `json:"lag_seconds"`
	Tables     []TableStatus `json:"tables"`
}

// TableStatus is the row count of one target table.
type TableStatus struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Rows     uint64 `json:"rows"`
	LiveRows uint64 `json:"live_rows"`
}

// ReadStatus reads the replication state.
func ReadStatus(ctx context.Context, cfg config.Config) (*Status, error) {
	st := &Status{Slot: cfg.Postgres.Slot}
	pg, err := connectSQL(ctx, cfg.Postgres.DSN)
	if err != nil {
		return nil, err
	}
	defer pg.Close(context.Background())
	var cur string
	if err := pg.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return nil, fmt.Errorf("read current WAL position: %w", err)
	}
	if st.CurrentWALLSN, err = pglogrepl.ParseLSN(cur); err != nil {
		return nil, err
	}
	var confirmed, restart, walStatus *string
	err = pg.QueryRow(ctx, "SELECT active, confirmed_flush_lsn::text, restart_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = $1",
		cfg.Postgres.Slot).Scan(&st.SlotActive, &confirmed, &restart, &walStatus)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read slot %s: %w", cfg.Postgres.Slot, err)
	default:
		st.SlotExists = true
		if walStatus != nil {
			st.WALStatus = *walStatus
		}
		if confirmed != nil {
			st.ConfirmedFlushLSN, _ = pglogrepl.ParseLSN(*confirmed)
		}
		if restart != nil {
			st.RestartLSN, _ = pglogrepl.ParseLSN(*restart)
			if st.CurrentWALLSN > st.RestartLSN {
				st.RetainedWALBytes = uint64(st.CurrentWALLSN - st.RestartLSN)
			}
		}
	}

	client, err := sink.Open(ctx, sinkOptions(cfg))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	pos, found, err := checkpoint.NewStore(client, cfg.Postgres.Slot).Load(ctx)
	if err != nil {
		return nil, err
	}
	if found {
		st.HasCheckpoint = true
		st.CheckpointLSN = pos.LSN
		st.LastCommitTime = pos.CommitTime
		if st.CurrentWALLSN > pos.LSN {
			st.LagBytes = uint64(st.CurrentWALLSN - pos.LSN)
		}
	}
	if found {
		lag, err := readLag(ctx, pg, cfg, st, pos, checkpoint.NewStore(client, cfg.Postgres.Slot))
		if err != nil {
			return nil, err
		}
		st.LagSeconds = lag.Seconds()
	}
	for _, t := range cfg.Tables {
		ts := TableStatus{Source: t.Name, Target: t.Target}
		rows, err := client.Query(ctx, fmt.Sprintf("SELECT count(), countIf(%s = 0) FROM %s.%s FINAL",
			mapping.DeletedColumn, mapping.Quote(cfg.ClickHouse.Database), mapping.Quote(t.Target)))
		if err == nil && len(rows) == 1 {
			ts.Rows, _ = rows[0][0].(uint64)
			ts.LiveRows, _ = rows[0][1].(uint64)
		}
		st.Tables = append(st.Tables, ts)
	}
	return st, nil
}

// progressFresh is how recent the daemon's progress report must be for
// status to use it.
const progressFresh = 10 * time.Second

// readLag computes lag_seconds. While the daemon streams, it reports the
// commit time of the oldest transaction it received and has not stored
// (replicator_progress, about once a second). While the slot is idle, the
// slot itself is read without consuming it: the first transaction after the
// checkpoint gives the commit time.
func readLag(ctx context.Context, pg *pgx.Conn, cfg config.Config, st *Status, pos checkpoint.Position,
	store *checkpoint.Store) (time.Duration, error) {
	now := time.Now()
	if st.SlotActive {
		p, found, err := store.LoadProgress(ctx)
		if err != nil {
			return 0, err
		}
		if found && now.Sub(p.Updated) < progressFresh {
			if p.OldestUnstored.IsZero() {
				return 0, nil
			}
			return max(now.Sub(p.OldestUnstored), 0), nil
		}
		// No fresh report (an older daemon, or one that hangs): bound the
		// lag by the last stored commit when WAL is pending.
		if st.LagBytes > 0 && !pos.CommitTime.IsZero() && pos.CommitTime.Unix() > 0 {
			return max(now.Sub(pos.CommitTime), 0), nil
		}
		return 0, nil
	}
	if !st.SlotExists || st.WALStatus == "lost" {
		return 0, nil
	}
	commit, found, err := firstPendingCommit(ctx, pg, cfg, pos)
	if err != nil || !found {
		return 0, err
	}
	return max(now.Sub(commit), 0), nil
}

// firstPendingCommit peeks at the idle slot for the first transaction that
// the checkpoint does not cover.
func firstPendingCommit(ctx context.Context, pg *pgx.Conn, cfg config.Config, pos checkpoint.Position) (time.Time, bool, error) {
	for n := 1; n <= 1<<22; n *= 16 {
		rows, err := pg.Query(ctx, "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, "+
			"'proto_version', '1', 'publication_names', $3)", cfg.Postgres.Slot, n, cfg.Postgres.Publication)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("peek slot %s: %w", cfg.Postgres.Slot, err)
		}
		got := 0
		var commit time.Time
		found := false
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&data); err != nil {
				rows.Close()
				return time.Time{}, false, err
			}
			got++
			if found || len(data) == 0 || data[0] != 'B' {
				continue
			}
			m, err := replication.NewDecoder().Decode(data)
			if err != nil {
				rows.Close()
				return time.Time{}, false, err
			}
			if b := m.(*replication.Begin); !pos.Done(b.FinalLSN) {
				commit, found = b.CommitTime, true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return time.Time{}, false, fmt.Errorf("peek slot %s: %w", cfg.Postgres.Slot, err)
		}
		if found || got < n {
			return commit, found, nil
		}
	}
	return time.Time{}, false, nil
}

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
	Tables            []TableStatus `json:"tables"`
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

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// HeartbeatPrefix is the prefix of the logical messages the daemon emits.
const HeartbeatPrefix = "replicator_heartbeat"

// ErrSlotLost is returned when Postgres invalidated the slot.
var ErrSlotLost = errors.New("replication slot lost")

// watch emits heartbeats and checks the slot's WAL retention once a minute,
// over its own SQL connection. Heartbeats (pg_logical_emit_message) keep the
// slot advancing when the published tables are quiet; a slot whose
// wal_status is lost stops the daemon. Connection problems are logged and
// retried at the next tick: they never stop replication.
func (r *Runner) watch(ctx context.Context) error {
	cfg := r.cfg
	log := r.log.Named("watch")
	beat := cfg.Monitor.HeartbeatInterval
	tick := time.Minute
	if beat > 0 && beat < tick {
		tick = beat
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	var lastCheck, lastBeat time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		timer.Reset(tick)
		if conn == nil || conn.IsClosed() {
			c, err := connectSQL(ctx, cfg.Postgres.DSN)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("watch cannot connect to postgres; retrying", "error", err)
				}
				continue
			}
			conn = c
		}
		now := time.Now()
		if beat > 0 && now.Sub(lastBeat) >= beat {
			if _, err := conn.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, now()::text)", HeartbeatPrefix); err != nil {
				if ctx.Err() == nil {
					log.Warn("heartbeat failed (needs the REPLICATION attribute or superuser)", "error", err)
				}
				conn.Close(context.Background())
				conn = nil
				continue
			}
			r.metrics.Heartbeats.Inc()
			lastBeat = now
		}
		if now.Sub(lastCheck) >= time.Minute || lastCheck.IsZero() {
			if err := r.checkRetention(ctx, conn); err != nil {
				if errors.Is(err, ErrSlotLost) {
					return err
				}
				if ctx.Err() == nil {
					log.Warn("slot check failed", "error", err)
				}
				continue
			}
			lastCheck = now
		}
	}
}

// lostSlotError says that Postgres invalidated the slot and how to resync.
func lostSlotError(slot string) error {
	return fmt.Errorf("slot %s: %w (wal_status = lost): Postgres removed WAL the slot still needed, "+
		"so changes are missing from ClickHouse; drop the slot, truncate the target tables and run `replicator setup` to copy them again",
		slot, ErrSlotLost)
}

func (r *Runner) checkRetention(ctx context.Context, conn *pgx.Conn) error {
	slot := r.cfg.Postgres.Slot
	var retained *int64
	var walStatus *string
	err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, wal_status
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&retained, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("slot %s: %w: it was dropped; run `replicator setup` to recreate it and copy the tables again", slot, ErrSlotLost)
	}
	if err != nil {
		return fmt.Errorf("read slot %s: %w", slot, err)
	}
	if walStatus != nil && *walStatus == "lost" {
		return lostSlotError(slot)
	}
	if retained != nil {
		r.metrics.RetainedWAL.Set(float64(*retained))
		if limit := r.cfg.Monitor.RetainedWALWarning; limit > 0 && uint64(*retained) > limit {
			status := ""
			if walStatus != nil {
				status = *walStatus
			}
			r.log.Warn("slot retains much WAL on the Postgres server", "retained_wal_bytes", *retained,
				"threshold", limit, "wal_status", status)
		}
	}
	return nil
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
)

// heartbeatPrefix is the prefix of the logical messages the daemon emits.
const heartbeatPrefix = "replicator_heartbeat"

// heartbeatTime returns when the heartbeat m was emitted (postgres.Conn.
// EmitHeartbeat writes the server's time in microseconds since 1970); zero
// for another message, or a heartbeat of an earlier version, which wrote
// the time as text.
func heartbeatTime(m *replication.LogicalMessage) time.Time {
	if m.Prefix != heartbeatPrefix {
		return time.Time{}
	}
	us, err := strconv.ParseInt(string(m.Content), 10, 64)
	if err != nil || us <= 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// watch emits heartbeats and checks the slot's WAL retention once a minute,
// over its own SQL connection. Heartbeats (pg_logical_emit_message) keep the
// slot advancing when the published tables are quiet: from PostgreSQL 14
// on the stream carries them, and on 13, whose pgoutput sends no logical
// messages, the WAL they write moves the keepalives' position, which the
// idle checkpoint follows as well; a slot lost or dropped ends the
// session, whose checks at connect then recover or stop the daemon.
// Connection problems are logged and retried at the next tick: they never
// stop replication. Its connects also tell replicator_connected whether
// Postgres is reachable when no session gets that far.
func (r *Runner) watch(ctx context.Context) error {
	cfg := r.cfg
	log := r.log.Named("watch")
	beat := cfg.Monitor.HeartbeatInterval
	tick := time.Minute
	if beat > 0 && beat < tick {
		tick = beat
	}
	var conn *postgres.Conn
	defer func() { conn.Close() }()
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
			c, err := postgres.Connect(ctx, cfg.Postgres.DSN)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("watch cannot connect to postgres; retrying", "error", err)
					// (Also while ClickHouse is down, when no session
					// reaches Postgres.)
					r.metrics.SetConnected("postgres", false)
				}
				continue
			}
			conn = c
			r.metrics.SetConnected("postgres", true)
		}
		now := time.Now()
		if beat > 0 && now.Sub(lastBeat) >= beat {
			if err := conn.EmitHeartbeat(ctx, heartbeatPrefix); err != nil {
				if ctx.Err() == nil {
					if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42501" {
						log.Warn("heartbeat refused: the role needs the REPLICATION attribute or superuser", "error", err)
					} else {
						log.Warn("heartbeat failed; reconnecting", "error", err)
					}
				}
				conn.Close()
				conn = nil
				continue
			}
			r.metrics.Heartbeats.Inc()
			lastBeat = now
		}
		if now.Sub(lastCheck) >= time.Minute || lastCheck.IsZero() {
			if err := r.checkRetention(ctx, conn); err != nil {
				if errors.Is(err, postgres.ErrSlotLost) {
					// The session's checks at connect decide what follows
					// (history.Check): a recovery, or a stop with the
					// command. A recovery drops and makes the slot itself.
					if !r.recovering.Load() {
						log.Warn("the slot is lost or was dropped: the session starts again and checks the history", "error", err)
						r.recheckHistory()
					}
					lastCheck = now
					continue
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

// checkRetention reads the slot: a lost or dropped slot is an error that
// wraps postgres.ErrSlotLost; retained WAL above the configured threshold
// is logged.
func (r *Runner) checkRetention(ctx context.Context, conn *postgres.Conn) error {
	name := r.cfg.Postgres.Slot
	slot, err := conn.Slot(ctx, name)
	if errors.Is(err, postgres.ErrSlotMissing) {
		return fmt.Errorf("slot %s: %w: it was dropped (%w); run `replicator setup` to recreate it and copy the tables again",
			name, postgres.ErrSlotLost, postgres.ErrSlotMissing)
	}
	if err != nil {
		return err
	}
	if slot.Lost() {
		return slot.LostError()
	}
	if retained, ok := slot.RetainedWAL(); ok {
		r.metrics.RetainedWAL.Set(float64(retained))
		if limit := r.cfg.Monitor.RetainedWALWarning; limit > 0 && retained > limit {
			r.log.Warn("slot retains much WAL on the Postgres server", "retained_wal_bytes", retained,
				"threshold", limit, "wal_status", slot.WALStatus)
		}
	}
	return nil
}

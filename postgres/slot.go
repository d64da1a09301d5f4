package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Slot is a replication slot's row of pg_replication_slots.
type Slot struct {
	Name              string
	Plugin            string
	Database          string
	Active            bool
	ActivePID         string
	ConfirmedFlushLSN pglogrepl.LSN
	// RestartLSN is the oldest WAL the slot retains; zero when unknown.
	RestartLSN pglogrepl.LSN
	WALStatus  string
	// WALPosition is pg_current_wal_lsn() when the row was read.
	WALPosition pglogrepl.LSN
	// InvalidationReason is why Postgres invalidated the slot (e.g.
	// wal_removed, idle_timeout); empty when it did not, or when the
	// server does not say (before InvalidationReasonVersion).
	InvalidationReason string
	// Failover is true for a slot that standbys synchronizing slots keep
	// (FailoverSlotVersion and later; always false before).
	Failover bool
	// Synced is true for a slot synchronized from a primary: on a standby,
	// or on a promoted standby that inherited it.
	Synced bool
}

// slotSQL returns the query of a slot's row on a server of major version
// major, with the columns parseSlot reads.
func slotSQL(major int, name string) string {
	reason := "NULL::text"
	if major >= InvalidationReasonVersion {
		reason = "invalidation_reason"
	}
	failover := "false, false"
	if major >= FailoverSlotVersion {
		failover = "failover, synced"
	}
	return "SELECT plugin, database, active, active_pid, confirmed_flush_lsn, restart_lsn, wal_status, " +
		"pg_current_wal_lsn(), " + reason + ", " + failover + " FROM pg_replication_slots WHERE slot_name = " + quoteLiteral(name)
}

// ReadSlot reads the row of a slot over pg, an SQL or a replication
// connection. A missing slot is an error that wraps ErrSlotMissing.
func ReadSlot(ctx context.Context, pg *pgconn.PgConn, name string) (Slot, error) {
	vals, found, err := queryRow(ctx, pg, slotSQL(MajorVersion(pg.ParameterStatus("server_version")), name))
	if err != nil {
		return Slot{}, fmt.Errorf("read slot %s: %w", name, Describe(err, "", ""))
	}
	return parseSlot(name, vals, found)
}

// slotColumns is the number of columns of slotSQL's row.
const slotColumns = 11

// parseSlot builds a Slot from the text values of slotSQL's row.
func parseSlot(name string, vals []*string, found bool) (Slot, error) {
	if !found {
		return Slot{}, fmt.Errorf("slot %s: %w", name, ErrSlotMissing)
	}
	if len(vals) != slotColumns {
		return Slot{}, fmt.Errorf("read slot %s: %d columns, want %d", name, len(vals), slotColumns)
	}
	s := Slot{Name: name, Plugin: str(vals[0]), Database: str(vals[1]), Active: str(vals[2]) == "t",
		ActivePID: str(vals[3]), WALStatus: str(vals[6]), InvalidationReason: str(vals[8]),
		Failover: str(vals[9]) == "t", Synced: str(vals[10]) == "t"}
	for _, f := range []struct {
		dst *pglogrepl.LSN
		src *string
	}{{&s.ConfirmedFlushLSN, vals[4]}, {&s.RestartLSN, vals[5]}, {&s.WALPosition, vals[7]}} {
		if f.src == nil {
			continue
		}
		lsn, err := pglogrepl.ParseLSN(*f.src)
		if err != nil {
			return Slot{}, fmt.Errorf("read slot %s: %w", name, Describe(err, "", ""))
		}
		*f.dst = lsn
	}
	return s, nil
}

// RetainedWAL returns the bytes of WAL the slot keeps on the server; ok is
// false when the slot's restart position is unknown.
func (s Slot) RetainedWAL() (bytes uint64, ok bool) {
	if s.RestartLSN == 0 {
		return 0, false
	}
	if s.WALPosition <= s.RestartLSN {
		return 0, true
	}
	return uint64(s.WALPosition - s.RestartLSN), true
}

// Lost reports whether Postgres invalidated the slot.
func (s Slot) Lost() bool { return s.WALStatus == "lost" || s.InvalidationReason != "" }

// LostError is the error of a lost slot (see Lost), with the reason
// Postgres gives.
func (s Slot) LostError() error {
	if s.InvalidationReason != "" && s.InvalidationReason != "wal_removed" {
		return fmt.Errorf("slot %s: %w (invalidation_reason = %s): Postgres invalidated the slot, so changes may be missing "+
			"from ClickHouse; drop the slot, truncate the target tables and run `replicator setup` to copy them again",
			s.Name, ErrSlotLost, s.InvalidationReason)
	}
	return LostSlotError(s.Name)
}

// CheckResume refuses to stream from a slot that is taken, lost, not
// pgoutput, or whose confirmed position is beyond the checkpoint resume:
// then ClickHouse lost data that the slot no longer holds.
func (s Slot) CheckResume(resume pglogrepl.LSN) error {
	if s.Plugin != "pgoutput" {
		return fmt.Errorf("replication slot %s uses plugin %q, not pgoutput: drop it and run `replicator setup`", s.Name, s.Plugin)
	}
	if s.Active {
		return &SlotInUseError{Slot: s.Name, PID: s.ActivePID}
	}
	if s.Lost() {
		return s.LostError()
	}
	if s.ConfirmedFlushLSN > resume {
		return fmt.Errorf("replication slot %s has confirmed_flush_lsn %s, beyond the ClickHouse checkpoint %s: "+
			"ClickHouse lost data that the slot no longer holds (checkpoint table dropped or restored from an older backup); "+
			"to resync, drop the slot (SELECT pg_drop_replication_slot('%s')), truncate the target tables, and run `replicator setup`",
			s.Name, s.ConfirmedFlushLSN, resume, s.Name)
	}
	return nil
}

package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Conn is a Postgres connection in logical replication mode
// (replication=database): it runs replication commands and simple queries.
type Conn struct {
	pg *pgconn.PgConn
}

// SessionParams are the settings every replicator session uses, so that
// text values arrive in the form the mapping parses.
var SessionParams = map[string]string{
	"TimeZone":           "UTC",
	"DateStyle":          "ISO, YMD",
	"bytea_output":       "hex",
	"extra_float_digits": "3",
	"IntervalStyle":      "iso_8601",
	"application_name":   "replicator",
}

// Connect opens a replication connection.
func Connect(ctx context.Context, dsn string) (*Conn, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: invalid connection string")
	}
	for k, v := range SessionParams {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["replication"] = "database"
	pg, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres for replication: %w", describe(err, "", ""))
	}
	return &Conn{pg: pg}, nil
}

// Close closes the connection. It is safe to call more than once.
func (c *Conn) Close(ctx context.Context) error {
	if c == nil || c.pg == nil || c.pg.IsClosed() {
		return nil
	}
	return c.pg.Close(ctx)
}

// PgConn returns the underlying connection.
func (c *Conn) PgConn() *pgconn.PgConn { return c.pg }

// QueryRow runs a simple query and returns its single row as text values
// (nil for NULL); found is false when the query returned no row.
func (c *Conn) QueryRow(ctx context.Context, sql string) (vals []*string, found bool, err error) {
	results, err := c.pg.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, false, describe(err, "", "")
	}
	if len(results) == 0 || len(results[0].Rows) == 0 {
		return nil, false, nil
	}
	for _, v := range results[0].Rows[0] {
		if v == nil {
			vals = append(vals, nil)
			continue
		}
		s := string(v)
		vals = append(vals, &s)
	}
	return vals, true, nil
}

// SlotInfo is the state of a replication slot from pg_replication_slots.
type SlotInfo struct {
	Plugin            string
	Database          string
	Active            bool
	ActivePID         string
	ConfirmedFlushLSN pglogrepl.LSN
	RestartLSN        pglogrepl.LSN
	WALStatus         string
}

// ErrSlotMissing is returned when the configured slot does not exist.
var ErrSlotMissing = errors.New("replication slot does not exist")

// Slot reads the state of a slot.
func (c *Conn) Slot(ctx context.Context, slot string) (SlotInfo, error) {
	vals, found, err := c.QueryRow(ctx, fmt.Sprintf(
		"SELECT plugin, database, active, active_pid, confirmed_flush_lsn, restart_lsn, wal_status "+
			"FROM pg_replication_slots WHERE slot_name = %s", QuoteLiteral(slot)))
	if err != nil {
		return SlotInfo{}, fmt.Errorf("read slot %s: %w", slot, err)
	}
	if !found {
		return SlotInfo{}, fmt.Errorf("slot %s: %w", slot, ErrSlotMissing)
	}
	info := SlotInfo{Plugin: str(vals[0]), Database: str(vals[1]), Active: str(vals[2]) == "t",
		ActivePID: str(vals[3]), WALStatus: str(vals[6])}
	if vals[4] != nil {
		if info.ConfirmedFlushLSN, err = pglogrepl.ParseLSN(*vals[4]); err != nil {
			return SlotInfo{}, fmt.Errorf("read slot %s: %w", slot, err)
		}
	}
	if vals[5] != nil {
		if info.RestartLSN, err = pglogrepl.ParseLSN(*vals[5]); err != nil {
			return SlotInfo{}, fmt.Errorf("read slot %s: %w", slot, err)
		}
	}
	return info, nil
}

// CreateSlot creates a pgoutput slot and exports its snapshot. The snapshot
// stays valid only while this connection runs no other command.
func (c *Conn) CreateSlot(ctx context.Context, slot string) (consistentPoint pglogrepl.LSN, snapshot string, err error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, c.pg, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return 0, "", fmt.Errorf("create replication slot %s: %w", slot, describe(err, slot, ""))
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, "", fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return lsn, res.SnapshotName, nil
}

// DropSlot drops a slot.
func (c *Conn) DropSlot(ctx context.Context, slot string) error {
	if err := pglogrepl.DropReplicationSlot(ctx, c.pg, slot, pglogrepl.DropReplicationSlotOptions{Wait: true}); err != nil {
		return fmt.Errorf("drop replication slot %s: %w", slot, describe(err, slot, ""))
	}
	return nil
}

// ServerCheckSQL reads what CheckSettings needs: wal_level and whether the
// current role may replicate.
const ServerCheckSQL = "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper " +
	"FROM pg_roles r WHERE r.rolname = current_user"

// CheckServer verifies the server settings that logical replication needs.
func (c *Conn) CheckServer(ctx context.Context) error {
	vals, found, err := c.QueryRow(ctx, ServerCheckSQL)
	if err != nil {
		return fmt.Errorf("check postgres settings: %w", err)
	}
	if !found || len(vals) < 2 {
		return fmt.Errorf("check postgres settings: current role not found in pg_roles")
	}
	return CheckSettings(str(vals[0]), str(vals[1]) == "t")
}

// CheckSettings returns a *ServerError listing what to change, or nil.
func CheckSettings(walLevel string, canReplicate bool) error {
	var problems []string
	if walLevel != "logical" {
		problems = append(problems, fmt.Sprintf("wal_level is %q: set wal_level = logical in postgresql.conf "+
			"(ALTER SYSTEM SET wal_level = logical) and restart Postgres", walLevel))
	}
	if !canReplicate {
		problems = append(problems, "the role has no REPLICATION attribute: run ALTER ROLE <role> WITH REPLICATION as a superuser")
	}
	if len(problems) > 0 {
		return &ServerError{Problems: problems}
	}
	return nil
}

// ServerError is a Postgres setting that prevents replication.
type ServerError struct{ Problems []string }

func (e *ServerError) Error() string { return "postgres: " + strings.Join(e.Problems, "; ") }

// SlotInUseError is returned when another process streams from the slot.
type SlotInUseError struct {
	Slot string
	PID  string
}

func (e *SlotInUseError) Error() string {
	s := fmt.Sprintf("replication slot %s is in use", e.Slot)
	if e.PID != "" {
		s += " by walsender pid " + e.PID
	}
	return s + ": another replicator (or client) is streaming from it; stop it, or configure a different postgres.slot"
}

// describe turns server errors into messages that say what to change, and
// marks connection errors with ErrConnection.
func describe(err error, slot, pub string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55006": // object_in_use
			if slot != "" {
				pid := ""
				if i := strings.LastIndex(pgErr.Message, "PID "); i >= 0 {
					pid = pgErr.Message[i+4:]
				}
				return &SlotInUseError{Slot: slot, PID: pid}
			}
		case "42704": // undefined_object
			if strings.Contains(pgErr.Message, "publication") {
				return fmt.Errorf("%s: create it with `replicator setup` (publication %q): %w", pgErr.Message, pub, err)
			}
			if strings.Contains(pgErr.Message, "replication slot") {
				return fmt.Errorf("%s: create it with `replicator setup`: %w", pgErr.Message, ErrSlotMissing)
			}
		case "42501": // insufficient_privilege
			if strings.Contains(pgErr.Message, "replication role") {
				return fmt.Errorf("%s: the role has no REPLICATION attribute; run ALTER ROLE <role> WITH REPLICATION as a superuser", pgErr.Message)
			}
		case "55000": // object_not_in_prerequisite_state
			if strings.Contains(pgErr.Message, "wal_level") {
				return fmt.Errorf("%s: set wal_level = logical and restart Postgres", pgErr.Message)
			}
		case "57P01", "57P02", "57P03", "08006", "08003", "08000", "08001", "08004", "53300":
			return fmt.Errorf("%w: %s", ErrConnection, pgErr.Message)
		}
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err) || isConnectError(err) {
		return fmt.Errorf("%w: %v", ErrConnection, err)
	}
	return err
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return false
	}
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr) // authentication and the like are not transient
}

// IsRetryable reports whether err comes from a lost or unreachable
// connection, after which a reconnect may succeed.
func IsRetryable(err error) bool { return errors.Is(err, ErrConnection) }

// QuoteLiteral quotes s as an SQL string literal.
func QuoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

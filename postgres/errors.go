package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/replicator/replicator/failure"
)

// ErrSlotMissing is returned when the configured slot does not exist.
var ErrSlotMissing = errors.New("replication slot does not exist")

// ErrSlotLost is returned when Postgres invalidated the slot or it was
// dropped while the daemon ran: changes are missing from ClickHouse.
var ErrSlotLost = errors.New("replication slot lost")

// LostSlotError says that Postgres invalidated the slot and how to resync.
func LostSlotError(slot string) error {
	return fmt.Errorf("slot %s: %w (wal_status = lost): Postgres removed WAL the slot still needed, "+
		"so changes are missing from ClickHouse; drop the slot, truncate the target tables and run `replicator setup` to copy them again",
		slot, ErrSlotLost)
}

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

// ServerError is a Postgres setting that prevents replication.
type ServerError struct{ Problems []string }

func (e *ServerError) Error() string { return "postgres: " + strings.Join(e.Problems, "; ") }

// serverCheckSQL reads wal_level and whether the role may replicate: the
// REPLICATION attribute, a superuser, or on Amazon RDS and Aurora, where
// neither is given, a member of rds_replication.
const serverCheckSQL = "SELECT current_setting('wal_level'), r.rolreplication OR r.rolsuper OR EXISTS (" +
	"SELECT FROM pg_roles g WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'MEMBER')) " +
	"FROM pg_roles r WHERE r.rolname = current_user"

// CheckServer verifies, over pg (an SQL or a replication connection), the
// server settings that logical replication needs.
func CheckServer(ctx context.Context, pg *pgconn.PgConn) error {
	vals, found, err := queryRow(ctx, pg, serverCheckSQL)
	if err != nil {
		return fmt.Errorf("check postgres settings: %w", err)
	}
	if !found || len(vals) < 2 {
		return fmt.Errorf("check postgres settings: current role not found in pg_roles")
	}
	return checkSettings(MajorVersion(pg.ParameterStatus("server_version")), str(vals[0]), str(vals[1]) == "t")
}

// checkSettings returns a *ServerError listing what to change, or nil.
// A major version of 0 is unknown and not checked.
func checkSettings(major int, walLevel string, canReplicate bool) error {
	var problems []string
	if major > 0 && major < MinVersion {
		problems = append(problems, fmt.Sprintf("PostgreSQL %d is not supported: the replicator needs PostgreSQL %d or later "+
			"(wal_status of replication slots, publish_via_partition_root, pg_current_snapshot)", major, MinVersion))
	}
	if walLevel != "logical" {
		problems = append(problems, fmt.Sprintf("wal_level is %q: set wal_level = logical in postgresql.conf "+
			"(ALTER SYSTEM SET wal_level = logical) and restart Postgres", walLevel))
	}
	if !canReplicate {
		problems = append(problems, "the role has no REPLICATION attribute: run ALTER ROLE <role> WITH REPLICATION as a superuser "+
			"(on Amazon RDS and Aurora: GRANT rds_replication TO <role>)")
	}
	if len(problems) > 0 {
		return &ServerError{Problems: problems}
	}
	return nil
}

// ErrConnection marks errors from a lost or refused connection: the caller
// may retry.
var ErrConnection = errors.New("connection lost")

// IsRetryable reports whether err comes from a lost or unreachable
// connection, after which a reconnect may succeed.
func IsRetryable(err error) bool { return errors.Is(err, ErrConnection) }

// Describe turns server errors into messages that say what to change (slot
// and pub name the objects the failed command used, if any), and marks
// connection errors with ErrConnection.
func Describe(err error, slot, pub string) error {
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	var authority x509.UnknownAuthorityError
	if errors.As(err, &verify) || errors.As(err, &hostname) || errors.As(err, &authority) {
		// A certificate the DSN does not trust: retrying cannot help.
		return fmt.Errorf("postgres TLS: the server's certificate is not trusted (check sslrootcert and sslmode in postgres.dsn): %w", err)
	}
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
		case "42704": // undefined_object: the message starts with the kind of object
			if strings.HasPrefix(pgErr.Message, "replication slot ") {
				return fmt.Errorf("%s: create it with `replicator setup`: %w", pgErr.Message, ErrSlotMissing)
			}
			if strings.Contains(pgErr.Message, "publication") {
				return fmt.Errorf("%s: create it with `replicator setup` (publication %q): %w", pgErr.Message, pub, err)
			}
		case "42501": // insufficient_privilege
			if strings.Contains(pgErr.Message, "replication role") {
				return fmt.Errorf("%s: the role has no REPLICATION attribute; run ALTER ROLE <role> WITH REPLICATION as a superuser", pgErr.Message)
			}
		case "55000": // object_not_in_prerequisite_state
			if strings.Contains(pgErr.Message, "wal_level") {
				return fmt.Errorf("%s: set wal_level = logical and restart Postgres", pgErr.Message)
			}
			if inRecovery(pgErr) {
				// The DSN reaches a standby: during a failover, the
				// standby about to be promoted. Its synced slot can be
				// streamed from once it is.
				return failure.Rule{Action: failure.Retry, Reason: "postgres_in_recovery"}.Apply(fmt.Errorf(
					"%w: %s: the server is a standby in recovery, not a primary (a failover under way?); waiting for its promotion",
					ErrConnection, pgErr.Message))
			}
		}
		rule := failure.Postgres(pgErr.Code)
		if rule.Action == failure.Retry {
			return rule.Apply(fmt.Errorf("%w: %s", ErrConnection, pgErr.Message))
		}
		return rule.Apply(err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err) || isConnectError(err) {
		return failure.Lost("postgres").Apply(fmt.Errorf("%w: %v", ErrConnection, err))
	}
	return err
}

// inRecovery tells whether a server error says that the server is in
// recovery: a WAL function refused ("recovery is in progress"), or
// decoding from a slot that a standby synchronizes from its primary.
func inRecovery(pgErr *pgconn.PgError) bool {
	return pgErr.Message == "recovery is in progress" ||
		strings.Contains(pgErr.Detail, "being synchronized from the primary server")
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return false
	}
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr) // authentication and the like are not transient
}

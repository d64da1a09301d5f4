package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// sessionParams are the settings of every replicator session, so that text
// values arrive in the form the mapping parses.
var sessionParams = map[string]string{
	"TimeZone":           "UTC",
	"DateStyle":          "ISO, YMD",
	"bytea_output":       "hex",
	"extra_float_digits": "3",
	"IntervalStyle":      "iso_8601",
	"application_name":   "replicator",
}

// ParseConfig parses a libpq connection string or URL and adds the session
// settings. The error never repeats the string, which may hold a password.
func ParseConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: invalid connection string")
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	return cfg, nil
}

// Conn is an SQL connection to the source database.
type Conn struct {
	pg *pgx.Conn
}

// Connect opens an SQL connection with the session settings.
func Connect(ctx context.Context, dsn string) (*Conn, error) {
	return connect(ctx, dsn, nil)
}

func connect(ctx context.Context, dsn string, adjust func(*pgx.ConnConfig)) (*Conn, error) {
	cfg, err := ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if adjust != nil {
		adjust(cfg)
	}
	pg, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		// A server that shuts down or starts up refuses or drops new
		// connections: a reconnect is retried.
		return nil, fmt.Errorf("connect to postgres: %w", Describe(err, "", ""))
	}
	return &Conn{pg: pg}, nil
}

// copyReadBuffer is the read buffer of a copy connection: a COPY sends a
// message per row, and reading them in large pieces saves system calls.
const copyReadBuffer = 256 << 10

// ConnectForCopy opens an SQL connection for bulk reads (CopyBinary): like
// Connect, with a large read buffer.
func ConnectForCopy(ctx context.Context, dsn string) (*Conn, error) {
	return connect(ctx, dsn, func(cfg *pgx.ConnConfig) {
		cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
			return pgproto3.NewFrontend(bufio.NewReaderSize(r, copyReadBuffer), w)
		}
	})
}

// Close closes the connection. It is safe to call more than once.
func (c *Conn) Close() {
	if c != nil && c.pg != nil && !c.pg.IsClosed() {
		c.pg.Close(context.Background())
	}
}

// IsClosed reports whether the connection is closed or broken.
func (c *Conn) IsClosed() bool { return c.pg.IsClosed() }

// CheckServer verifies the server settings that logical replication needs.
func (c *Conn) CheckServer(ctx context.Context) error { return CheckServer(ctx, c.pg.PgConn()) }

// Slot reads the state of a replication slot.
func (c *Conn) Slot(ctx context.Context, name string) (Slot, error) {
	return ReadSlot(ctx, c.pg.PgConn(), name)
}

// CurrentWAL returns the current WAL write position.
func (c *Conn) CurrentWAL(ctx context.Context) (pglogrepl.LSN, error) {
	return currentWAL(ctx, c.pg)
}

func currentWAL(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (pglogrepl.LSN, error) {
	var text string
	if err := q.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&text); err != nil {
		return 0, fmt.Errorf("read current WAL position: %w", Describe(err, "", ""))
	}
	return pglogrepl.ParseLSN(text)
}

// EmitHeartbeat writes a non-transactional logical message with the given
// prefix (pg_logical_emit_message), which moves the slot when the published
// tables are quiet: the stream carries it from MessagesVersion on; before,
// the WAL it writes moves the position of the walsender's keepalives. Its
// content is the server's time in microseconds since 1970: a daemon that
// stored everything below it knows its lag at that time.
func (c *Conn) EmitHeartbeat(ctx context.Context, prefix string) error {
	_, err := c.pg.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, (extract(epoch FROM now()) * 1000000)::bigint::text)", prefix)
	return err
}

// EmitMessage writes a non-transactional logical message that every
// slot's stream receives in WAL order, and returns its position. Streams
// carry messages from MessagesVersion on only (see MarkResync).
func (c *Conn) EmitMessage(ctx context.Context, prefix, content string) (pglogrepl.LSN, error) {
	var text string
	if err := c.pg.QueryRow(ctx, "SELECT pg_logical_emit_message(false, $1, $2)::text", prefix, content).Scan(&text); err != nil {
		return 0, fmt.Errorf("write logical message %s: %w", prefix, err)
	}
	return pglogrepl.ParseLSN(text)
}

// ErrPeekTimeout is the error of a PeekChanges that reached its time
// limit.
var ErrPeekTimeout = errors.New("decoding the slot took longer than the time limit")

// PeekChanges passes up to n pgoutput (protocol version 1) messages of an
// idle slot, without consuming them, to fn, and returns how many it read.
// The peek holds the slot while Postgres decodes from the slot's restart
// point, which on a backlog takes as long as the backlog: limit (0: none)
// ends it with ErrPeekTimeout, and the slot is free again then.
func (c *Conn) PeekChanges(ctx context.Context, slot, publication string, n int, limit time.Duration,
	fn func(data []byte) error) (int, error) {
	tx, err := c.pg.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("peek slot %s: %w", slot, Describe(err, slot, publication))
	}
	defer tx.Rollback(context.Background())
	if limit > 0 {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", max(limit.Milliseconds(), 1))); err != nil {
			return 0, fmt.Errorf("peek slot %s: %w", slot, Describe(err, slot, publication))
		}
	}
	rows, err := tx.Query(ctx, "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, "+
		"'proto_version', '1', 'publication_names', $3)", slot, n, publication)
	if err != nil {
		return 0, peekError(slot, limit, err)
	}
	defer rows.Close()
	got := 0
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return got, err
		}
		got++
		if err := fn(data); err != nil {
			return got, err
		}
	}
	if err := rows.Err(); err != nil {
		return got, peekError(slot, limit, err)
	}
	return got, nil
}

// peekError names the slot, and ErrPeekTimeout when the statement timeout
// of a limited peek cancelled it.
func peekError(slot string, limit time.Duration, err error) error {
	var pgErr *pgconn.PgError
	if limit > 0 && errors.As(err, &pgErr) && pgErr.Code == "57014" { // query_canceled
		return fmt.Errorf("peek slot %s: %w (%s)", slot, ErrPeekTimeout, limit)
	}
	return fmt.Errorf("peek slot %s: %w", slot, err)
}

// QuoteTable quotes a qualified table name "schema.table" as an SQL identifier.
func QuoteTable(name string) string {
	return pgx.Identifier(strings.SplitN(name, ".", 2)).Sanitize()
}

// QuoteIdent quotes one SQL identifier.
func QuoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// queryRow runs a simple query (the only kind a replication connection
// accepts) and returns its single row as text values, nil for NULL; found
// is false when the query returned no row.
func queryRow(ctx context.Context, pg *pgconn.PgConn, sql string) (vals []*string, found bool, err error) {
	results, err := pg.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, false, Describe(err, "", "")
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

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Aborted returns which of the given transaction ids, 32-bit ids of recent
// (sub)transactions as pgoutput sends them, aborted according to the
// commit log. The ids are widened with the current epoch. An id whose
// status the server no longer knows is an error.
func (c *Conn) Aborted(ctx context.Context, xids []uint32) (map[uint32]bool, error) {
	ids := make([]int64, len(xids))
	for i, x := range xids {
		ids[i] = int64(x)
	}
	rows, err := c.pg.Query(ctx, `WITH cur AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS nxt)
		SELECT x, pg_xact_status(((((cur.nxt >> 32) - CASE WHEN x > (cur.nxt & 4294967295) THEN 1 ELSE 0 END) << 32) | x)::text::xid8)
		FROM cur, unnest($1::bigint[]) AS x`, ids)
	if err != nil {
		return nil, fmt.Errorf("read the status of transactions: %w", Describe(err, "", ""))
	}
	defer rows.Close()
	out := make(map[uint32]bool, len(xids))
	for rows.Next() {
		var x int64
		var status *string
		if err := rows.Scan(&x, &status); err != nil {
			return nil, fmt.Errorf("read the status of transactions: %w", Describe(err, "", ""))
		}
		if status == nil {
			return nil, fmt.Errorf("the status of transaction %d is no longer known to Postgres", x)
		}
		out[uint32(x)] = *status == "aborted"
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the status of transactions: %w", Describe(err, "", ""))
	}
	return out, nil
}

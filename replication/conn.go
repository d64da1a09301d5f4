package replication

import (
	"context"
	"fmt"
	"net"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/replicator/replicator/postgres"
)

// Conn is a Postgres connection in logical replication mode
// (replication=database): it runs replication commands and simple queries.
type Conn struct {
	pg *pgconn.PgConn
}

// Connect opens a replication connection with the session settings of
// package postgres.
func Connect(ctx context.Context, dsn string) (*Conn, error) {
	cfg, err := postgres.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pc := cfg.Config.Copy()
	pc.RuntimeParams["replication"] = "database"
	if dial := pc.DialFunc; dial != nil {
		pc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newGatheringConn(c), nil
		}
	}
	pg, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres for replication: %w", postgres.Describe(err, "", ""))
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

// CheckServer verifies the server settings that logical replication needs.
func (c *Conn) CheckServer(ctx context.Context) error { return postgres.CheckServer(ctx, c.pg) }

// Slot reads the state of a slot.
func (c *Conn) Slot(ctx context.Context, slot string) (postgres.Slot, error) {
	return postgres.ReadSlot(ctx, c.pg, slot)
}

// CreateSlot creates a pgoutput slot and exports its snapshot. The snapshot
// stays valid only while this connection runs no other command. From
// PostgreSQL 17 on (postgres.FailoverSlotVersion) the slot is a failover
// slot: a standby that synchronizes slots keeps it, so that after a
// failover the promoted standby goes on from it. Without such a standby
// the flag changes nothing.
func (c *Conn) CreateSlot(ctx context.Context, slot string) (consistentPoint pglogrepl.LSN, snapshot string, err error) {
	return c.createSlot(ctx, slot, false)
}

// CreateTempSlot creates a temporary pgoutput slot and exports its
// snapshot, for a copy under a live stream: the slot and the snapshot live
// while this connection stays open and runs no other command. A temporary
// slot cannot fail over.
func (c *Conn) CreateTempSlot(ctx context.Context, slot string) (consistentPoint pglogrepl.LSN, snapshot string, err error) {
	return c.createSlot(ctx, slot, true)
}

// createSlotCommand returns the CREATE_REPLICATION_SLOT command for a
// server of major version major: the option list with FAILOVER for a
// permanent slot from FailoverSlotVersion on (pglogrepl's
// CreateReplicationSlot knows only the older syntax, which has no
// FAILOVER), else the older syntax that every supported version accepts.
func createSlotCommand(major int, slot string, temporary bool) string {
	if !temporary && major >= postgres.FailoverSlotVersion {
		return fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)", slot)
	}
	temp := ""
	if temporary {
		temp = " TEMPORARY"
	}
	return fmt.Sprintf("CREATE_REPLICATION_SLOT %s%s LOGICAL pgoutput EXPORT_SNAPSHOT", slot, temp)
}

func (c *Conn) createSlot(ctx context.Context, slot string, temporary bool) (pglogrepl.LSN, string, error) {
	op := "create replication slot " + slot
	if temporary {
		op = "create temporary replication slot " + slot
	}
	res, err := pglogrepl.ParseCreateReplicationSlot(c.pg.Exec(ctx, createSlotCommand(c.ServerVersion(), slot, temporary)))
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", op, postgres.Describe(err, slot, ""))
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", op, err)
	}
	return lsn, res.SnapshotName, nil
}

// EnableFailover makes an existing slot a failover slot (PostgreSQL 17
// and later; see CreateSlot). The slot must not be in use.
func (c *Conn) EnableFailover(ctx context.Context, slot string) error {
	if _, err := c.pg.Exec(ctx, fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER true)", slot)).ReadAll(); err != nil {
		return fmt.Errorf("make replication slot %s a failover slot: %w", slot, postgres.Describe(err, slot, ""))
	}
	return nil
}

// DropSlot drops a slot.
func (c *Conn) DropSlot(ctx context.Context, slot string) error {
	if err := pglogrepl.DropReplicationSlot(ctx, c.pg, slot, pglogrepl.DropReplicationSlotOptions{Wait: true}); err != nil {
		return fmt.Errorf("drop replication slot %s: %w", slot, postgres.Describe(err, slot, ""))
	}
	return nil
}

// ServerVersion returns the server's major version (e.g. 15), 0 when the
// server did not report it.
func (c *Conn) ServerVersion() int {
	return postgres.MajorVersion(c.pg.ParameterStatus("server_version"))
}

// IdentifySystem runs IDENTIFY_SYSTEM: the server's system identifier,
// timeline and flushed WAL position.
func (c *Conn) IdentifySystem(ctx context.Context) (pglogrepl.IdentifySystemResult, error) {
	id, err := pglogrepl.IdentifySystem(ctx, c.pg)
	if err != nil {
		return id, fmt.Errorf("identify the postgres system: %w", postgres.Describe(err, "", ""))
	}
	return id, nil
}

// TimelineHistory returns the history file of timeline (TIMELINE_HISTORY).
func (c *Conn) TimelineHistory(ctx context.Context, timeline int32) ([]byte, error) {
	h, err := pglogrepl.TimelineHistory(ctx, c.pg, timeline)
	if err != nil {
		return nil, fmt.Errorf("read the history of timeline %d: %w", timeline, postgres.Describe(err, "", ""))
	}
	return h.Content, nil
}

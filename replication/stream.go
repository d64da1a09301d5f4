package replication

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/replicator/replicator/postgres"
)

// Handler consumes a replication stream. Stream calls it from the goroutine
// that runs Stream.Run, never concurrently.
type Handler interface {
	// Handle is called for every decoded message, in WAL order. The message
	// is valid only until Handle returns.
	Handle(ctx context.Context, m Message) error
	// Tick is called when no message arrived before Deadline, and on every
	// keepalive. walEnd is the server's WAL position from the latest
	// keepalive: every transaction that committed before it has been passed
	// to Handle (zero when no keepalive has arrived yet).
	Tick(ctx context.Context, walEnd pglogrepl.LSN) error
	// Durable returns the position that may be acknowledged to Postgres:
	// every transaction at or below it is stored in ClickHouse.
	Durable() pglogrepl.LSN
	// Deadline returns when Tick must be called at the latest (zero: no need).
	Deadline() time.Time
}

// Stream receives a logical replication stream over one replication
// connection and acknowledges to Postgres only what its Handler reports as
// durable.
type Stream struct {
	conn     *Conn
	slot     string
	pub      string
	interval time.Duration
	log      hclog.Logger
	dec      *Decoder

	walEnd     pglogrepl.LSN
	sentAck    pglogrepl.LSN
	nextStatus time.Time
}

// StreamOptions configures a Stream.
type StreamOptions struct {
	Slot        string
	Publication string
	// StatusInterval is the longest time between two standby status updates.
	StatusInterval time.Duration
	Logger         hclog.Logger
}

// NewStream returns a stream over conn. It starts nothing.
func NewStream(conn *Conn, opts StreamOptions) *Stream {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	return &Stream{conn: conn, slot: opts.Slot, pub: opts.Publication, interval: opts.StatusInterval,
		log: opts.Logger, dec: NewDecoder()}
}

// Start issues START_REPLICATION from start. Postgres resends every
// transaction whose commit LSN is at or above max(start, confirmed_flush_lsn).
func (s *Stream) Start(ctx context.Context, start pglogrepl.LSN) error {
	err := pglogrepl.StartReplication(ctx, s.conn.pg, s.slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", s.pub), "messages 'true'"},
	})
	if err != nil {
		return fmt.Errorf("start replication on slot %s: %w", s.slot, postgres.Describe(err, s.slot, s.pub))
	}
	s.sentAck = start
	s.nextStatus = time.Now().Add(s.interval)
	return nil
}

// Run receives messages and passes them to h until ctx is done (it then
// returns nil with the connection still usable for SendStatus) or an error
// occurs. Standby status updates carry h.Durable() and are sent when it
// changes, when the server asks, and at least every StatusInterval.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		// Under a steady stream the receive below never times out: honour
		// the handler's deadline here too.
		if d := h.Deadline(); !d.IsZero() && !now.Before(d) {
			if err := h.Tick(ctx, s.walEnd); err != nil {
				return err
			}
		}
		if ack := h.Durable(); ack > s.sentAck || !now.Before(s.nextStatus) {
			if err := s.SendStatus(ctx, ack); err != nil {
				return err
			}
		}
		deadline := s.nextStatus
		if d := h.Deadline(); !d.IsZero() && d.Before(deadline) {
			deadline = d
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		raw, err := s.conn.pg.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) || ctx.Err() != nil {
				if ctx.Err() != nil {
					return nil
				}
				if err := h.Tick(ctx, s.walEnd); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("receive replication message: %w", postgres.Describe(err, s.slot, s.pub))
		}
		switch msg := raw.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if pkm.ServerWALEnd > s.walEnd {
					s.walEnd = pkm.ServerWALEnd
				}
				if err := h.Tick(ctx, s.walEnd); err != nil {
					return err
				}
				if pkm.ReplyRequested {
					s.nextStatus = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse xlog data: %w", err)
				}
				m, err := s.dec.Decode(xld.WALData)
				if err != nil {
					return fmt.Errorf("at WAL %s: %w", xld.WALStart, err)
				}
				if m == nil {
					continue
				}
				switch m := m.(type) {
				case *Change:
					m.LSN = xld.WALStart
				case *Truncate:
					m.LSN = xld.WALStart
				}
				if err := h.Handle(ctx, m); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", postgres.Describe(pgconn.ErrorResponseToPgError(msg), s.slot, s.pub))
		case *pgproto3.CopyDone:
			return fmt.Errorf("replication stream: server ended the stream: %w", postgres.ErrConnection)
		}
	}
}

// SendStatus acknowledges lsn as written, flushed and applied. Callers must
// pass only positions stored durably in ClickHouse.
func (s *Stream) SendStatus(ctx context.Context, lsn pglogrepl.LSN) error {
	if lsn < s.sentAck {
		lsn = s.sentAck
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn.pg, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn, WALFlushPosition: lsn, WALApplyPosition: lsn,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", postgres.Describe(err, s.slot, s.pub))
	}
	if lsn > s.sentAck {
		s.log.Trace("acknowledged", "lsn", lsn)
	}
	s.sentAck = lsn
	s.nextStatus = time.Now().Add(s.interval)
	return nil
}

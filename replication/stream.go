package replication

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/replicator/replicator/failure"
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
	acked      pglogrepl.LSN // StreamOptions.Acknowledged
	nextStatus time.Time

	// mu serializes the standby status updates of Run's goroutine and of
	// its answerer (see answer); busy is true while the handler works on a
	// message, when the answerer alone keeps the walsender's timeout from
	// expiring. lastSent is when the last update went out.
	mu       sync.Mutex
	busy     bool
	lastSent time.Time

	// streaming is true when Postgres sends in-progress transactions
	// (protocol version 2); spool keeps them until their commit or abort,
	// and block is the transaction of the open block.
	streaming bool
	spool     *Spool
	spoolOpt  SpoolOptions
	aborted   func(ctx context.Context, xids []uint32) (map[uint32]bool, error)
	spooled   func(txns int, memory, disk int64)
	inBlock   bool
	block     uint32
	protocol  string
}

// StreamOptions configures a Stream.
type StreamOptions struct {
	Slot        string
	Publication string
	// StatusInterval is the longest time between two standby status updates.
	StatusInterval time.Duration
	Logger         hclog.Logger
	// Streaming asks for the messages of in-progress transactions when the
	// server can send them (PostgreSQL 14 and later); Spool says where to
	// keep them until their commit.
	Streaming bool
	Spool     SpoolOptions
	// Aborted reports which of the given (sub)transaction ids aborted. At
	// a streamed transaction's commit the stream asks it about the
	// subtransactions still spooled: Postgres 15 does not always send the
	// abort of a rolled-back subtransaction whose changes it streamed from
	// its own spill files.
	Aborted func(ctx context.Context, xids []uint32) (map[uint32]bool, error)
	// Spooled, when set, is told what the spool holds after each block,
	// commit and abort of a streamed transaction (see Spool.Open).
	Spooled func(txns int, memory, disk int64)
	// Acknowledged, when not zero and below the start, is the position
	// standby status updates start from instead of the start: what the
	// slot confirmed already, while the start is not proven to be this
	// server's history.
	Acknowledged pglogrepl.LSN
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
		log: opts.Logger, dec: NewDecoder(), streaming: opts.Streaming, spoolOpt: opts.Spool, aborted: opts.Aborted,
		spooled: opts.Spooled, acked: opts.Acknowledged}
}

// StreamingVersion is the first PostgreSQL major version that streams
// in-progress transactions (pgoutput protocol version 2).
const StreamingVersion = postgres.StreamingVersion

// Protocol describes the protocol a server and a streaming choice lead
// to, as the log and `replicator status` show it.
func Protocol(serverMajor int, streaming bool) string {
	switch {
	case streaming && serverMajor >= StreamingVersion:
		return "2 (in-progress transactions streamed)"
	case streaming:
		return fmt.Sprintf("1 (PostgreSQL %d sends a transaction after its commit; streaming needs %d or later)", serverMajor, StreamingVersion)
	}
	return "1 (streaming turned off by stream.enabled)"
}

// PluginArgs returns the pgoutput options of START_REPLICATION for a
// server of major version serverMajor: protocol version 2 with streaming
// when streaming (which the caller has gated by StreamingVersion), and
// logical messages from MessagesVersion on. Before that pgoutput rejects
// the option and has no messages to send: heartbeats still move the
// keepalives' WAL position, and resyncs are marked by a row of
// postgres.MarkTable (see ParseMark).
func PluginArgs(serverMajor int, publication string, streaming bool) []string {
	args := []string{"proto_version '1'"}
	if streaming {
		args = []string{"proto_version '2'", "streaming 'on'"}
	}
	args = append(args, fmt.Sprintf("publication_names '%s'", strings.ReplaceAll(publication, "'", "''")))
	if serverMajor >= postgres.MessagesVersion {
		args = append(args, "messages 'true'")
	}
	return args
}

// Protocol returns the protocol the stream started with.
func (s *Stream) Protocol() string { return s.protocol }

// Start issues START_REPLICATION from start. Postgres resends every
// transaction whose commit LSN is at or above max(start, confirmed_flush_lsn).
func (s *Stream) Start(ctx context.Context, start pglogrepl.LSN) error {
	major := s.conn.ServerVersion()
	// The protocol names what was asked and what the server allows.
	s.protocol = Protocol(major, s.streaming)
	s.streaming = s.streaming && major >= StreamingVersion
	if s.streaming {
		spool, err := NewSpool(s.spoolOpt)
		if err != nil {
			return err
		}
		s.spool = spool
	}
	args := PluginArgs(major, s.pub, s.streaming)
	err := pglogrepl.StartReplication(ctx, s.conn.pg, s.slot, start, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		return fmt.Errorf("start replication on slot %s: %w", s.slot, postgres.Describe(err, s.slot, s.pub))
	}
	s.sentAck = start
	if s.acked != 0 && s.acked < start {
		s.sentAck = s.acked
	}
	s.nextStatus = time.Now().Add(s.interval)
	return nil
}

// Run receives messages and passes them to h until ctx is done (it then
// returns nil with the connection still usable for SendStatus) or an error
// occurs. Standby status updates carry h.Durable() and are sent when it
// changes, when the server asks, and at least every StatusInterval.
func (s *Stream) Run(ctx context.Context, h Handler) error {
	recv := newReceiver(ctx, s.conn.pg)
	defer recv.close()
	stop := s.answer(ctx)
	defer stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		// Under a steady stream the receive below never times out: honour
		// the handler's deadline here too.
		if d := h.Deadline(); !d.IsZero() && !now.Before(d) {
			if err := s.tick(ctx, h); err != nil {
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
		raw, err := recv.receive(ctx, deadline)
		if err != nil {
			if pgconn.Timeout(err) || ctx.Err() != nil {
				if ctx.Err() != nil {
					return nil
				}
				if err := s.tick(ctx, h); err != nil {
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
				if err := s.tick(ctx, h); err != nil {
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
				s.setBusy(true)
				err = s.message(ctx, h, xld.WALStart, xld.WALData)
				s.setBusy(false)
				if err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", postgres.Describe(pgconn.ErrorResponseToPgError(msg), s.slot, s.pub))
		case *pgproto3.CopyDone:
			return failure.Lost("postgres").Apply(fmt.Errorf("replication stream: server ended the stream: %w", postgres.ErrConnection))
		}
	}
}

// busyReply is how often the walsender hears from a stream whose handler
// is busy with one message (waiting for a flush to land, an ALTER, a
// TRUNCATE): well within any sensible wal_sender_timeout, which ends a
// connection that sent nothing for that long.
const busyReply = time.Second

// tick calls h.Tick, answering the walsender while it runs.
func (s *Stream) tick(ctx context.Context, h Handler) error {
	s.setBusy(true)
	defer s.setBusy(false)
	return h.Tick(ctx, s.walEnd)
}

// setBusy marks whether the handler works on a message. Unmarking waits
// for a status update the answerer is sending, so that Run's goroutine
// alone uses the connection again.
func (s *Stream) setBusy(b bool) {
	s.mu.Lock()
	s.busy = b
	s.mu.Unlock()
}

// answer starts the answerer, which sends a standby status update every
// busyReply while the handler is busy: Postgres asks for replies while
// the stream does not read, and ends the connection after
// wal_sender_timeout without one, whereupon the session would replay
// from the checkpoint, maybe forever if every flush is that slow. The
// answerer repeats the position last acknowledged, which is durable; it
// never reads the handler's state, and the handler's newer durable
// position is acknowledged by Run once the handler returns. stop ends the
// answerer and returns when it has.
func (s *Stream) answer(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(busyReply / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.mu.Lock()
			var err error
			if s.busy && time.Since(s.lastSent) >= busyReply {
				err = s.sendLocked(ctx, s.sentAck)
			}
			s.mu.Unlock()
			if err != nil {
				// Run's next receive or update sees the broken
				// connection and ends the session.
				s.log.Debug("status update while busy failed", "error", err)
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// receiver receives with the connection's read deadline set directly: a
// receive under a context costs pgconn a context watcher per message. The
// end of the run's context sets the deadline to now, which interrupts a
// receive as a timeout.
type receiver struct {
	pg       *pgconn.PgConn
	deadline time.Time
	stop     func() bool
	fired    chan struct{}
}

func newReceiver(ctx context.Context, pg *pgconn.PgConn) *receiver {
	r := &receiver{pg: pg, fired: make(chan struct{})}
	r.stop = context.AfterFunc(ctx, func() {
		defer close(r.fired)
		pg.Conn().SetReadDeadline(time.Now())
	})
	return r
}

// receive returns the next message, or a timeout error at deadline or when
// ctx ends.
func (r *receiver) receive(ctx context.Context, deadline time.Time) (pgproto3.BackendMessage, error) {
	if !deadline.Equal(r.deadline) {
		if err := r.pg.Conn().SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		r.deadline = deadline
		// The end of ctx may have set its deadline before this one
		// replaced it.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return r.pg.ReceiveMessage(context.Background())
}

// close leaves the connection without a read deadline, usable after the
// run.
func (r *receiver) close() {
	if !r.stop() {
		<-r.fired
	}
	r.pg.Conn().SetReadDeadline(time.Time{})
}

// message passes one pgoutput message to h, or to the spool while a block
// of a streamed transaction is open.
func (s *Stream) message(ctx context.Context, h Handler, lsn pglogrepl.LSN, data []byte) error {
	if s.spool != nil && len(data) > 0 {
		if s.inBlock && data[0] != 'E' {
			if err := s.spool.Add(s.block, lsn, data); err != nil {
				return fmt.Errorf("at WAL %s: %w", lsn, err)
			}
			return nil
		}
		switch data[0] {
		case 'S', 'E', 'c', 'A':
			m, err := s.dec.Decode(data)
			if err != nil {
				return fmt.Errorf("at WAL %s: %w", lsn, err)
			}
			return s.streamed(ctx, h, lsn, m)
		}
	}
	m, err := s.dec.Decode(data)
	if err != nil {
		return fmt.Errorf("at WAL %s: %w", lsn, err)
	}
	return s.handle(ctx, h, lsn, m)
}

func (s *Stream) handle(ctx context.Context, h Handler, lsn pglogrepl.LSN, m Message) error {
	switch m := m.(type) {
	case nil:
		return nil
	case *Change:
		m.LSN = lsn
	case *Truncate:
		m.LSN = lsn
	case *StreamStart, *StreamStop, *StreamCommit, *StreamAbort:
		return fmt.Errorf("at WAL %s: message of a streamed transaction on a stream started with protocol version 1", lsn)
	}
	return h.Handle(ctx, m)
}

// streamed handles the messages that open, close, commit and abort the
// blocks of streamed transactions. A commit passes the transaction to h as
// Postgres would have sent it after its commit: Begin, its messages in WAL
// order, Commit.
func (s *Stream) streamed(ctx context.Context, h Handler, lsn pglogrepl.LSN, m Message) error {
	if s.spooled != nil {
		defer func() { s.spooled(s.spool.Open()) }()
	}
	switch m := m.(type) {
	case *StreamStart:
		if err := s.spool.Start(m.Xid, m.First); err != nil {
			return fmt.Errorf("at WAL %s: %w", lsn, err)
		}
		if m.First {
			s.log.Debug("streamed transaction started", "xid", m.Xid, "lsn", lsn)
		}
		s.inBlock, s.block = true, m.Xid
	case *StreamStop:
		s.inBlock = false
	case *StreamAbort:
		if err := s.spool.Abort(m.Xid, m.SubXid); err != nil {
			return fmt.Errorf("at WAL %s: %w", lsn, err)
		}
		s.log.Debug("streamed transaction aborted", "xid", m.Xid, "subxid", m.SubXid, "lsn", lsn)
	case *StreamCommit:
		s.log.Debug("streamed transaction commit received", "xid", m.Xid, "commit", m.CommitLSN)
		var skip map[uint32]bool
		if subs := s.spool.Subtransactions(m.Xid); len(subs) > 0 && s.aborted != nil {
			var err error
			if skip, err = s.aborted(ctx, subs); err != nil {
				return fmt.Errorf("commit of streamed transaction %d at WAL %s: %w", m.Xid, m.CommitLSN, err)
			}
			for x, a := range skip {
				if a {
					s.log.Warn("Postgres did not send the abort of a rolled-back subtransaction; its changes are discarded",
						"xid", m.Xid, "subxid", x, "commit", m.CommitLSN)
				}
			}
		}
		if err := h.Handle(ctx, &Begin{FinalLSN: m.CommitLSN, CommitTime: m.CommitTime, Xid: m.Xid}); err != nil {
			return err
		}
		n := 0
		err := s.spool.Replay(m.Xid, skip, func(at pglogrepl.LSN, data []byte) error {
			msg, err := s.dec.DecodeStreamed(data)
			if err != nil {
				return fmt.Errorf("at WAL %s: %w", at, err)
			}
			if n++; n%4096 == 0 && s.statusDue() {
				// A long replay does not starve the walsender of replies.
				if err := s.SendStatus(ctx, h.Durable()); err != nil {
					return err
				}
			}
			return s.handle(ctx, h, at, msg)
		})
		if err != nil {
			return err
		}
		s.log.Debug("streamed transaction committed", "xid", m.Xid, "commit", m.CommitLSN, "messages", n)
		return h.Handle(ctx, &Commit{CommitLSN: m.CommitLSN, EndLSN: m.EndLSN, CommitTime: m.CommitTime})
	}
	return nil
}

// Close removes what the stream spilled.
func (s *Stream) Close() error {
	if s.spool == nil {
		return nil
	}
	return s.spool.Close()
}

// SendStatus acknowledges lsn as written, flushed and applied. Callers must
// pass only positions stored durably in ClickHouse.
func (s *Stream) SendStatus(ctx context.Context, lsn pglogrepl.LSN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendLocked(ctx, lsn)
}

// statusDue reports whether a status update is due by the interval.
func (s *Stream) statusDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !time.Now().Before(s.nextStatus)
}

// sendLocked sends a standby status update of lsn, never below the
// position acknowledged before; s.mu is held.
func (s *Stream) sendLocked(ctx context.Context, lsn pglogrepl.LSN) error {
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
	s.lastSent = time.Now()
	s.nextStatus = s.lastSent.Add(s.interval)
	return nil
}

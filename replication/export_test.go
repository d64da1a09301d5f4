package replication

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
)

// NewSpooledStream returns a stream without a connection that receives
// in-progress transactions into spool, for tests of Feed.
func NewSpooledStream(spool *Spool) *Stream {
	return &Stream{dec: NewDecoder(), streaming: true, spool: spool, log: hclog.NewNullLogger()}
}

// Feed passes one pgoutput message at lsn to the stream as Run does.
func (s *Stream) Feed(ctx context.Context, h Handler, lsn pglogrepl.LSN, data []byte) error {
	return s.message(ctx, h, lsn, data)
}

// SetAborted sets the stream's source of subtransaction states.
func (s *Stream) SetAborted(f func(ctx context.Context, xids []uint32) (map[uint32]bool, error)) {
	s.aborted = f
}

// CreateSlotCommand is createSlotCommand, for tests.
var CreateSlotCommand = createSlotCommand

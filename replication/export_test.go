package replication

import (
	"context"

	"github.com/jackc/pglogrepl"
)

// NewSpooledStream returns a stream without a connection that receives
// in-progress transactions into spool, for tests of Feed.
func NewSpooledStream(spool *Spool) *Stream {
	return &Stream{dec: NewDecoder(), streaming: true, spool: spool}
}

// Feed passes one pgoutput message at lsn to the stream as Run does.
func (s *Stream) Feed(ctx context.Context, h Handler, lsn pglogrepl.LSN, data []byte) error {
	return s.message(ctx, h, lsn, data)
}

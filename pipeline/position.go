package pipeline

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/replication"
)

// position is the transaction state of the stream: the transaction being
// received, whether it is skipped, the newest transaction fully buffered,
// and the newest position saved as a checkpoint. Only a saved checkpoint is
// ever acknowledged.
type position struct {
	resume  checkpoint.Position // transactions done before this session
	durable checkpoint.Position // newest saved checkpoint

	inTxn      bool
	skip       bool // the open transaction is done already
	version    pglogrepl.LSN
	xid        uint32
	commitTime time.Time
	complete   checkpoint.Position // newest transaction fully buffered
	pending    bool                // complete is newer than durable

	walEnd   pglogrepl.LSN // latest keepalive WAL end
	idlePos  pglogrepl.LSN // newest position below which every transaction was received
	lastIdle time.Time     // when the last idle checkpoint was saved
	// beat is when the newest heartbeat below idlePos was emitted: every
	// transaction that committed before it is below idlePos (zero: none
	// seen in this session).
	beat time.Time
}

func newPosition(resume checkpoint.Position) position {
	return position{resume: resume, durable: resume}
}

// begin opens a transaction; it is skipped when the checkpoint covers it.
func (p *position) begin(m *replication.Begin) error {
	if p.inTxn {
		return fmt.Errorf("begin of transaction %s inside transaction %s", m.FinalLSN, p.version)
	}
	p.inTxn, p.version, p.xid, p.commitTime = true, m.FinalLSN, m.Xid, m.CommitTime
	p.skip = p.resume.Done(m.FinalLSN)
	return nil
}

// commit closes the open transaction. It reports whether the transaction
// was applied (not skipped): then it is complete and waits for a checkpoint.
func (p *position) commit(m *replication.Commit) (applied bool, err error) {
	if !p.inTxn || m.CommitLSN != p.version {
		return false, fmt.Errorf("commit %s without matching begin (open transaction %s)", m.CommitLSN, p.version)
	}
	p.inTxn = false
	if p.skip {
		return false, nil
	}
	p.complete = checkpoint.Position{LSN: m.CommitLSN, Commit: true, CommitTime: m.CommitTime,
		Last: checkpoint.Transaction{LSN: m.CommitLSN, Xid: p.xid, Time: checkpoint.CommitTime(p.commitTime)}}
	p.pending = true
	return true, nil
}

// applying reports whether changes arriving now are to be written.
func (p *position) applying() bool { return p.inTxn && !p.skip }

// keepalive records the server's WAL end from a keepalive: every
// transaction that committed below it has been received.
func (p *position) keepalive(walEnd pglogrepl.LSN) {
	p.walEnd = max(p.walEnd, walEnd)
	p.idlePos = max(p.idlePos, walEnd)
}

// heartbeat records the LSN of a non-transactional logical message outside
// a transaction, emitted at emitted when it is a heartbeat (else zero); it
// reports whether the position moved.
func (p *position) heartbeat(lsn pglogrepl.LSN, emitted time.Time) bool {
	if p.inTxn {
		return false
	}
	if emitted.After(p.beat) {
		p.beat = emitted
	}
	if lsn <= p.idlePos {
		return false
	}
	p.idlePos = lsn
	return true
}

// asOf returns a time before which every committed transaction is stored
// once the durable position is: for a commit checkpoint its commit time;
// for an idle position the newest heartbeat it covers, or its last commit
// if that is newer; zero for an idle position that no heartbeat of this
// session proves (then nothing tells whether a transaction committed
// since the last one stored).
func (p *position) asOf() time.Time {
	d := p.durable
	switch {
	case d.Commit:
		return d.CommitTime
	case p.beat.IsZero():
		return time.Time{}
	case d.CommitTime.After(p.beat):
		return d.CommitTime
	}
	return p.beat
}

// idleCheckpoint returns the position to save while idle: with nothing
// buffered (rows) or open, the newest position below which every
// transaction was received, at most once per gap.
func (p *position) idleCheckpoint(now time.Time, rows int, gap time.Duration) (checkpoint.Position, bool) {
	if p.inTxn || p.pending || rows > 0 || p.idlePos <= p.durable.LSN || now.Sub(p.lastIdle) < gap {
		return checkpoint.Position{}, false
	}
	return checkpoint.Position{LSN: p.idlePos, Commit: false, CommitTime: p.durable.CommitTime, Last: p.durable.Last}, true
}

// take returns the newest complete transaction's position for a flush to
// save: it is no longer pending.
func (p *position) take() checkpoint.Position {
	p.pending = false
	return p.complete
}

// checkpointed records that a flush saved pos (from take) as a checkpoint.
func (p *position) checkpointed(pos checkpoint.Position) {
	p.durable = pos
}

// idleSaved records that the idle position pos was saved at now.
func (p *position) idleSaved(pos checkpoint.Position, now time.Time) {
	p.durable, p.lastIdle = pos, now
}

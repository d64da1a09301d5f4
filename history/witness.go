package history

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
)

// Witness decides, from the first transactions a session receives,
// whether the server's WAL holds the transactions that the checkpoint
// covers. A server brought back to an earlier state (a data directory put
// back, a disk snapshot restored) keeps its system and timeline, and once
// its WAL has grown past the checkpoint again nothing at connect tells it
// from the original: only the WAL's content does. The checkpoint records
// its newest stored transaction (checkpoint.Position.Last); the session
// starts streaming at that transaction's commit LSN, which Postgres sends
// again (it skips only commits below the start), and the server continues
// the history if and only if the first transaction it sends is that one,
// with the same xid and commit time. A transaction or a position past it
// first means the WAL there holds something else. (The xid and LSN alone
// do not tell: a server brought back to an earlier state hands out the
// same xids again, and a transaction of the same shape commits at the same
// LSN.)
//
// Between the newest stored transaction and a position checkpoint above
// it (an idle keepalive or heartbeat position), the history that
// ClickHouse stored has no transaction: Postgres sent none there, else it
// would be the newest stored one. A transaction that the server sends
// there, which the session would skip as stored, is another history's
// (a server put back, whose WAL has grown past the checkpoint again,
// commits it in that gap): so the witness stays pending until the stream
// passes the checkpoint, and such a transaction first is a break.
//
// When the slot confirmed past the newest stored transaction, Postgres
// sends nothing at or below the confirmed position, and the slot itself
// vouches for the history up to there: its confirmed position moves only
// with this daemon's acknowledgements, which follow its checkpoints. Then
// the witness starts at the confirmed position and watches only the gap
// from there to the checkpoint. When the checkpoint names no transaction
// (a copy's consistent point, an earlier version's checkpoint) there is
// nothing to witness.
type Witness struct {
	want       checkpoint.Transaction
	resume     checkpoint.Position
	checkpoint pglogrepl.LSN
	slot       string
	start      pglogrepl.LSN
	// needLast: the newest stored transaction must come first (the slot
	// did not confirm past it); seen once it came.
	needLast, seen bool
	pending        bool
	// confirmed is the slot's confirmed position at connect.
	confirmed pglogrepl.LSN
}

// NewWitness returns the witness of a session that resumes from cp on a
// slot whose confirmed position is confirmed.
func NewWitness(cp checkpoint.Position, confirmed pglogrepl.LSN, slot string) *Witness {
	w := &Witness{want: cp.Last, resume: cp, checkpoint: cp.LSN, slot: slot, confirmed: confirmed}
	if cp.Last.LSN == 0 {
		return w
	}
	w.needLast = confirmed <= cp.Last.LSN
	w.start = min(cp.LSN, max(cp.Last.LSN, confirmed))
	// A gap to watch: positions from the start to the checkpoint that the
	// session would skip as stored.
	gap := !cp.Commit && w.start < cp.LSN
	w.pending = w.needLast || gap
	return w
}

// Acknowledged is the position to acknowledge to Postgres for a session
// whose newest saved checkpoint is durable: while the witness has not
// decided, no more than the slot confirmed already, so that a history
// that turns out not to continue gets nothing acknowledged.
func (w *Witness) Acknowledged(durable pglogrepl.LSN) pglogrepl.LSN {
	if w.Pending() {
		return min(w.confirmed, durable)
	}
	return durable
}

// Pending reports whether the witness has not decided yet. A nil
// Witness has nothing to decide.
func (w *Witness) Pending() bool { return w != nil && w.pending }

// Start returns where streaming must start for the witness to see what
// it judges: the newest stored transaction's commit LSN, or the slot's
// confirmed position, while pending, else resume.
func (w *Witness) Start(resume pglogrepl.LSN) pglogrepl.LSN {
	if w.Pending() {
		return min(w.start, resume)
	}
	return resume
}

// Begin judges a transaction that commits at commitLSN, before any of it
// is written: nil when the history continues or the witness has decided,
// a *Break when it does not continue. commitTime is checked when the
// checkpoint recorded one.
func (w *Witness) Begin(commitLSN pglogrepl.LSN, xid uint32, commitTime time.Time) error {
	if !w.Pending() {
		return nil
	}
	if w.needLast && !w.seen {
		switch {
		case commitLSN < w.want.LSN:
			// Not sent by a server that starts at the witness's commit; harmless.
			return nil
		case commitLSN == w.want.LSN && xid == w.want.Xid && w.want.Time != 0 && checkpoint.CommitTime(commitTime) != w.want.Time:
			return w.broken(fmt.Sprintf("the transaction that commits at %s with xid %d committed at %s, but the newest transaction "+
				"ClickHouse stored committed there with that xid at %s", commitLSN, xid, commitTime.UTC().Format(time.RFC3339Nano),
				time.UnixMicro(int64(w.want.Time)).UTC().Format(time.RFC3339Nano)))
		case commitLSN == w.want.LSN && xid == w.want.Xid:
			w.seen = true
			// Nothing but a transaction the session does not skip can come next.
			w.pending = !w.resume.Commit && w.want.LSN < w.resume.LSN
			return nil
		case commitLSN == w.want.LSN:
			return w.broken(fmt.Sprintf("the transaction that commits at %s has xid %d, but the newest transaction ClickHouse "+
				"stored committed there with xid %d", commitLSN, xid, w.want.Xid))
		}
		return w.broken(fmt.Sprintf("the first transaction the server sends commits at %s (xid %d), past %s where the newest "+
			"transaction ClickHouse stored (xid %d) committed: the server's WAL holds other transactions there",
			commitLSN, xid, w.want.LSN, w.want.Xid))
	}
	if !w.resume.Done(commitLSN) {
		w.pending = false
		return nil
	}
	return w.broken(fmt.Sprintf("the server sends a transaction that commits at %s (xid %d), between %s, where the newest "+
		"transaction ClickHouse stored (xid %d) committed, and the checkpoint %s: the history ClickHouse stored has none "+
		"there, so the server's WAL holds other transactions", commitLSN, xid, w.want.LSN, w.want.Xid, w.resume.LSN))
}

// Position judges a position lsn the server reported (a keepalive, a
// heartbeat) below which it sent every transaction: past the witness's
// commit LSN while pending, that transaction is not in the WAL.
func (w *Witness) Position(lsn pglogrepl.LSN) error {
	if !w.Pending() {
		return nil
	}
	if w.needLast && !w.seen {
		if lsn <= w.want.LSN {
			return nil
		}
		return w.broken(fmt.Sprintf("the server's stream passed %s, where the newest transaction ClickHouse stored (xid %d) "+
			"committed, without sending it: the server's WAL holds other transactions there", w.want.LSN, w.want.Xid))
	}
	if lsn >= w.resume.LSN {
		// Every transaction that commits below the checkpoint was sent.
		w.pending = false
	}
	return nil
}

func (w *Witness) broken(detail string) error {
	return &Break{Reason: ReasonDiverged, Slot: w.slot, Checkpoint: w.checkpoint,
		Detail: detail + " (a data directory or a disk snapshot put back, or a restore from a backup)"}
}

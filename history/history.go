package history

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/postgres"
)

// Server is what a Postgres server says of its history at connect.
type Server struct {
	SystemID uint64
	Timeline uint32
	// WALPosition is the server's flushed WAL position.
	WALPosition pglogrepl.LSN
	// Switches are the ends of the earlier timelines of the server's
	// history (TIMELINE_HISTORY), oldest first; none on timeline 1.
	Switches []Switch
}

// Switch is the end of a timeline: its WAL up to End belongs to the
// history of every later timeline that descends from it.
type Switch struct {
	Timeline uint32
	End      pglogrepl.LSN
}

// Identity is the history's name to record with checkpoints, in epoch.
func (s Server) Identity(epoch uint32) checkpoint.History {
	return checkpoint.History{SystemID: s.SystemID, Timeline: s.Timeline, Epoch: epoch}
}

// Conn runs the replication commands that identify a server's history.
type Conn interface {
	IdentifySystem(ctx context.Context) (pglogrepl.IdentifySystemResult, error)
	TimelineHistory(ctx context.Context, timeline int32) ([]byte, error)
}

// Identify reads the server's identity, timeline, WAL position and
// timeline history.
func Identify(ctx context.Context, conn Conn) (Server, error) {
	id, err := conn.IdentifySystem(ctx)
	if err != nil {
		return Server{}, err
	}
	sys, err := strconv.ParseUint(id.SystemID, 10, 64)
	if err != nil {
		return Server{}, fmt.Errorf("IDENTIFY_SYSTEM: system identifier %q: %w", id.SystemID, err)
	}
	s := Server{SystemID: sys, Timeline: uint32(id.Timeline), WALPosition: id.XLogPos}
	if id.Timeline > 1 {
		content, err := conn.TimelineHistory(ctx, id.Timeline)
		if err != nil {
			return Server{}, err
		}
		if s.Switches, err = ParseTimelineHistory(content); err != nil {
			return Server{}, fmt.Errorf("TIMELINE_HISTORY %d: %w", id.Timeline, err)
		}
	}
	return s, nil
}

// ParseTimelineHistory parses a timeline history file: one line per
// earlier timeline, "<timeline>\t<switch point>\t<reason>", and comments.
func ParseTimelineHistory(content []byte) ([]Switch, error) {
	var out []Switch
	sc := bufio.NewScanner(bytes.NewReader(content))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: %q is not \"timeline switchpoint reason\"", n, line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: timeline %q: %w", n, f[0], err)
		}
		end, err := pglogrepl.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: switch point %q: %w", n, f[1], err)
		}
		out = append(out, Switch{Timeline: uint32(tli), End: end})
	}
	return out, sc.Err()
}

// ErrBreak marks the errors of a history that does not continue (Break).
var ErrBreak = errors.New("Postgres does not continue the history of the ClickHouse checkpoint")

// Reasons of a Break.
const (
	ReasonSystem      = "other-system" // another Postgres cluster
	ReasonTimeline    = "timeline"     // a timeline that does not hold the checkpoint
	ReasonRollback    = "rollback"     // the server's WAL is behind the checkpoint
	ReasonDiverged    = "diverged"     // the WAL at the checkpoint holds other transactions
	ReasonSlotMissing = "slot-missing"
	ReasonSlotLost    = "slot-lost"
	ReasonSlotAhead   = "slot-ahead" // the slot confirmed more than ClickHouse holds
)

// Break is a server whose history does not continue the checkpoint's:
// streaming on would write another history's changes over the rows of the
// first, and skip some as done. Every table must be copied again.
type Break struct {
	Reason     string
	Slot       string
	Checkpoint pglogrepl.LSN
	Detail     string
	// Err is the underlying error, if any.
	Err error
}

func (b *Break) Error() string {
	return fmt.Sprintf("%s (%s; slot %s, checkpoint %s): %s; ClickHouse holds changes that this server's history does not have "+
		"or lacks some it has, so every table must be copied again: run `replicator resync --all`, which does it while readers "+
		"keep the previous copy of each table (the daemon does it by itself with postgres.recovery = \"auto\")",
		ErrBreak, b.Reason, b.Slot, b.Checkpoint, b.Detail)
}

func (b *Break) Unwrap() []error {
	if b.Err != nil {
		return []error{ErrBreak, b.Err}
	}
	return []error{ErrBreak}
}

// Check decides, at connect and before anything is streamed or
// acknowledged, whether the server continues the history of checkpoint
// cp (invariant 12): the same system; a timeline that is the
// checkpoint's, or descends from it after the checkpoint; a WAL position
// at or past the checkpoint; a slot that exists, is not lost and has not
// confirmed past the checkpoint (a slot behind it is a continuation: a
// daemon stopped between its checkpoint and its acknowledgement, or a
// slot synced to a standby that lags). slot and slotErr are the slot's
// row and the error of reading it. A checkpoint without a recorded
// history (an earlier version's) is checked only by its position.
//
// A checkpoint can pass Check on a server brought back to an earlier
// state whose WAL has grown past it again; the Witness of the stream
// decides that case.
func Check(cp checkpoint.Position, srv Server, slot postgres.Slot, slotErr error) error {
	brk := func(reason, format string, args ...any) error {
		return &Break{Reason: reason, Slot: slot.Name, Checkpoint: cp.LSN, Detail: fmt.Sprintf(format, args...)}
	}
	h := cp.History
	if h.Known() && srv.SystemID != h.SystemID {
		return brk(ReasonSystem, "the server is another Postgres cluster (system identifier %d; the checkpoint was taken on %d)",
			srv.SystemID, h.SystemID)
	}
	switch {
	case !h.Known() || srv.Timeline == h.Timeline:
		if srv.WALPosition < cp.LSN {
			return brk(ReasonRollback, "the server's WAL ends at %s, before the checkpoint, on timeline %d: it was brought back "+
				"to an earlier state (a restored backup or data directory)", srv.WALPosition, srv.Timeline)
		}
	case srv.Timeline < h.Timeline:
		return brk(ReasonTimeline, "the server is on timeline %d, older than the checkpoint's timeline %d: it was brought back "+
			"to an earlier state", srv.Timeline, h.Timeline)
	default:
		end, ok := switchOf(srv.Switches, h.Timeline)
		if !ok {
			return brk(ReasonTimeline, "the server's timeline %d does not descend from the checkpoint's timeline %d",
				srv.Timeline, h.Timeline)
		}
		// A commit record that starts below the switch point was
		// replayed whole; a position (the end of a record) may equal it.
		if cp.LSN > end || cp.Commit && cp.LSN == end {
			return brk(ReasonTimeline, "the server was promoted: its timeline %d left the checkpoint's timeline %d at %s, "+
				"before the checkpoint, so transactions that ClickHouse holds are not in its history (a standby that "+
				"had not received them)", srv.Timeline, h.Timeline, end)
		}
	}
	if errors.Is(slotErr, postgres.ErrSlotMissing) {
		return &Break{Reason: ReasonSlotMissing, Slot: slot.Name, Checkpoint: cp.LSN, Err: slotErr,
			Detail: "the replication slot does not exist on this server (dropped, or lost with a failover to a standby " +
				"that does not sync slots), so the changes since the checkpoint are lost to it"}
	}
	if slotErr != nil {
		return slotErr
	}
	if slot.Lost() {
		return &Break{Reason: ReasonSlotLost, Slot: slot.Name, Checkpoint: cp.LSN, Err: slot.LostError(),
			Detail: "Postgres invalidated the replication slot, so changes since the checkpoint may be lost to it"}
	}
	err := slot.CheckResume(cp.LSN)
	var inUse *postgres.SlotInUseError
	switch {
	case err == nil || errors.As(err, &inUse):
		return err
	case slot.Plugin == "pgoutput" && slot.ConfirmedFlushLSN > cp.LSN:
		return &Break{Reason: ReasonSlotAhead, Slot: slot.Name, Checkpoint: cp.LSN, Err: err,
			Detail: fmt.Sprintf("the slot's confirmed_flush_lsn %s is beyond the ClickHouse checkpoint: ClickHouse lost changes "+
				"that the slot no longer holds (the checkpoint table was dropped or restored from an older backup)", slot.ConfirmedFlushLSN)}
	}
	return err
}

// switchOf returns where timeline tli ended in switches.
func switchOf(switches []Switch, tli uint32) (pglogrepl.LSN, bool) {
	for _, s := range switches {
		if s.Timeline == tli {
			return s.End, true
		}
	}
	return 0, false
}

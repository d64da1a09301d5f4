package pipeline

import (
	"context"
	"time"

	"github.com/replicator/replicator/checkpoint"
)

// flight is a flush under way: its rows are being written, then its
// checkpoint saved, while the applier maps and buffers the next changes.
// At most one flight is up; it lands (land) on the applier's goroutine,
// which alone moves the durable position, so nothing is acknowledged
// before ClickHouse acknowledged the checkpoint.
type flight struct {
	done   chan struct{}
	cancel context.CancelFunc
	err    error // set before done is closed

	start time.Time
	poll  time.Time     // when Tick looks again whether it landed
	took  time.Duration // set before done is closed
	rows  int
	bytes int                  // the buffer's size when taken
	save  *checkpoint.Position // the checkpoint saved after the rows; nil: none
}

// flightPoll is how often the stream loop looks whether an idle flight
// landed (while changes arrive, every change looks).
const flightPoll = 5 * time.Millisecond

// flush takes the buffered rows and starts writing them, then saving the
// checkpoint of the newest complete transaction; a flush under way lands
// first. A checkpoint never points inside a transaction: rows of a
// transaction still being received are written, but not checkpointed.
func (a *applier) flush(ctx context.Context) error {
	if err := a.land(ctx, true); err != nil {
		return err
	}
	start := time.Now()
	a.lastFlush = start
	_, bytes, _ := a.writer.Size()
	rows, write := a.writer.Take()
	var save *checkpoint.Position
	if a.pos.pending && !a.hold.held() {
		pos := a.pos.take()
		save = &pos
	}
	a.since = time.Time{}
	var open time.Time
	if a.pos.inTxn {
		// The open transaction is not stored until its commit is checkpointed.
		open = a.pos.commitTime
		if rows > 0 {
			a.markBuffered()
		}
	}
	a.rep.taken(open)
	// The write outlives a cancelled session context: a soft stop lands it
	// under the shutdown deadline (see drain); abort cancels it.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight{done: make(chan struct{}), cancel: cancel, start: start, poll: start.Add(flightPoll),
		rows: rows, bytes: bytes, save: save}
	a.fly = f
	go func() {
		defer close(f.done)
		defer func() { f.took = time.Since(start) }()
		defer cancel()
		if rows > 0 {
			a.faults.beforeInsert(fctx)
		}
		if f.err = write(fctx); f.err != nil {
			return
		}
		if rows > 0 {
			a.faults.afterInsert()
		}
		if save != nil {
			if f.err = a.store.Save(fctx, *save); f.err != nil {
				return
			}
			a.faults.afterCheckpoint()
		}
	}()
	return nil
}

// drain flushes and waits until the flush landed.
func (a *applier) drain(ctx context.Context) error {
	if err := a.flush(ctx); err != nil {
		return err
	}
	return a.land(ctx, true)
}

// land completes the flight that is up, if it has ended or, with wait,
// once it ends (or ctx does: an error, the flight still up). A failed flight
// fails every later call: the session ends and the next one resumes from
// the durable checkpoint.
func (a *applier) land(ctx context.Context, wait bool) error {
	if a.failed != nil {
		return a.failed
	}
	f := a.fly
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
	default:
		if !wait {
			return nil
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			// The flight goes on: a soft stop lands it (drain), an error
			// ends it (abort).
			return ctx.Err()
		}
	}
	a.fly = nil
	if f.err != nil {
		a.failed = f.err
		return f.err
	}
	if f.save != nil {
		a.pos.checkpointed(*f.save)
		a.rep.checkpointed(a.pos.durable.LSN, a.pos.asOf())
	}
	a.rep.invalid(a.reg.tables)
	a.rep.stored()
	a.rep.flushed(f.rows, f.took, a.pos.durable.LSN)
	a.log.Debug("flushed", "rows", f.rows, "checkpoint", a.pos.durable.LSN, "duration", f.took.String())
	if f.rows > 0 || !a.pos.inTxn {
		return a.rep.observe(ctx, true, a.pos.walEnd, a.pos.durable.LSN)
	}
	return nil
}

// abort cancels the flight that is up and waits until it ended. Nothing it
// did moves the durable position.
func (a *applier) abort() {
	if f := a.fly; f != nil {
		f.cancel()
		<-f.done
		a.fly = nil
	}
}

// flying returns the size of the buffer the flight up took (0: none).
func (a *applier) flying() int {
	if a.fly == nil {
		return 0
	}
	return a.fly.bytes
}

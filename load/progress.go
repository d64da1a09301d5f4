package load

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// logEvery is how often the copy logs its progress.
const logEvery = 5 * time.Second

// progress counts the rows and chunks copied per table, logs a line per
// table every few seconds and, on a terminal, draws a bar per table.
type progress struct {
	log    hclog.Logger
	bars   *mpb.Progress // nil without a terminal
	mu     sync.Mutex
	tables map[string]*tableProgress
	order  []string
}

type tableProgress struct {
	rows     atomic.Int64
	estimate int64
	chunks   int
	done     atomic.Int64
	start    time.Time
	bar      *mpb.Bar
}

// newProgress returns a progress that draws bars on term when it is not nil.
func newProgress(ctx context.Context, log hclog.Logger, term *Terminal) *progress {
	p := &progress{log: log, tables: make(map[string]*tableProgress)}
	if term != nil {
		p.bars = term.start(ctx)
	}
	return p
}

// table registers a table's copy: chunks to copy, of which done are done
// already, and the estimated rows still to copy.
func (p *progress) table(source string, chunks, done int, estimate int64) {
	tp := &tableProgress{estimate: max(estimate, 1), chunks: chunks, start: time.Now()}
	tp.done.Store(int64(done))
	if p.bars != nil {
		tp.bar = p.bars.AddBar(tp.estimate,
			mpb.PrependDecorators(decor.Name(source, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d rows  chunks %d/%d", tp.rows.Load(), tp.done.Load(), tp.chunks)
				}, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.AverageSpeed(0, "%.0f rows/s", decor.WCSyncSpace),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done")))
	}
	p.mu.Lock()
	p.tables[source] = tp
	p.order = append(p.order, source)
	p.mu.Unlock()
}

func (p *progress) get(source string) *tableProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tables[source]
}

// add counts n rows of source as stored.
func (p *progress) add(source string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := p.tables[source]
	if tp == nil {
		return
	}
	rows := tp.rows.Add(int64(n))
	if tp.bar != nil {
		if rows >= tp.estimate {
			// The estimate was low: keep the bar short of complete until
			// the last chunk is done.
			tp.estimate = rows + rows/10 + 1
			tp.bar.SetTotal(tp.estimate, false)
		}
		tp.bar.IncrBy(n)
	}
}

// chunkDone counts one chunk of source as done.
func (p *progress) chunkDone(source string) {
	tp := p.get(source)
	if tp == nil {
		return
	}
	if tp.done.Add(1) == int64(tp.chunks) && tp.bar != nil {
		tp.bar.SetTotal(-1, true)
	}
}

// run logs a line for every table still copying every logEvery, until ctx
// ends.
func (p *progress) run(ctx context.Context) {
	tick := time.NewTicker(logEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.mu.Lock()
		for _, source := range p.order {
			tp := p.tables[source]
			done := tp.done.Load()
			if done >= int64(tp.chunks) {
				continue
			}
			rows := tp.rows.Load()
			secs := time.Since(tp.start).Seconds()
			rate := float64(rows) / max(secs, 1e-9)
			args := []any{"table", source, "rows", rows, "rows_per_second", int64(rate),
				"chunks", fmt.Sprintf("%d/%d", done, tp.chunks)}
			if left := tp.estimate - rows; left > 0 && rate > 0 {
				args = append(args, "eta", (time.Duration(float64(left)/rate) * time.Second).Round(time.Second))
			}
			p.log.Info("copying", args...)
		}
		p.mu.Unlock()
	}
}

// wait lets the bars draw their final state.
func (p *progress) wait() {
	if p.bars == nil {
		return
	}
	p.mu.Lock()
	for _, tp := range p.tables {
		if tp.bar != nil && !tp.bar.Completed() {
			tp.bar.Abort(false)
		}
	}
	p.mu.Unlock()
	p.bars.Wait()
}

// Terminal is the output of a setup run on a terminal: progress bars,
// with log lines printed above them while they are drawn. Use it as the
// logger's output.
type Terminal struct {
	out  io.Writer
	bars atomic.Pointer[mpb.Progress]
}

// NewTerminal returns a terminal that draws on out.
func NewTerminal(out io.Writer) *Terminal { return &Terminal{out: out} }

func (t *Terminal) start(ctx context.Context) *mpb.Progress {
	p := mpb.NewWithContext(ctx, mpb.WithOutput(t.out), mpb.WithWidth(32), mpb.WithRefreshRate(250*time.Millisecond))
	t.bars.Store(p)
	return p
}

// Write prints p above the bars while they are drawn, else directly.
func (t *Terminal) Write(p []byte) (int, error) {
	if bars := t.bars.Load(); bars != nil {
		if n, err := bars.Write(p); err == nil {
			return n, nil
		}
	}
	return t.out.Write(p)
}

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
	every  time.Duration // how often run logs
	bars   *mpb.Progress // nil without a terminal
	mu     sync.Mutex
	tables map[string]*tableProgress
	order  []string
}

type tableProgress struct {
	rows   atomic.Int64
	chunks int
	done   atomic.Int64
	start  time.Time
	bar    *mpb.Bar
	// Guarded by progress.mu: the estimate of the rows the copy writes,
	// from the rows per page of the chunks copied whole so far (the
	// planner's figure before the first).
	estimate    int64
	pagesLeft   int64
	rowsPerPage float64
	wholeRows   int64
	wholePages  int64
}

// newProgress returns a progress that draws bars on term when it is not nil.
func newProgress(ctx context.Context, log hclog.Logger, term *Terminal) *progress {
	p := &progress{log: log, every: logEvery, tables: make(map[string]*tableProgress)}
	if term != nil {
		p.bars = term.start(ctx)
	}
	return p
}

// table registers a table's copy: chunks in all, of which done need
// nothing, pages to copy whole, and the planner's rows per page (0:
// unknown).
func (p *progress) table(source string, chunks, done int, pages int64, rowsPerPage float64) {
	tp := &tableProgress{chunks: chunks, start: time.Now(), pagesLeft: pages, rowsPerPage: rowsPerPage}
	tp.done.Store(int64(done))
	tp.estimate = int64(float64(pages) * rowsPerPage)
	if p.bars != nil {
		tp.bar = p.bars.AddBar(0,
			mpb.PrependDecorators(decor.Name(source, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d rows  chunks %d/%d", tp.rows.Load(), tp.done.Load(), tp.chunks)
				}, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.AverageSpeed(0, "%.0f rows/s", decor.WCSyncSpace),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done")))
		tp.bar.SetTotal(max(tp.estimate, 1), false)
		if done == chunks {
			tp.bar.SetTotal(-1, true)
		}
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
	if rows >= tp.estimate {
		// Rows the estimate missed: keep the bar short of its end
		// until the last chunk is done.
		tp.estimate = rows + rows/10 + 1
		if tp.bar != nil {
			tp.bar.SetTotal(tp.estimate, false)
		}
	}
	if tp.bar != nil {
		tp.bar.IncrBy(n)
	}
}

// chunkDone counts one chunk of source as done. A chunk copied whole
// reports its pages and rows, which refine the estimate.
func (p *progress) chunkDone(source string, pages, rows int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := p.tables[source]
	if tp == nil {
		return
	}
	if pages > 0 {
		tp.pagesLeft = max(tp.pagesLeft-pages, 0)
		tp.wholeRows += rows
		tp.wholePages += pages
		tp.rowsPerPage = float64(tp.wholeRows) / float64(tp.wholePages)
		tp.estimate = max(tp.rows.Load()+int64(float64(tp.pagesLeft)*tp.rowsPerPage), 1)
		if tp.bar != nil {
			tp.bar.SetTotal(tp.estimate, false)
		}
	}
	if tp.done.Add(1) == int64(tp.chunks) && tp.bar != nil {
		tp.bar.SetTotal(-1, true)
	}
}

// run logs a line for every table still copying every p.every, until ctx
// ends.
func (p *progress) run(ctx context.Context) {
	tick := time.NewTicker(p.every)
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
	p := mpb.NewWithContext(ctx, mpb.WithOutput(t.out), mpb.WithAutoRefresh(), mpb.WithWidth(32),
		mpb.WithRefreshRate(250*time.Millisecond))
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

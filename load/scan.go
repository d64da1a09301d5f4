package load

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// Adjoining chunks of a relation copied whole are read by one scan instead
// of one TID range scan per chunk and worker; the workers share the
// writing. Postgres reads a large table's
// sequential scan through a small ring of buffers; TID range scans take
// buffers from the whole cache, and several of them at once evicting
// each other's pages cost Postgres about twice the CPU per row of a plain
// COPY (5,000,000 rows, 128 MB of shared buffers: 4.9–5.2 s against 2.7 s
// for one scan), and push the primary's working set out of its cache.
// The scan's rows arrive by ascending page, so each chunk's rows are
// complete when the first row past its pages arrives: chunks are recorded
// as done as before, and a copy that stops resumes by chunks.

// scans takes out of jobs the runs of more than one chunk of a relation
// that are copied whole and adjoin: chunks in page order, each starting
// where the one before ends. It returns the other jobs and the runs. A
// run that covers the relation from its first page to its open end is a
// plain sequential scan; a shorter one (the chunks left by a copy that
// stopped) is one TID range scan, still a single reader.
func scans(jobs []job) (rest []job, out [][]job) {
	byRel := map[string][]job{}
	var order []string
	for _, j := range jobs {
		key := j.table.Source + "\x00" + j.chunk.Relation
		if _, ok := byRel[key]; !ok {
			order = append(order, key)
		}
		byRel[key] = append(byRel[key], j)
	}
	for _, key := range order {
		js := byRel[key]
		slices.SortStableFunc(js, func(a, b job) int { return cmp.Compare(pageKey(a), pageKey(b)) })
		for len(js) > 0 {
			n := 1
			for n < len(js) && js[n-1].since == nil && js[n].since == nil && js[n-1].chunk.EndPage != 0 &&
				js[n].chunk.FirstPage == js[n-1].chunk.EndPage {
				n++
			}
			if n > 1 {
				out = append(out, js[:n])
			} else {
				rest = append(rest, js[0])
			}
			js = js[n:]
		}
	}
	return rest, out
}

// pageKey orders a relation's chunks by page, the open-ended one last.
func pageKey(j job) uint64 {
	k := uint64(j.chunk.FirstPage) << 1
	if j.chunk.EndPage == 0 {
		k |= 1
	}
	return k
}

// errPageOrder is a scan whose rows did not arrive by ascending page (a
// table access method that reads otherwise).
var errPageOrder = errors.New("rows out of page order")

// scanQuery is the SELECT of a scan of the chunks js: the mapped columns
// and the row's ctid, of the relation alone, from the first chunk's first
// page to the last chunk's end.
func scanQuery(js []job) string {
	first, last := js[0].chunk, js[len(js)-1].chunk
	span := first
	span.EndPage = last.EndPage
	return selectQuery(js[0].table, span, nil, ", ctid")
}

// ctidPage returns the page of a binary tid: a 4-byte page number and a
// 2-byte line pointer.
func ctidPage(field []byte) (uint32, error) {
	if len(field) != 6 {
		return 0, fmt.Errorf("ctid of %d bytes, want 6", len(field))
	}
	return binary.BigEndian.Uint32(field), nil
}

// scanned is a block of one chunk's rows, read by a scan.
type scanned struct {
	block *mapping.Block
	chunk int
}

// scanState counts, per chunk of a scan, the blocks read and not yet
// written, and whether the scan has read past the chunk.
type scanState struct {
	mu      sync.Mutex
	pending []int
	read    []bool
	rows    []uint64
	saved   []bool
}

// settle marks chunk i's block written (wrote) or the chunk read (passed)
// and reports whether the chunk is now complete: read and all written.
// Only one call reports a chunk complete.
func (s *scanState) settle(i int, wrote, passed bool, rows uint64) (complete bool, total uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if wrote {
		s.pending[i]--
		s.rows[i] += rows
	}
	if passed {
		s.read[i] = true
	}
	if s.read[i] && s.pending[i] == 0 && !s.saved[i] {
		s.saved[i] = true
		return true, s.rows[i]
	}
	return false, 0
}

// scan copies the chunks js (a run, see scans) with one scan:
// this goroutine decodes the rows into blocks, which the configured number
// of workers write to ClickHouse over their own connections. Each chunk is
// recorded as done once its rows are written. When the rows do not
// arrive by ascending page, or the relation is not a heap, it returns
// errPageOrder and all the jobs.
func (c *copier) scan(ctx context.Context, js []job) (left []job, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := js[0].table
	pg, err := postgres.ConnectForCopy(ctx, c.cfg.Postgres.DSN)
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	snap, err := pg.BeginSnapshot(ctx, c.snap.name)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	if err := snap.Lock(ctx, []string{t.Source}); err != nil {
		return nil, err
	}
	if err := snap.InPageOrder(ctx); err != nil {
		return nil, err
	}
	// Only a heap's scan is known to return its rows by page.
	if heap, err := snap.Heap(ctx, js[0].chunk.Relation); err != nil || !heap {
		if err == nil {
			err = errPageOrder
		}
		return js, err
	}

	state := &scanState{pending: make([]int, len(js)), read: make([]bool, len(js)), rows: make([]uint64, len(js)),
		saved: make([]bool, len(js))}
	// complete records chunk i as done once it is read and written.
	complete := func(i int, wrote, passed bool, rows uint64) error {
		if ok, total := state.settle(i, wrote, passed, rows); ok {
			return c.chunkDone(ctx, js[i], total)
		}
		return nil
	}
	writers := max(c.cfg.Load.Workers, 1)
	free := make(chan *mapping.Block, writers+1)
	for range writers + 1 {
		free <- t.NewBlock()
	}
	full := make(chan scanned)
	version := uint64(c.snap.lsn - 1)
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.writeScanned(ctx, t, version, full, free, complete, cancel)
		}()
	}

	cur, last := 0, uint32(0)
	b := <-free
	// send hands the block being filled to the writers and takes a free one.
	send := func() error {
		if b.Len() == 0 {
			return nil
		}
		state.mu.Lock()
		state.pending[cur]++
		state.mu.Unlock()
		select {
		case full <- scanned{b, cur}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		select {
		case b = <-free:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	n := len(t.Columns)
	err = snap.CopyBinary(ctx, scanQuery(js), func(fields [][]byte) error {
		page, err := ctidPage(fields[n])
		if err != nil {
			return err
		}
		if page < last {
			return errPageOrder
		}
		last = page
		for end := js[cur].chunk.EndPage; end != 0 && page >= end; end = js[cur].chunk.EndPage {
			if cur == len(js)-1 {
				return fmt.Errorf("a row of page %d, past the scan's last page %d", page, end-1)
			}
			if err := send(); err != nil {
				return err
			}
			if err := complete(cur, false, true, 0); err != nil {
				return err
			}
			cur++
		}
		if err := b.AppendBinary(fields[:n]); err != nil {
			return mapping.NewCopyRowError(t, fields[:n], c.snap.lsn, err)
		}
		if b.Bytes() >= blockBytes {
			return send()
		}
		return nil
	})
	if err == nil {
		err = send()
	}
	for i := cur; err == nil && i < len(js); i++ {
		err = complete(i, false, true, 0)
	}
	close(full)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		// A writer's error, which cancelled the read: the read's own
		// error then only says so.
		err = cause
	}
	if errors.Is(err, errPageOrder) {
		// Every chunk is copied again: a chunk recorded as done may miss a
		// row that came after a row of a later page.
		return js, err
	}
	if err != nil {
		var re *mapping.RowError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("copy %s (%s) in one scan: %w", t.Source, js[0].chunk.Relation, err)
	}
	return nil, snap.Commit(ctx)
}

// writeScanned writes the blocks of full to ClickHouse over its own
// connection, returns each to free, and settles its chunk. Its first
// error cancels the scan at once (fail); it then only returns the blocks.
func (c *copier) writeScanned(ctx context.Context, t *mapping.Table, version uint64, full <-chan scanned, free chan<- *mapping.Block,
	complete func(i int, wrote, passed bool, rows uint64) error, fail context.CancelCauseFunc) {
	client, err := sink.Open(ctx, c.cfg.ClickHouse)
	if err != nil {
		fail(err)
	} else {
		defer client.Close()
	}
	for s := range full {
		rows := s.block.Len()
		if err == nil {
			if err = client.InsertColumns(ctx, t, s.block.Columns(version, 0)); err == nil {
				c.progress.add(t.Source, rows)
				err = complete(s.chunk, true, false, uint64(rows))
			}
			if err != nil {
				fail(err)
			}
		}
		s.block.Reset()
		free <- s.block
	}
}

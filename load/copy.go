package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// blockBytes bounds the rows of one INSERT. A worker decodes into one
// block while the previous one is written; with the driver's copy of the
// block being written and its compressed form it holds about four times
// this.
const blockBytes = 8 << 20

// MemoryBound is the memory a copy with these options holds: per worker a
// block, the driver's copy of it and its compressed form, and a reserve.
func MemoryBound(o config.LoadOptions) uint64 {
	return uint64(o.Workers)*4*blockBytes + 64<<20
}

// job is one chunk to copy: whole, or with since only the row versions
// created since the snapshot it was copied in.
type job struct {
	table *mapping.Table
	chunk checkpoint.Chunk
	since *xidWindow
	// pages is the chunk's size when it is copied whole, for progress.
	pages int64
	// fresh marks a chunk planned by this run: no earlier run wrote any
	// of its rows.
	fresh bool
}

// snapshot is an exported snapshot and the consistent point of the slot
// whose creation exported it: rows read in it get version lsn − 1.
type snapshot struct {
	name string
	lsn  pglogrepl.LSN
	// xmin and xmax of the snapshot, as 64-bit transaction ids.
	xmin, xmax uint64
}

// copier copies chunks with several workers, all in one snapshot.
type copier struct {
	cfg      config.Config
	store    *checkpoint.Store
	snap     snapshot
	tables   []*mapping.Table
	progress *progress
	// inexact holds the sources whose copy must not count as exact (see
	// checkpoint.Exact) although it is read whole in one snapshot: a
	// daemon may have written rows of the table into its target while it
	// was emptied, and only the tombstones of the changes below the
	// copy's horizon delete those rows again.
	inexact map[string]bool
	log     hclog.Logger
}

// run copies every job and records each chunk as done in the snapshot once
// its rows are stored. The first error stops every worker.
func (c *copier) run(ctx context.Context, jobs []job) error {
	jobs, scans := scans(jobs)
	if len(scans) > 0 {
		// Tables are scanned one after another: one transaction holds the
		// lock on every table (see worker) until the copy ends.
		held, err := c.lock(ctx)
		if err != nil {
			return err
		}
		defer held()
	}
	for _, s := range scans {
		left, err := c.scan(ctx, s)
		if errors.Is(err, errPageOrder) {
			// Copied by chunks instead; the rows written are written
			// again, with the same version.
			c.log.Warn("the table is not a heap or its scan returned rows out of page order; copying its chunks one by one",
				"table", s[0].table.Source, "relation", s[0].chunk.Relation)
			jobs = append(jobs, left...)
			continue
		}
		if err != nil {
			return err
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan job)
	var wg sync.WaitGroup
	workers := min(c.cfg.Load.Workers, len(jobs))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.worker(ctx, queue); err != nil {
				cancel(err)
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case queue <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// lock takes the lock a worker takes on every table in a transaction of
// the snapshot, and returns the function that ends it.
func (c *copier) lock(ctx context.Context) (release func(), err error) {
	pg, err := postgres.Connect(ctx, c.cfg.Postgres.DSN)
	if err != nil {
		return nil, err
	}
	snap, err := pg.BeginSnapshot(ctx, c.snap.name)
	if err != nil {
		pg.Close()
		return nil, err
	}
	sources := make([]string, len(c.tables))
	for i, t := range c.tables {
		sources[i] = t.Source
	}
	if err := snap.Lock(ctx, sources); err != nil {
		snap.Close()
		pg.Close()
		return nil, err
	}
	return func() { snap.Close(); pg.Close() }, nil
}

// worker copies the jobs it receives over its own connections, in one
// transaction that imports the snapshot.
func (c *copier) worker(ctx context.Context, jobs <-chan job) error {
	client, err := sink.Open(ctx, c.cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	pg, err := postgres.ConnectForCopy(ctx, c.cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer pg.Close()
	snap, err := pg.BeginSnapshot(ctx, c.snap.name)
	if err != nil {
		return err
	}
	defer snap.Close()
	sources := make([]string, len(c.tables))
	for i, t := range c.tables {
		sources[i] = t.Source
	}
	if err := snap.Lock(ctx, sources); err != nil {
		return err
	}
	blocks := make(map[*mapping.Table][2]*mapping.Block)
	for j := range jobs {
		bs, ok := blocks[j.table]
		if !ok {
			bs = [2]*mapping.Block{j.table.NewBlock(), j.table.NewBlock()}
			blocks[j.table] = bs
		}
		if err := c.copyChunk(ctx, snap, client, bs, j); err != nil {
			return err
		}
	}
	return snap.Commit(ctx)
}

// copyChunk copies one chunk and records it as done. It decodes into one
// block while the previous one is written (blocks holds the two blocks).
func (c *copier) copyChunk(ctx context.Context, snap *postgres.Snapshot, client *sink.Client, blocks [2]*mapping.Block, j job) error {
	t := j.table
	version := uint64(c.snap.lsn - 1)
	free := make(chan *mapping.Block, len(blocks))
	for _, b := range blocks {
		b.Reset()
		free <- b
	}
	full := make(chan *mapping.Block)
	written := make(chan error, 1)
	var failed atomic.Bool
	var rows uint64
	go func() {
		var err error
		for b := range full {
			if err == nil {
				if err = client.InsertColumns(ctx, t, b.Columns(version, 0)); err == nil {
					c.progress.add(t.Source, b.Len())
					rows += uint64(b.Len())
				} else {
					failed.Store(true)
				}
			}
			b.Reset()
			free <- b
		}
		written <- err
	}()
	b := <-free
	err := snap.CopyBinary(ctx, chunkQuery(t, j.chunk, j.since), func(fields [][]byte) error {
		if err := b.AppendBinary(fields); err != nil {
			return mapping.NewCopyRowError(t, fields, c.snap.lsn, err)
		}
		if b.Bytes() < blockBytes {
			return nil
		}
		if failed.Load() {
			return errWriteFailed
		}
		full <- b
		b = <-free
		return nil
	})
	if err == nil && b.Len() > 0 {
		full <- b
	}
	close(full)
	if werr := <-written; werr != nil {
		err = werr
	}
	if err != nil {
		var re *mapping.RowError
		if errors.As(err, &re) {
			return err
		}
		return fmt.Errorf("copy %s chunk %d: %w", t.Source, j.chunk.Chunk, err)
	}
	return c.chunkDone(ctx, j, rows)
}

// chunkDone records the chunk of j as copied in the snapshot, with the
// rows its copy wrote.
func (c *copier) chunkDone(ctx context.Context, j job, rows uint64) error {
	done := j.chunk
	if j.since == nil {
		done.Rows, done.Whole = rows, 0
		if j.fresh && !c.inexact[j.table.Source] {
			done.Whole = c.snap.lsn
		}
	}
	done.LSN, done.Xmin = c.snap.lsn, c.snap.xmin
	if err := c.store.SaveChunks(ctx, done); err != nil {
		return err
	}
	c.progress.chunkDone(j.table.Source, j.pages, int64(rows))
	return nil
}

// errWriteFailed stops a chunk's read after a write of its rows failed;
// the write's error is returned.
var errWriteFailed = errors.New("write failed")

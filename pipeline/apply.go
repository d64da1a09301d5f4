package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// MappingError is a change that cannot be written to ClickHouse. It names the
// table, column, key and LSN; the replicator stops on it and acknowledges
// nothing at or after it.
type MappingError struct {
	Table  string
	Column string
	Key    string
	LSN    pglogrepl.LSN
	Err    error
}

func (e *MappingError) Error() string {
	s := "cannot map change of table " + e.Table
	if e.Column != "" {
		s += " column " + e.Column
	}
	return fmt.Sprintf("%s key %s in transaction %s: %v", s, e.Key, e.LSN, e.Err)
}

func (e *MappingError) Unwrap() error { return e.Err }

// newMappingError describes a tuple of t that failed to map in the
// transaction (or copy) at lsn, naming the column when the mapping did.
func newMappingError(t *mapping.Table, vals []mapping.Value, lsn pglogrepl.LSN, err error) *MappingError {
	me := &MappingError{Table: t.Source, Key: t.KeyOf(vals), LSN: lsn, Err: err}
	var ce *mapping.ColumnError
	if errors.As(err, &ce) {
		me.Column, me.Err = ce.Column, ce.Err
	}
	return me
}

// applier is the replication.Handler that maps changes, buffers them in a
// sink.Writer, and after each flush saves a checkpoint. Its durable position
// is the newest saved checkpoint.
type applier struct {
	log      hclog.Logger
	client   *sink.Client
	caps     mapping.Caps
	writer   *sink.Writer
	store    *checkpoint.Store
	maxRows  int
	maxDelay time.Duration
	idleGap  time.Duration

	index   map[string]int // source name -> table index
	specs   []mapping.TableSpec
	tables  []*mapping.Table
	targets []targetSchema
	rels    map[uint32]int // relation id -> table index, -1 for unconfigured

	resume  checkpoint.Position // transactions done before this session
	durable checkpoint.Position // newest saved checkpoint

	inTxn      bool
	skip       bool
	version    pglogrepl.LSN
	commitTime time.Time
	complete   checkpoint.Position // newest transaction fully buffered
	pending    bool                // complete is newer than durable
	since      time.Time           // when the buffer became non-empty
	lastIdle   time.Time

	unchanged []int
	stats     stats

	metrics     *metrics.Metrics
	opCounters  [][3]prometheus.Counter // per table: insert, update, delete
	walEnd      pglogrepl.LSN           // latest keepalive WAL end
	idlePos     pglogrepl.LSN           // LSN of the newest non-transactional logical message
	faults      faults
	unstored    time.Time // commit time of the oldest received, unstored transaction
	lastSummary time.Time
	summaryAt   stats
	lastProg    time.Time
}

type targetSchema struct {
	names, types []string
}

type stats struct {
	changes, txns, flushes, rows uint64
}

// Lag returns the age of the oldest committed change received and not yet
// stored in ClickHouse; 0 when everything received is stored.
func (a *applier) Lag(now time.Time) time.Duration {
	if a.unstored.IsZero() {
		return 0
	}
	return max(now.Sub(a.unstored), 0)
}

// observe updates the lag metrics, the progress row that `status` reads, and
// logs a summary once a minute.
// observe is called on ticks (force false: the progress row at most once a
// second) and after flushes (force true: status sees the caught-up state at
// once).
func (a *applier) observe(ctx context.Context, force bool) error {
	now := time.Now()
	lag := a.Lag(now)
	var lagBytes uint64
	if a.walEnd > a.durable.LSN {
		lagBytes = uint64(a.walEnd - a.durable.LSN)
	}
	a.metrics.SetLag(lag, lagBytes)
	if force || now.Sub(a.lastProg) >= time.Second {
		if err := a.store.SaveProgress(ctx, a.unstored); err != nil {
			return err
		}
		a.lastProg = now
	}
	if a.lastSummary.IsZero() {
		a.lastSummary, a.summaryAt = now, a.stats
	} else if d := now.Sub(a.lastSummary); d >= time.Minute {
		secs := d.Seconds()
		a.log.Info("summary", "changes_per_sec", fmt.Sprintf("%.1f", float64(a.stats.changes-a.summaryAt.changes)/secs),
			"transactions_per_sec", fmt.Sprintf("%.1f", float64(a.stats.txns-a.summaryAt.txns)/secs),
			"flushes", a.stats.flushes-a.summaryAt.flushes, "lag_seconds", fmt.Sprintf("%.3f", lag.Seconds()),
			"lag_bytes", lagBytes, "checkpoint", a.durable.LSN)
		a.lastSummary, a.summaryAt = now, a.stats
	}
	return nil
}

func (a *applier) Durable() pglogrepl.LSN { return a.durable.LSN }

func (a *applier) Deadline() time.Time {
	if a.since.IsZero() {
		return time.Time{}
	}
	return a.since.Add(a.maxDelay)
}

func (a *applier) Handle(ctx context.Context, m replication.Message) error {
	switch m := m.(type) {
	case *replication.Begin:
		if a.inTxn {
			return fmt.Errorf("begin of transaction %s inside transaction %s", m.FinalLSN, a.version)
		}
		a.inTxn, a.version, a.commitTime = true, m.FinalLSN, m.CommitTime
		a.skip = a.resume.Done(m.FinalLSN)
		if !a.skip && a.unstored.IsZero() {
			a.unstored = m.CommitTime
		}
	case *replication.Commit:
		if !a.inTxn || m.CommitLSN != a.version {
			return fmt.Errorf("commit %s without matching begin (open transaction %s)", m.CommitLSN, a.version)
		}
		a.inTxn = false
		if a.skip {
			return nil
		}
		a.stats.txns++
		if a.metrics != nil {
			a.metrics.Transactions.Inc()
		}
		a.complete = checkpoint.Position{LSN: m.CommitLSN, Commit: true, CommitTime: m.CommitTime}
		a.pending = true
		a.markBuffered()
	case *replication.Relation:
		return a.bind(m)
	case *replication.Change:
		if !a.inTxn {
			return fmt.Errorf("change of %s outside a transaction", m.Relation.QualifiedName())
		}
		if a.skip {
			return nil
		}
		if err := a.change(ctx, m); err != nil {
			return err
		}
		a.stats.changes++
		if a.metrics != nil {
			if idx := a.rels[m.Relation.ID]; idx >= 0 {
				a.opCounters[idx][opIndex(m.Op)].Inc()
			}
		}
		if a.writer.Rows() >= a.maxRows {
			return a.flush(ctx)
		}
	case *replication.Truncate:
		if !a.inTxn || a.skip {
			return nil
		}
		return a.truncate(ctx, m)
	case *replication.LogicalMessage:
		if !m.Transactional && !a.inTxn && m.LSN > a.idlePos {
			a.idlePos = m.LSN
			return a.idleCheckpoint(ctx, time.Now())
		}
	}
	return nil
}

// Tick flushes when the oldest buffered change waited max_delay, and when
// idle checkpoints the server's WAL position so that lag reads zero and
// Postgres can recycle WAL.
func (a *applier) Tick(ctx context.Context, walEnd pglogrepl.LSN) error {
	now := time.Now()
	a.walEnd = max(a.walEnd, walEnd)
	a.idlePos = max(a.idlePos, walEnd)
	if err := a.observe(ctx, false); err != nil {
		return err
	}
	if !a.since.IsZero() && !now.Before(a.since.Add(a.maxDelay)) {
		return a.flush(ctx)
	}
	return a.idleCheckpoint(ctx, now)
}

// idleCheckpoint saves, when nothing is buffered or open, the newest
// position below which every transaction has been received: the LSN of the
// newest non-transactional logical message (a heartbeat), or the WAL end of
// the newest keepalive. Postgres sends a transaction while it processes the
// transaction's commit record and advances the keepalive position (sentPtr)
// only after that, so no transaction that committed below either position
// is still to come. Acknowledging it also lets a Postgres fast shutdown
// finish: the walsender waits for the client to confirm its last position.
func (a *applier) idleCheckpoint(ctx context.Context, now time.Time) error {
	if a.inTxn || a.pending || a.writer.Rows() > 0 || a.idlePos <= a.durable.LSN || now.Sub(a.lastIdle) < a.idleGap {
		return nil
	}
	pos := checkpoint.Position{LSN: a.idlePos, Commit: false, CommitTime: a.durable.CommitTime}
	if err := a.store.Save(ctx, pos); err != nil {
		return err
	}
	a.durable, a.lastIdle = pos, now
	if a.metrics != nil {
		a.metrics.CheckpointLSN.Set(float64(pos.LSN))
	}
	return nil
}

func (a *applier) markBuffered() {
	if a.since.IsZero() {
		a.since = time.Now()
	}
}

// flush writes the buffered rows, then checkpoints the newest complete
// transaction. A checkpoint never points inside a transaction: rows of a
// transaction still being received are written, but not checkpointed.
func (a *applier) flush(ctx context.Context) error {
	start := time.Now()
	rows := a.writer.Rows()
	if rows > 0 {
		if err := a.writer.Flush(ctx); err != nil {
			return err
		}
		a.stats.flushes++
		a.stats.rows += uint64(rows)
		a.faults.afterInsert()
	}
	if a.pending {
		if err := a.store.Save(ctx, a.complete); err != nil {
			return err
		}
		a.durable = a.complete
		a.pending = false
	}
	a.since = time.Time{}
	a.unstored = time.Time{}
	if a.inTxn {
		// The open transaction is not stored until its commit is checkpointed.
		a.unstored = a.commitTime
		if rows > 0 {
			a.markBuffered()
		}
	}
	if a.metrics != nil {
		a.metrics.CheckpointLSN.Set(float64(a.durable.LSN))
		if rows > 0 {
			a.metrics.Flushes.Inc()
			a.metrics.FlushRows.Observe(float64(rows))
			a.metrics.FlushDuration.Observe(time.Since(start).Seconds())
		}
	}
	a.log.Debug("flushed", "rows", rows, "checkpoint", a.durable.LSN, "duration", time.Since(start))
	if rows > 0 || !a.inTxn {
		return a.observe(ctx, true)
	}
	return nil
}

func (a *applier) bind(rel *replication.Relation) error {
	idx, ok := a.index[rel.QualifiedName()]
	if !ok {
		a.rels[rel.ID] = -1
		return nil
	}
	t, err := mapping.Resolve(a.specs[idx], rel.Columns, a.caps)
	if err != nil {
		return fmt.Errorf("schema of %s changed: %w", rel.QualifiedName(), err)
	}
	if err := checkTarget(t, a.targets[idx]); err != nil {
		return fmt.Errorf("schema of %s changed: %w; alter the ClickHouse table to match, then restart", rel.QualifiedName(), err)
	}
	if err := t.CheckIdentity(); err != nil {
		return err
	}
	a.tables[idx] = t
	a.writer.SetTable(idx, t)
	a.rels[rel.ID] = idx
	return nil
}

func opIndex(op replication.Op) int {
	switch op {
	case replication.OpInsert:
		return 0
	case replication.OpUpdate:
		return 1
	}
	return 2
}

// checkTarget verifies that the ClickHouse table has exactly the columns the
// mapping writes.
func checkTarget(t *mapping.Table, ts targetSchema) error {
	want := t.ColumnNames()
	if len(ts.names) != len(want) {
		return fmt.Errorf("ClickHouse table %s has columns %v, the mapping writes %v", t.Target, ts.names, want)
	}
	for i, name := range want {
		if ts.names[i] != name {
			return fmt.Errorf("ClickHouse table %s has columns %v, the mapping writes %v", t.Target, ts.names, want)
		}
		if i < len(t.Columns) && ts.types[i] != t.Columns[i].Type.String() {
			return fmt.Errorf("ClickHouse column %s.%s is %s, the mapping writes %s", t.Target, name, ts.types[i], t.Columns[i].Type)
		}
	}
	return nil
}

func (a *applier) change(ctx context.Context, c *replication.Change) error {
	idx, ok := a.rels[c.Relation.ID]
	if !ok {
		return fmt.Errorf("change of relation %d before its Relation message", c.Relation.ID)
	}
	if idx < 0 {
		return nil
	}
	t := a.tables[idx]
	n := len(t.Columns)
	fail := func(vals []mapping.Value, err error) error { return newMappingError(t, vals, a.version, err) }
	var tomb []any
	var oldKey string
	if c.Old != nil {
		tomb = make([]any, n+2)
		if err := t.Tombstone(c.Old, tomb); err != nil {
			return fail(c.Old, err)
		}
		tomb[n], tomb[n+1] = uint64(a.version), uint8(1)
		oldKey = t.KeyString(tomb)
		if c.Op == replication.OpDelete {
			a.writer.Put(idx, oldKey, tomb)
			a.markBuffered()
			return nil
		}
	}
	row := make([]any, n+2)
	unchanged, err := t.Row(c.New, row, a.unchanged[:0])
	a.unchanged = unchanged
	if err != nil {
		return fail(c.New, err)
	}
	row[n], row[n+1] = uint64(a.version), uint8(0)
	key := t.KeyString(row)
	if tomb != nil && key != oldKey {
		// The update moved the row to another sorting key: delete the old key.
		a.writer.Put(idx, oldKey, tomb)
	}
	if len(unchanged) > 0 {
		if err := a.fillUnchanged(ctx, idx, key, row, unchanged); err != nil {
			return fail(c.New, err)
		}
	}
	a.writer.Put(idx, key, row)
	a.markBuffered()
	return nil
}

// fillUnchanged copies unchanged TOAST values from the row's latest image:
// the buffered one, else the newest stored in ClickHouse. Without one it
// fails rather than store a default.
func (a *applier) fillUnchanged(ctx context.Context, idx int, key string, row []any, cols []int) error {
	t := a.tables[idx]
	for _, k := range t.Key {
		for _, u := range cols {
			if u == k {
				return &mapping.ColumnError{Column: t.Columns[k].Name, Err: errors.New("unchanged TOAST value in a sorting key column")}
			}
		}
	}
	n := len(t.Columns)
	prev, ok := a.writer.Latest(idx, key)
	if !ok {
		stored, found, err := a.client.LatestStored(ctx, t, row)
		if err != nil {
			return err
		}
		if found {
			prev, ok = stored, true
		}
	}
	if !ok || prev[n+1].(uint8) == 1 {
		return &mapping.ColumnError{Column: t.Columns[cols[0]].Name,
			Err: errors.New("unchanged TOAST value and no earlier image of the row in the buffer or in ClickHouse; resync the table")}
	}
	for _, u := range cols {
		row[u] = prev[u]
	}
	return nil
}

func (a *applier) truncate(ctx context.Context, m *replication.Truncate) error {
	// Buffered rows are older than the truncate: store them first.
	if err := a.writer.Flush(ctx); err != nil {
		return err
	}
	for _, rel := range m.Relations {
		idx, ok := a.rels[rel.ID]
		if !ok || idx < 0 {
			continue
		}
		t := a.tables[idx]
		a.log.Warn("truncating ClickHouse table after TRUNCATE in Postgres", "table", t.Source, "lsn", a.version)
		if err := a.client.Exec(ctx, fmt.Sprintf("TRUNCATE TABLE %s.%s", mapping.Quote(a.client.Database()), mapping.Quote(t.Target))); err != nil {
			return fmt.Errorf("truncate %s: %w", t.Target, err)
		}
	}
	return nil
}

package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/replication"
)

// reporter counts what the applier does and reports it: Prometheus metrics
// (nil in unit tests), the progress row that `replicator status` reads, and
// a summary line once a minute.
type reporter struct {
	log        hclog.Logger
	metrics    *metrics.Metrics
	opCounters [][3]prometheus.Counter // per table: insert, update, delete
	store      positionStore

	stats stats
	// unstored is the commit time of the oldest received, unstored
	// transaction; zero when everything received is stored.
	unstored time.Time
	// later is the commit time of the oldest transaction received after
	// the flush under way took the buffer, or open then: what that flush
	// leaves unstored.
	later       time.Time
	lastSummary time.Time
	// seenInvalid holds the invalid counts already reported, per mapping.
	seenInvalid map[*mapping.Table]map[string]uint64
	summaryAt   stats
	lastProg    time.Time
}

type stats struct {
	changes, txns, flushes, rows uint64
}

func newReporter(tables []config.Table, store positionStore, log hclog.Logger, m *metrics.Metrics) *reporter {
	r := &reporter{log: log, metrics: m, store: store}
	for _, tc := range tables {
		var ops [3]prometheus.Counter
		if m != nil {
			for j, op := range []string{"insert", "update", "delete"} {
				ops[j] = m.Changes.WithLabelValues(tc.Name, op)
			}
		}
		r.opCounters = append(r.opCounters, ops)
	}
	return r
}

// invalid counts the values each table's columns stored by their invalid
// option since the last call (tables holds the current mappings; a new
// mapping of a table counts from zero).
func (r *reporter) invalid(tables []*mapping.Table) {
	if r.seenInvalid == nil {
		r.seenInvalid = make(map[*mapping.Table]map[string]uint64)
	}
	for _, t := range tables {
		counts := t.Invalid()
		if len(counts) == 0 {
			continue
		}
		seen := r.seenInvalid[t]
		if seen == nil {
			seen = map[string]uint64{}
			r.seenInvalid[t] = seen
		}
		for col, n := range counts {
			if n == seen[col] {
				continue
			}
			if seen[col] == 0 {
				r.log.Warn("storing values the column's type cannot hold by its invalid option", "table", t.Source, "column", col)
			}
			if r.metrics != nil {
				r.metrics.Invalid.WithLabelValues(t.Source, col).Add(float64(n - seen[col]))
			}
			seen[col] = n
		}
	}
}

// received notes a transaction to be applied that committed at t.
func (r *reporter) received(t time.Time) {
	if r.unstored.IsZero() {
		r.unstored = t
	}
	if r.later.IsZero() {
		r.later = t
	}
}

// taken notes that a flush took the buffer while the transaction that
// committed at open (zero: none) was open.
func (r *reporter) taken(open time.Time) { r.later = open }

// stored notes that the flush that took the buffer last stored its rows:
// what is unstored is what was received after it, and the transaction
// open then.
func (r *reporter) stored() { r.unstored = r.later }

// change counts one applied change of table idx (-1: not configured).
func (r *reporter) change(idx int, op replication.Op) {
	r.stats.changes++
	if r.metrics != nil && idx >= 0 {
		r.opCounters[idx][opIndex(op)].Inc()
	}
}

// transaction counts one applied transaction.
func (r *reporter) transaction() {
	r.stats.txns++
	if r.metrics != nil {
		r.metrics.Transactions.Inc()
	}
}

// flushed counts a flush of rows rows that took d and left the checkpoint at checkpoint.
func (r *reporter) flushed(rows int, d time.Duration, checkpoint pglogrepl.LSN) {
	if rows > 0 {
		r.stats.flushes++
		r.stats.rows += uint64(rows)
	}
	if r.metrics == nil {
		return
	}
	r.metrics.CheckpointLSN.Set(float64(checkpoint))
	if rows > 0 {
		r.metrics.Flushes.Inc()
		r.metrics.FlushRows.Observe(float64(rows))
		r.metrics.FlushDuration.Observe(d.Seconds())
	}
}

// checkpointed notes a checkpoint saved now at lsn that covers every
// transaction committed before asOf (zero: not known).
func (r *reporter) checkpointed(lsn pglogrepl.LSN, asOf time.Time) {
	if r.metrics != nil {
		r.metrics.CheckpointLSN.Set(float64(lsn))
		r.metrics.Durable(time.Now(), asOf)
	}
}

// lag returns the age of the oldest committed change received and not yet
// stored in ClickHouse; 0 when everything received is stored.
func (r *reporter) lag(now time.Time) time.Duration {
	if r.unstored.IsZero() {
		return 0
	}
	return max(now.Sub(r.unstored), 0)
}

// observe updates the lag metrics, the progress row that `status` reads,
// and logs a summary once a minute. It is called on ticks (force false: the
// progress row at most once a second) and after flushes (force true: status
// sees the caught-up state at once).
func (r *reporter) observe(ctx context.Context, force bool, walEnd, durable pglogrepl.LSN) error {
	now := time.Now()
	lag := r.lag(now)
	var lagBytes uint64
	if walEnd > durable {
		lagBytes = uint64(walEnd - durable)
	}
	r.metrics.SetLag(lag, lagBytes)
	if force || now.Sub(r.lastProg) >= time.Second {
		if err := r.store.SaveProgress(ctx, r.unstored); err != nil {
			return err
		}
		r.lastProg = now
	}
	if r.lastSummary.IsZero() {
		r.lastSummary, r.summaryAt = now, r.stats
	} else if d := now.Sub(r.lastSummary); d >= time.Minute {
		secs := d.Seconds()
		r.log.Info("summary", "changes_per_sec", fmt.Sprintf("%.1f", float64(r.stats.changes-r.summaryAt.changes)/secs),
			"transactions_per_sec", fmt.Sprintf("%.1f", float64(r.stats.txns-r.summaryAt.txns)/secs),
			"flushes", r.stats.flushes-r.summaryAt.flushes, "lag_seconds", fmt.Sprintf("%.3f", lag.Seconds()),
			"lag_bytes", lagBytes, "checkpoint", durable)
		r.lastSummary, r.summaryAt = now, r.stats
	}
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

package verify

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// Sampler is continuous verification: every monitor.verify_interval it
// compares monitor.verify_sample_rows rows of each configured table with
// Postgres, in key ranges taken in turn from where its previous pass
// stopped (so that passes rotate over the whole table), at most
// monitor.verify_rate rows per second, each range in a snapshot of its
// own and rechecked as `replicator verify` does. It works over its own
// connections, exports what it finds (metrics.Metrics.VerifyDifferences,
// VerifyRows, VerifyLastPass) and logs each lasting difference with its
// table and key. It never repairs, and never stops the daemon: a failed
// pass is logged and counted, and the next one tries again.
type Sampler struct {
	cfg config.Config
	m   *metrics.Metrics
	log hclog.Logger
	// rotations hold where each table's next pass starts.
	rotations map[string]*rotation
	// sleep waits (tests replace it).
	sleep func(ctx context.Context, d time.Duration) error
}

// NewSampler returns the continuous verification of cfg's tables; it
// starts nothing.
func NewSampler(cfg config.Config, m *metrics.Metrics, log hclog.Logger) *Sampler {
	return &Sampler{cfg: cfg, m: m, log: log, rotations: map[string]*rotation{}, sleep: sleepCtx}
}

// maxRangeRows bounds the rows of one sampled range: one snapshot, one
// checksum query per side, and at most that many rows in memory.
const maxRangeRows = 10000

// Run runs a pass every interval until ctx is done; it returns nil then.
func (s *Sampler) Run(ctx context.Context) error {
	interval := s.cfg.Monitor.VerifyInterval
	if interval <= 0 {
		return nil
	}
	s.log.Info("continuous verification on", "interval", interval, "rate", s.cfg.Monitor.VerifyRate,
		"sample_rows", s.cfg.Monitor.VerifySampleRows)
	for {
		if err := s.sleep(ctx, interval); err != nil {
			return nil
		}
		if err := s.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if s.m != nil {
				s.m.VerifyErrors.Inc()
			}
			s.log.Warn("a pass of continuous verification failed; the next one tries again", "wait", interval.String(), "error", err)
		}
	}
}

// pass samples every table once.
func (s *Sampler) pass(ctx context.Context) error {
	client, err := sink.Open(ctx, s.cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	pg, err := postgres.Connect(ctx, s.cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer pg.Close()
	store := checkpoint.NewStore(client, s.cfg.Postgres.Slot)
	opt := Options{RangeRows: min(s.cfg.Monitor.VerifySampleRows, maxRangeRows), CatchUpTimeout: time.Minute}
	trimmed, err := decimalsTrimmed(ctx, client)
	if err != nil {
		return err
	}
	for _, tc := range s.cfg.Tables {
		if err := s.sampleTable(ctx, tc, opt, pg, client, store, trimmed); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// One table's failure does not keep the others unverified.
			if s.m != nil {
				s.m.VerifyErrors.Inc()
			}
			s.log.Warn("continuous verification of a table failed; the next pass tries again", "table", tc.Name, "error", err)
		}
	}
	return nil
}

// sampleTable samples one table.
func (s *Sampler) sampleTable(ctx context.Context, tc config.Table, opt Options, pg *postgres.Conn, client *sink.Client,
	store *checkpoint.Store, trimmed bool) error {
	v, why, err := newVerifier(ctx, s.cfg, opt, pg, client, store, tc, trimmed, s.log)
	if err != nil {
		return err
	}
	if why != "" {
		return nil
	}
	if err := v.prepare(); err != nil {
		return err
	}
	v.onDiff = func(kind, key string) {
		v.log.Warn("continuous verification found a lasting difference: `replicator verify --repair` repairs it",
			"kind", kind, "key", key)
	}
	r := s.rotations[tc.Name]
	if r == nil {
		r = &rotation{}
		s.rotations[tc.Name] = r
	}
	res, err := sample(ctx, &tableSampler{v: v}, r, s.cfg.Monitor.VerifySampleRows, opt.RangeRows, s.cfg.Monitor.VerifyRate, s.sleep)
	if s.m != nil {
		s.m.VerifyRows.WithLabelValues(tc.Name).Add(float64(res.rows))
	}
	if err != nil {
		return err
	}
	if s.m != nil {
		s.m.VerifyDifferences.WithLabelValues(tc.Name).Set(float64(r.differences()))
		s.m.VerifyLastPass.WithLabelValues(tc.Name).Set(float64(time.Now().Unix()))
	}
	v.log.Debug("continuous verification pass", "rows", res.rows, "ranges", res.ranges, "differences", res.differences,
		"wrapped", res.wrapped)
	return nil
}

// rangeChecker compares key ranges of one table.
type rangeChecker interface {
	// check compares the range from from (nil: the table's start) to the
	// bound about rows rows on (nil: the table's end, when fewer rows
	// are left), in one snapshot, and returns that bound, the Postgres
	// rows it compared and its lasting differences.
	check(ctx context.Context, from *string, rows int) (to *string, compared, differences uint64, err error)
}

// rotation is where a table's next range starts (nil at the table's
// start), and the differences found in the current and the last complete
// cycle over the table.
type rotation struct {
	from *string
	// cycles counts the cycles over the whole table completed.
	cycles int
	// current and last are the lasting differences found in the current
	// cycle so far and in the last complete one.
	current, last uint64
}

// advance moves past a range that ended at to, in which diffs lasting
// differences were found; it reports whether that range reached the
// table's end, so that the next starts over.
func (r *rotation) advance(to *string, diffs uint64) (wrapped bool) {
	r.current += diffs
	if to == nil {
		r.from = nil
		r.cycles++
		r.last, r.current = r.current, 0
		return true
	}
	r.from = to
	return false
}

// differences is what the gauge shows: the lasting differences of the
// last complete cycle, or of the current one when it found more. A
// difference stays visible until a whole cycle found it no more.
func (r *rotation) differences() uint64 { return max(r.last, r.current) }

// sampleResult is what one table's pass compared.
type sampleResult struct {
	rows, differences uint64
	ranges            int
	wrapped           bool
}

// sample compares ranges of about rangeRows rows from r on until budget
// rows were compared or the table's end was reached, and waits after each
// range so that rows are compared at most rate per second on average.
func sample(ctx context.Context, c rangeChecker, r *rotation, budget, rangeRows, rate int,
	sleep func(context.Context, time.Duration) error) (sampleResult, error) {
	var res sampleResult
	for res.rows < uint64(budget) && !res.wrapped {
		start := time.Now()
		to, rows, diffs, err := c.check(ctx, r.from, rangeRows)
		if err != nil {
			return res, err
		}
		res.rows += rows
		res.differences += diffs
		res.ranges++
		res.wrapped = r.advance(to, diffs)
		if err := sleep(ctx, pace(rows, rate, time.Since(start))); err != nil {
			return res, err
		}
	}
	return res, nil
}

// pace is how long to wait after comparing rows in spent so that the rate
// (rows per second) is not exceeded.
func pace(rows uint64, rate int, spent time.Duration) time.Duration {
	want := time.Duration(float64(rows) / float64(max(rate, 1)) * float64(time.Second))
	return max(want-spent, 0)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tableSampler is the rangeChecker of a verifier.
type tableSampler struct{ v *verifier }

func (ts *tableSampler) check(ctx context.Context, from *string, rows int) (to *string, compared, differences uint64, err error) {
	v := ts.v
	s, err := v.snapshot(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	defer s.Close()
	where := "TRUE"
	if from != nil {
		where = v.key.pg + " >= " + v.key.pgLit(*from)
	}
	// The value rows rows on, or the next greater one when many rows share
	// it: a range is never empty of values.
	err = s.QueryRow(ctx, fmt.Sprintf("SELECT (SELECT b::text FROM (SELECT %[1]s AS b FROM %[2]s WHERE %[3]s ORDER BY %[1]s OFFSET %[4]d LIMIT 1) s)",
		v.key.pg, v.source(), where, rows)).Scan(&to)
	if err == nil && to != nil && from != nil && *to == *from {
		err = s.QueryRow(ctx, fmt.Sprintf("SELECT min(b)::text FROM (SELECT %[1]s AS b FROM %[2]s WHERE %[1]s > %[3]s) s",
			v.key.pg, v.source(), v.key.pgLit(*from))).Scan(&to)
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("next key range: %w", err)
	}
	rep := &Report{Table: v.t.Source, FirstKeys: map[string][]string{}}
	candidates, err := v.compareRange(ctx, s, keyRange{from: from, to: to}, rep)
	s.Close()
	if err != nil {
		return nil, 0, 0, err
	}
	for round := 0; round < recheckRounds && len(candidates) > 0; round++ {
		if candidates, err = v.recheck(ctx, candidates, rep, round == recheckRounds-1); err != nil {
			return nil, rep.Compared, 0, err
		}
	}
	return to, rep.Compared, rep.Missing + rep.Extra + rep.Different, nil
}

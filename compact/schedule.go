package compact

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/metrics"
)

// Schedule is the daemon's compaction: every compaction.interval it
// compacts every configured table once (Run). A failed compaction is
// logged and counted, and the next one tries again; it never stops the
// daemon.
type Schedule struct {
	cfg config.Config
	m   *metrics.Metrics
	log hclog.Logger
}

// NewSchedule returns the scheduled compaction of cfg's tables; it starts
// nothing.
func NewSchedule(cfg config.Config, m *metrics.Metrics, log hclog.Logger) *Schedule {
	return &Schedule{cfg: cfg, m: m, log: log}
}

// Run compacts every interval until ctx is done; it returns nil then.
func (s *Schedule) Run(ctx context.Context) error {
	interval := s.cfg.Compaction.Interval
	if interval <= 0 {
		return nil
	}
	s.log.Info("scheduled compaction on", "interval", interval)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		reports, err := Run(ctx, s.cfg, Options{Wait: s.cfg.Compaction.Wait}, s.log)
		for _, r := range reports {
			if r.Skipped != "" {
				s.log.Debug("table not compacted", "table", r.Table, "reason", r.Skipped)
				continue
			}
			if s.m != nil && !r.Pending {
				// (A pending compaction's rows are counted by the one that
				// removes them.)
				s.m.CompactRows.WithLabelValues(r.Table).Add(float64(r.Rows))
				s.m.CompactLast.WithLabelValues(r.Table).SetToCurrentTime()
			}
			log := s.log.Info
			if r.Rows == 0 {
				log = s.log.Debug
			}
			log("compacted", "table", r.Table, "rows", r.Rows, "keys", r.Places, "below", r.Bound.String(), "pending", r.Pending)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if s.m != nil {
				s.m.CompactErrors.Inc()
			}
			s.log.Warn("a compaction failed; the next one tries again", "wait", interval.String(), "error", err)
		}
	}
}

package pipeline

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/metrics"
	"github.com/replicator/replicator/sink"
)

// haltReason reports whether the daemon halts on err, a permanent error,
// instead of exiting, and why (one of metrics.HaltReasons). It halts on
// bad data: a change with a value it cannot map (*mapping.RowError).
// Restarting cannot get past it, as the slot sends the change again; an
// exit would only make systemd or Kubernetes restart it in a loop and reset
// its metrics, so it stays up for the alert and says why. Other permanent
// errors (configuration, privileges, a history that does not continue with
// manual recovery) still end the daemon.
func haltReason(err error) (string, bool) {
	var re *mapping.RowError
	if errors.As(err, &re) {
		return metrics.ReasonBadData, true
	}
	return "", false
}

// lostServer returns the server whose connection a transient error of
// reason (failure.Rule.Reason) says is gone: "postgres" or "clickhouse".
// Errors of a reachable server (a replica or a quorum unavailable, a
// server overloaded) are not losses.
func lostServer(reason string) (string, bool) {
	server, kind, ok := strings.Cut(reason, "_")
	if !ok || server != "postgres" && server != "clickhouse" {
		return "", false
	}
	switch kind {
	case "connection", "network", "shutdown", "starting", "timeout":
		return server, true
	}
	return "", false
}

// haltRecordTimeout bounds recording a halt in ClickHouse.
const haltRecordTimeout = 10 * time.Second

// halt keeps the daemon up, stopped on err, until ctx ends (it returns
// false: SIGTERM still exits) or a reload asks it to try again (true). The
// session that met err has ended without acknowledging anything past the
// durable checkpoint, and nothing is streamed or acknowledged meanwhile;
// /metrics and /healthz are served, /readyz fails with the reason,
// replicator_halted says it, and the progress table records it for
// `replicator status`.
func (r *Runner) halt(ctx context.Context, cfg config.Config, reason string, err error) bool {
	h := &metrics.Halt{Reason: reason, Err: err.Error(), Since: time.Now()}
	// The log says why before /readyz and the metrics say that it halted.
	r.log.Error("halted: the daemon stays up and acknowledges nothing until the cause is fixed (a column type, "+
		"its invalid option, or the data); then SIGHUP (systemctl reload) tries again", "reason", reason, "error", err)
	r.halted.Store(true)
	r.metrics.SetHalt(h)
	defer func() {
		r.metrics.SetHalt(nil)
		r.halted.Store(false)
	}()
	rctx, cancel := context.WithTimeout(ctx, haltRecordTimeout)
	defer cancel()
	if rerr := recordHalt(rctx, cfg, checkpoint.Halt{Reason: reason, Error: h.Err, Since: h.Since}); rerr != nil && ctx.Err() == nil {
		r.log.Warn("could not record the halt in ClickHouse for `replicator status`", "error", rerr)
	}
	select {
	case <-ctx.Done():
		return false
	case <-r.wake:
		r.log.Info("trying again after the halt", "reason", reason)
		return true
	}
}

// recordHalt saves h in the progress table of cfg's ClickHouse.
func recordHalt(ctx context.Context, cfg config.Config, h checkpoint.Halt) error {
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	return checkpoint.NewStore(client, cfg.Postgres.Slot).SaveHalt(ctx, h)
}

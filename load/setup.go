package load

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// Setup creates what replication needs and copies the existing rows. It is
// idempotent: objects that exist are checked and kept, and the copy runs
// only when the slot is new. Each line of the returned report says what was
// created or found.
func Setup(ctx context.Context, cfg config.Config, log hclog.Logger) (report []string, err error) {
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		report = append(report, line)
		log.Info(line)
	}

	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return report, err
	}
	defer client.Close()
	caps := client.Caps()
	if !caps.DateTime64 {
		log.Warn("ClickHouse has no DateTime64 (needs >= 20.1): timestamps are stored as DateTime('UTC') and lose sub-second precision",
			"version", client.Version())
	}

	pg, err := postgres.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return report, err
	}
	defer pg.Close()
	if err := pg.CheckServer(ctx); err != nil {
		return report, err
	}
	repl, err := replication.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return report, err
	}
	defer repl.Close(context.Background())

	// Resolve every table before changing anything.
	var tables []*mapping.Table
	names := make([]string, len(cfg.Tables))
	for i, tc := range cfg.Tables {
		cols, err := pg.Columns(ctx, tc.Name)
		if err != nil {
			return report, err
		}
		t, err := mapping.Resolve(tc.Spec(), cols, caps)
		if err != nil {
			return report, err
		}
		if err := t.CheckIdentity(); err != nil {
			return report, err
		}
		tables = append(tables, t)
		names[i] = tc.Name
	}

	lines, err := pg.EnsurePublication(ctx, cfg.Postgres.Publication, names)
	for _, line := range lines {
		say("%s", line)
	}
	if err != nil {
		return report, err
	}

	db := client.DB()
	if err := client.Exec(ctx, db.Create()); err != nil {
		return report, fmt.Errorf("create ClickHouse database %s: %w", db.Name, err)
	}
	for _, t := range tables {
		schema, err := client.Schema(ctx, t.Target)
		if err != nil {
			return report, fmt.Errorf("read ClickHouse table %s: %w", t.Target, err)
		}
		if schema.Exists() {
			if err := schema.Check(t); errors.Is(err, sink.ErrNoSeq) {
				if err := client.Exec(ctx, db.AddSeqColumn(t.Target)); err != nil {
					return report, fmt.Errorf("add column %s to ClickHouse table %s: %w", mapping.SeqColumn, t.Target, err)
				}
				say("added column %s to ClickHouse table %s.%s", mapping.SeqColumn, db.Name, t.Target)
				if schema, err = client.Schema(ctx, t.Target); err != nil {
					return report, fmt.Errorf("read ClickHouse table %s: %w", t.Target, err)
				}
			}
			if err := schema.Check(t); err != nil {
				return report, err
			}
			say("ClickHouse table %s.%s exists", db.Name, t.Target)
		} else {
			if err := client.Exec(ctx, db.CreateTable(t)); err != nil {
				return report, fmt.Errorf("create ClickHouse table %s: %w", t.Target, err)
			}
			say("created ClickHouse table %s.%s", db.Name, t.Target)
		}
		if err := client.Exec(ctx, db.CreateView(t)); err != nil {
			return report, fmt.Errorf("create ClickHouse view %s: %w", ddl.ViewName(t), err)
		}
		say("ClickHouse view %s.%s shows one live row per key", db.Name, ddl.ViewName(t))
	}
	if err := client.Exec(ctx, db.CreateCheckpointTable()); err != nil {
		return report, fmt.Errorf("create checkpoint table: %w", err)
	}
	if err := client.Exec(ctx, db.CreateProgressTable()); err != nil {
		return report, fmt.Errorf("create progress table: %w", err)
	}
	if err := client.Exec(ctx, db.CreateTruncationTable()); err != nil {
		return report, fmt.Errorf("create truncation table: %w", err)
	}
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	pos, hasCheckpoint, err := store.Load(ctx)
	if err != nil {
		return report, err
	}

	slotName := cfg.Postgres.Slot
	slot, err := repl.Slot(ctx, slotName)
	switch {
	case err == nil && hasCheckpoint:
		if err := slot.CheckResume(pos.LSN); err != nil {
			return report, err
		}
		say("replication slot %s exists with checkpoint %s: nothing to copy", slotName, pos.LSN)
		return report, nil
	case err == nil:
		if slot.Active {
			return report, &postgres.SlotInUseError{Slot: slotName, PID: slot.ActivePID}
		}
		// A slot without a checkpoint is left from a setup that did not
		// finish: nothing was acknowledged from it, so start over.
		if err := repl.DropSlot(ctx, slotName); err != nil {
			return report, err
		}
		say("dropped replication slot %s left by an unfinished setup", slotName)
	case errors.Is(err, postgres.ErrSlotMissing):
		if hasCheckpoint {
			if err := store.Delete(ctx); err != nil {
				return report, err
			}
			say("removed checkpoint %s of the former slot %s", pos.LSN, slotName)
		}
		if err := store.DeleteTruncations(ctx); err != nil {
			return report, err
		}
	default:
		return report, err
	}

	for _, t := range tables {
		if err := client.Exec(ctx, db.Truncate(t.Target)); err != nil {
			return report, fmt.Errorf("empty ClickHouse table %s before the copy: %w", t.Target, err)
		}
	}
	lsn, snapshot, err := repl.CreateSlot(ctx, slotName)
	if err != nil {
		return report, err
	}
	say("created replication slot %s at %s", slotName, lsn)

	// The exported snapshot lives while repl stays idle; copy inside it.
	// Transactions that committed before the consistent point are in the
	// snapshot, those at or after it are streamed: version point − 1 is
	// above the first and below the second (commit records are 8-byte
	// aligned, so none starts there), so a streamed change always wins.
	version := lsn - 1
	writer := sink.NewWriter(client, tables)
	for i, t := range tables {
		start := time.Now()
		n, err := copyTable(ctx, pg, snapshot, t, i, writer, version, cfg.Batch)
		if err != nil {
			return report, fmt.Errorf("copy %s: %w", t.Source, err)
		}
		secs := time.Since(start).Seconds()
		say("copied %d rows of %s in %.1fs (%.0f rows/s) with version %s", n, t.Source, secs, float64(n)/max(secs, 1e-9), version)
	}
	// Transactions that commit at or after the consistent point are streamed.
	if err := store.Save(ctx, checkpoint.Position{LSN: lsn, Commit: false}); err != nil {
		return report, err
	}
	say("checkpoint %s saved: `replicator run` streams from here", lsn)
	return report, nil
}

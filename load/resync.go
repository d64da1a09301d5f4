package load

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
)

// swapWait bounds how long Resync waits for a running daemon to swap the
// new copy in.
const swapWait = 2 * time.Minute

// Resync copies one configured table again, under the live stream, into a
// shadow table (ddl.ShadowName) that `replicator run` puts in place of the
// target once the copy is complete; readers see the old copy until then.
//
// The order makes it exact. Resync first marks the table's copy as pending
// in the copy state, then writes a logical message (replication.ResyncMessage)
// into the WAL, then copies in the snapshot of a temporary slot, whose
// consistent point C is after the message. A running daemon holds its
// checkpoint from the message on (one started later finds the pending copy
// and holds it from its start), so the checkpoint stays below C. On a
// server whose pgoutput sends no logical messages (PostgreSQL 13) the mark
// is a row of postgres.MarkTable instead, committed before the temporary
// slot is made: the daemon holds from that transaction on, whose commit
// LSN is below C as well. With the
// copy complete, the daemon swaps the shadow in and starts again from the
// held checkpoint: changes of the table below C write only their
// tombstones, those from C on are written as usual. Run again after it
// stopped, Resync starts over.
func Resync(ctx context.Context, cfg config.Config, source string, log hclog.Logger, opts Options) (report []string, err error) {
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		report = append(report, line)
		log.Info(line)
	}
	var tc *config.Table
	var names []string
	for i := range cfg.Tables {
		names = append(names, cfg.Tables[i].Name)
		if cfg.Tables[i].Name == source {
			tc = &cfg.Tables[i]
		}
	}
	if tc == nil {
		return nil, fmt.Errorf("--table %q is not a configured table (configured: %s)", source, strings.Join(names, ", "))
	}

	srv, err := openServers(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	client, pg, repl := srv.ch, srv.pg, srv.repl
	t, err := srv.resolve(ctx, *tc)
	if err != nil {
		return nil, err
	}
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	pos, found, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errNoCheckpoint(cfg)
	}
	server, err := history.Identify(ctx, repl)
	if err != nil {
		return nil, err
	}
	slot, err := repl.Slot(ctx, cfg.Postgres.Slot)
	slot.Name = cfg.Postgres.Slot
	// (The slot is in use while the daemon runs: that is a continuation.)
	if err := history.Check(pos, server, slot, err); err != nil && !slot.Active {
		return nil, err
	}
	if postgres.NeedsMarkTable(pg.ServerVersion()) {
		if err := pg.CheckMarkTable(ctx, cfg.Postgres.Publication); err != nil {
			return nil, err
		}
	}
	chunks, err := store.LoadChunks(ctx)
	if err != nil {
		return nil, err
	}
	load := currentLoad(chunks, pos)

	db := client.DB()
	shadowName := ddl.ShadowName(t.Target)
	// The mark comes first: a daemon started from now on holds its
	// checkpoint for the copy. An earlier resync that did not finish
	// starts over, so that the copy is read whole in one snapshot (exact,
	// see checkpoint.Exact).
	mark := checkpoint.Chunk{Source: source, Load: load, Target: shadowName}
	if err := store.DeleteChunks(ctx, source); err != nil {
		return report, err
	}
	if err := store.SaveChunks(ctx, mark); err != nil {
		return report, err
	}
	shadow, err := newShadow(ctx, client, t)
	if err != nil {
		return report, err
	}
	say("created ClickHouse table %s.%s for the new copy of %s", db.Name, shadow.Target, source)
	state := map[string][]checkpoint.Chunk{source: {mark}}
	at, err := markStream(ctx, pg, cfg.Postgres.Slot, source)
	if err != nil {
		return report, err
	}
	say("resync of %s marked in the WAL %s: `replicator run` keeps replicating and holds its checkpoint until the copy is complete",
		source, at)

	c := &copier{cfg: cfg, store: store, log: log, progress: newProgress(ctx, log, opts.Terminal)}
	if err := resume(ctx, c, pg, []*mapping.Table{shadow}, state, load, say); err != nil {
		return report, fmt.Errorf("%w; run `replicator resync` again, which starts the copy over", err)
	}
	if err := store.SaveColumns(ctx, source, t.MappedNames()); err != nil {
		return report, err
	}

	slot, err = repl.Slot(ctx, cfg.Postgres.Slot)
	if err != nil {
		return report, err
	}
	if !slot.Active {
		say("copy of %s complete: `replicator run` puts %s.%s in place of %s.%s when it starts", source, db.Name,
			shadow.Target, db.Name, t.Target)
		return report, nil
	}
	say("copy of %s complete: waiting for `replicator run` (pid %s) to put it in place", source, slot.ActivePID)
	for deadline := time.Now().Add(swapWait); ; {
		s, err := client.Schema(ctx, shadow.Target)
		if err != nil {
			return report, err
		}
		if !s.Exists() {
			say("ClickHouse table %s.%s now holds the new copy of %s", db.Name, t.Target, source)
			return report, nil
		}
		if time.Now().After(deadline) {
			say("the daemon has not put the copy in place within %s: it does when it reads the copy state "+
				"(every few seconds) or starts; `replicator status` shows its lag", swapWait)
			return report, nil
		}
		select {
		case <-ctx.Done():
			return report, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// markStream marks the copy of source for slot in the stream, below the
// consistent point of the copy's snapshot, which is made after it: with a
// logical message (replication.ResyncMessage), or on a server whose
// pgoutput sends no logical messages with a row of postgres.MarkTable,
// whose commit LSN is the mark. It returns where, in words.
func markStream(ctx context.Context, pg *postgres.Conn, slot, source string) (string, error) {
	if major := pg.ServerVersion(); postgres.NeedsMarkTable(major) {
		at, err := pg.MarkResync(ctx, slot, source)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("by a row of %s committed below %s", postgres.MarkTable, at), nil
	}
	at, err := pg.EmitMessage(ctx, replication.ResyncPrefix, replication.ResyncMessage{Slot: slot, Table: source}.Encode())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("at %s", at), nil
}

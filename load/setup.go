package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hashicorp/go-hclog"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/history"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// Options are the settings of a setup run that are not configuration.
type Options struct {
	// Terminal, when not nil, shows the copy's progress as bars.
	Terminal *Terminal
}

// Setup creates what replication needs and copies the existing rows. It is
// idempotent: objects that exist are checked and kept, and the copy runs
// only when the slot is new. Each line of the returned report says what was
// created or found.
func Setup(ctx context.Context, cfg config.Config, log hclog.Logger, opts Options) (report []string, err error) {
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		report = append(report, line)
		log.Info(line)
	}

	srv, err := openServers(ctx, cfg, log)
	if err != nil {
		return report, err
	}
	defer srv.Close()
	client, pg, repl := srv.ch, srv.pg, srv.repl

	// Resolve every table before changing anything.
	var tables []*mapping.Table
	names := make([]string, len(cfg.Tables))
	for i, tc := range cfg.Tables {
		t, err := srv.resolve(ctx, tc)
		if err != nil {
			return report, err
		}
		tables = append(tables, t)
		names[i] = tc.Name
	}

	for _, tc := range cfg.Tables {
		unsent, err := pg.UnsentGenerated(ctx, tc.Name, cfg.Postgres.Publication)
		if err != nil {
			return report, err
		}
		if len(unsent) > 0 {
			say("generated columns of %s that the stream does not send, so neither the copy nor ClickHouse has them: %s",
				tc.Name, strings.Join(unsent, "; "))
		}
	}

	publication, err := pg.Publication(ctx, cfg.Postgres.Publication, names)
	if err != nil {
		return report, err
	}
	if err := publication.CheckFilters(cfg.Postgres.Publication, names); err != nil {
		return report, err
	}
	if publication.Exists {
		if err := publication.CheckActions(cfg.Postgres.Publication, truncates(cfg.Tables)); err != nil {
			return report, err
		}
	}

	// (The statements after it follow the engine the database has.)
	if err := client.CreateDatabase(ctx); err != nil {
		return report, err
	}
	db := client.DB()
	created := make(map[string]bool) // source tables whose target this run created
	schemas := make(map[string]sink.Schema)
	// (The committed views read the checkpoint table.)
	if err := checkpoint.EnsureTables(ctx, client); err != nil {
		return report, err
	}
	for _, t := range tables {
		schema, err := client.Schema(ctx, t.Target)
		if err != nil {
			return report, fmt.Errorf("read ClickHouse table %s: %w", t.Target, err)
		}
		if schema.Exists() {
			schema.Adopt(t, client.Caps())
			if renamed := schema.EnumsRenamed(t); len(renamed) > 0 {
				return report, fmt.Errorf("table %s: %s in the Postgres enum (ALTER TYPE ... RENAME VALUE), and the rows ClickHouse "+
					"holds with them read differently in Postgres: copy the table again with `replicator resync --config FILE --table %s`",
					t.Source, strings.Join(renamed, "; "), t.Source)
			}
			if grown := schema.EnumsGrown(t); len(grown) > 0 {
				var stmts []string
				for _, c := range grown {
					stmts = append(stmts, db.ModifyColumn(t.Target, c)...)
				}
				// On a cluster the local tables were altered: the
				// Distributed table takes their columns again.
				stmts = append(stmts, db.RecreateDistributed(t.Target, t.OrderBy)...)
				for _, stmt := range stmts {
					if err := client.Exec(ctx, stmt); err != nil {
						return report, fmt.Errorf("add the labels Postgres added to the enums of ClickHouse table %s: %s: %w",
							t.Target, stmt, err)
					}
					say("%s", stmt)
				}
				if schema, err = client.Schema(ctx, t.Target); err != nil {
					return report, fmt.Errorf("read ClickHouse table %s: %w", t.Target, err)
				}
			}
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
			schemas[t.Source] = schema
			say("ClickHouse table %s.%s exists", db.Name, t.Target)
			deletes, err := client.EngineDeletes(ctx, t.Target)
			if err != nil {
				return report, fmt.Errorf("read the engine of ClickHouse table %s: %w", t.Target, err)
			}
			if deletes != t.Storage.EngineDeletes {
				say("ClickHouse table %s.%s was made with engine_is_deleted = %v: the configured %v takes effect when "+
					"`replicator resync --table %s` makes it anew", db.Name, t.Target, deletes, t.Storage.EngineDeletes, t.Source)
			}
			for _, stmt := range db.AlterStorage(t) {
				if err := client.Exec(ctx, stmt); err != nil {
					return report, fmt.Errorf("ClickHouse table %s: %s: %w", t.Target, stmt, err)
				}
				say("%s", stmt)
			}
		} else {
			for _, stmt := range db.CreateTarget(t) {
				if err := client.Exec(ctx, stmt); err != nil {
					return report, fmt.Errorf("create ClickHouse table %s: %w", t.Target, err)
				}
			}
			say("created ClickHouse table %s.%s", db.Name, t.Target)
			created[t.Source] = true
		}
		for _, stmt := range db.CreateViews(t, cfg.Postgres.Slot) {
			if err := client.Exec(ctx, stmt); err != nil {
				return report, fmt.Errorf("create the ClickHouse views of %s: %w", t.Target, err)
			}
		}
		say("ClickHouse view %s.%s shows one live row per key, and %s the rows as of the newest checkpoint",
			db.Name, ddl.ViewName(t), ddl.CommittedOf(t.Target))
	}
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	if err := store.Sync(ctx); err != nil {
		return report, err
	}
	pos, hasCheckpoint, err := store.Load(ctx)
	if err != nil {
		return report, err
	}
	server, err := history.Identify(ctx, repl)
	if err != nil {
		return report, err
	}
	// Positions saved from here on continue the checkpoint's history; a
	// new slot starts the next epoch (below).
	store.SetHistory(server.Identity(max(pos.History.Epoch, 1)))
	chunks, err := store.LoadChunks(ctx)
	if err != nil {
		return report, err
	}
	for source, cs := range chunks {
		if !slices.Contains(names, source) {
			// A table no longer configured: should it come back, it is
			// copied again (its rows changed while it was not replicated).
			// The copy of a resync that did not finish goes too.
			for _, target := range shadows(cs) {
				if err := dropTarget(ctx, client, target); err != nil {
					return report, err
				}
				say("dropped ClickHouse table %s.%s, the unfinished resync of %s", db.Name, target, source)
			}
			if err := store.DeleteChunks(ctx, source); err != nil {
				return report, err
			}
			delete(chunks, source)
		}
	}
	var shadowNames []string
	for _, t := range tables {
		shadowNames = append(shadowNames, ddl.ShadowName(t.Target))
	}
	newCopies, err := client.Existing(ctx, shadowNames...)
	if err != nil {
		return report, err
	}
	for _, t := range tables {
		if resyncing(chunks[t.Source], t.Target) && newCopies[ddl.ShadowName(t.Target)] {
			continue // (a new copy not yet in place has the configured keys)
		}
		spec := mapping.TableSpec{Source: t.Source, Target: t.Target, OrderBy: t.OrderBy, PartitionBy: t.PartitionBy}
		if err := schemas[t.Source].CheckKeys(spec); err != nil {
			return report, err
		}
	}

	slotName := cfg.Postgres.Slot
	slot, err := repl.Slot(ctx, slotName)
	var added []*mapping.Table
	if err == nil && hasCheckpoint {
		// Nothing is changed for a history that does not continue (a
		// running daemon may have moved checkpoint and slot on since the
		// checkpoint was read).
		if err := history.Check(pos, server, slot, nil); err != nil && !slot.Active {
			return report, err
		}
		if !publication.Exists {
			return report, fmt.Errorf("publication %s was dropped after replication slot %s was made: Postgres decodes the "+
				"slot's changes with the publication of their time, so its stream cannot go on past the drop; drop the slot "+
				"(SELECT pg_drop_replication_slot('%s')) and run `replicator setup` again, which copies every table again",
				cfg.Postgres.Publication, slotName, slotName)
		}
		if added, err = pending(ctx, cfg, store, tables, created, newCopies, publication, chunks, pos, say); err != nil {
			return report, err
		}
	}
	published := names
	if major := pg.ServerVersion(); postgres.NeedsMarkTable(major) {
		// Its pgoutput sends no logical messages: a resync marks the
		// stream with a row of this table instead.
		made, err := pg.EnsureMarkTable(ctx)
		if err != nil {
			return report, err
		}
		if made {
			say("created table %s: it marks resyncs in the stream, as PostgreSQL %d sends no logical messages", postgres.MarkTable, major)
		}
		published = append(slices.Clip(names), postgres.MarkTable)
	}
	lines, perr := pg.EnsurePublication(ctx, cfg.Postgres.Publication, published)
	for _, line := range lines {
		say("%s", line)
	}
	if perr != nil {
		return report, perr
	}
	switch {
	case err == nil && hasCheckpoint:
		if err := keepFailover(ctx, repl, slot, say); err != nil {
			return report, err
		}
		if len(added) == 0 {
			say("replication slot %s exists with checkpoint %s: nothing to copy", slotName, pos.LSN)
			return report, nil
		}
		return report, addTables(ctx, cfg, log, opts, pg, store, added, created, chunks, slot, pos, say)
	case err == nil && slot.Active:
		return report, &postgres.SlotInUseError{Slot: slotName, PID: slot.ActivePID}
	case err == nil && resumable(chunks, slot.ConfirmedFlushLSN):
		// The slot was made by a setup whose copy did not finish: nothing
		// was acknowledged from it, and its consistent point still starts
		// the stream. Copy what is missing in a new snapshot.
		say("resuming the copy of replication slot %s made at %s", slotName, slot.ConfirmedFlushLSN)
		if err := keepFailover(ctx, repl, slot, say); err != nil {
			return report, err
		}
		c := &copier{cfg: cfg, store: store, log: log, progress: newProgress(ctx, log, opts.Terminal)}
		if err := resume(ctx, c, pg, tables, chunks, slot.ConfirmedFlushLSN, say); err != nil {
			return report, err
		}
		return report, finish(ctx, store, tables, slot.ConfirmedFlushLSN, say)
	case err == nil:
		// A slot without a checkpoint or copy state is left from a setup
		// that did not finish: nothing was acknowledged from it, so start
		// over.
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

	if len(chunks) > 0 {
		if err := store.DeleteChunks(ctx, ""); err != nil {
			return report, err
		}
	}
	for _, t := range tables {
		if err := client.Exec(ctx, db.Truncate(t.Target)); err != nil {
			return report, fmt.Errorf("empty ClickHouse table %s before the copy: %w", t.Target, err)
		}
		// The new copy of an unfinished resync of the former slot.
		if err := dropTarget(ctx, client, ddl.ShadowName(t.Target)); err != nil {
			return report, err
		}
	}
	lsn, name, err := repl.CreateSlot(ctx, slotName)
	if err != nil {
		return report, err
	}
	if repl.ServerVersion() >= postgres.FailoverSlotVersion {
		say("created replication slot %s at %s as a failover slot: standbys that synchronize slots keep it", slotName, lsn)
	} else {
		say("created replication slot %s at %s", slotName, lsn)
	}
	if hasCheckpoint {
		// The former slot's history ends here: the positions of the new
		// one outrank its positions, whatever their LSNs.
		store.SetHistory(server.Identity(pos.History.Epoch + 1))
	}

	// The exported snapshot lives while repl stays idle; copy inside it.
	// Transactions that committed before the consistent point are in the
	// snapshot, those at or after it are streamed: version point − 1 is
	// above the first and below the second (commit records are 8-byte
	// aligned, so none starts there), so a streamed change always wins.
	c := &copier{cfg: cfg, store: store, log: log, progress: newProgress(ctx, log, opts.Terminal)}
	if err := copyAll(ctx, c, pg, tables, nil, snapshot{name: name, lsn: lsn}, lsn, say); err != nil {
		return report, err
	}
	return report, finish(ctx, store, tables, lsn, say)
}

// keepFailover makes a slot that setup keeps a failover slot from
// PostgreSQL 17 on (replication.Conn.CreateSlot makes new ones so): a
// slot made by an older replicator, or on the server before an upgrade. A
// slot in use by the daemon cannot be altered: then the report says to run
// setup again while the daemon is stopped.
func keepFailover(ctx context.Context, repl *replication.Conn, slot postgres.Slot, say func(string, ...any)) error {
	if repl.ServerVersion() < postgres.FailoverSlotVersion || slot.Failover {
		return nil
	}
	inUse := func(pid string) {
		say("replication slot %s is not a failover slot, and it is in use (pid %s): run `replicator setup` again while "+
			"the daemon is stopped to make it one, so that standbys that synchronize slots keep it", slot.Name, pid)
	}
	if slot.Active {
		inUse(slot.ActivePID)
		return nil
	}
	err := repl.EnableFailover(ctx, slot.Name)
	var busy *postgres.SlotInUseError
	switch {
	case errors.As(err, &busy):
		inUse(busy.PID)
		return nil
	case err != nil:
		return err
	}
	say("replication slot %s is now a failover slot: standbys that synchronize slots keep it", slot.Name)
	return nil
}

// pending marks the copies that a setup of a running replication makes
// and returns their tables. A table added to the replication gets the
// mark of a pending copy before the publication sends its changes and
// before its mark in the stream (see addTables), so that a daemon
// streaming meanwhile holds its checkpoint, and a setup run again copies
// it although its target exists by then. A table whose copy is complete
// is copied again when the publication no longer sends it (its changes
// since it left are not in the stream) or when this setup created its
// ClickHouse table again (the rows are gone), and an unfinished copy into
// a new table (a resync's or a setup's) starts over: each such table's
// copy state is replaced by the mark (checkpoint.Store.ReplaceChunks). exists
// holds the new tables of copies (ddl.ShadowName) that exist.
func pending(ctx context.Context, cfg config.Config, store *checkpoint.Store, tables []*mapping.Table, created, exists map[string]bool,
	publication postgres.Publication, chunks map[string][]checkpoint.Chunk, pos checkpoint.Position,
	say func(string, ...any)) ([]*mapping.Table, error) {
	load := currentLoad(chunks, pos)
	mark := func(t *mapping.Table) checkpoint.Chunk {
		// A daemon may write into its ClickHouse table meanwhile (one
		// that names the table, started at any point of this setup): the
		// copy goes into a new table, which the daemon puts in its place
		// (see addTables).
		return checkpoint.Chunk{Source: t.Source, Load: load, Target: ddl.ShadowName(t.Target)}
	}
	// (A replication set up before copies kept state has none at all.)
	legacy := len(chunks) == 0
	for _, t := range tables {
		cs := chunks[t.Source]
		shadow := ddl.ShadowName(t.Target)
		var why string
		switch {
		case checkpoint.Into(cs, shadow) && checkpoint.Horizon(cs) == 0:
			why = "its copy into a new table did not finish (a resync's or a setup's)"
		case !planned(cs) && (!legacy || created[t.Source]):
			continue
		case !publication.Tables[t.Source]:
			why = fmt.Sprintf("it is not in publication %s: its changes since it left are not in the stream", cfg.Postgres.Publication)
		case created[t.Source] && !(checkpoint.CopiedInto(cs, shadow) && exists[shadow]):
			why = fmt.Sprintf("its ClickHouse table %s was gone (dropped?) with the rows of its copy", t.Target)
		default:
			continue
		}
		say("table %s is copied again: %s", t.Source, why)
		m := mark(t)
		if err := store.ReplaceChunks(ctx, m); err != nil {
			return nil, err
		}
		chunks[t.Source] = []checkpoint.Chunk{m}
	}
	var added []*mapping.Table
	var marks []checkpoint.Chunk
	for _, t := range tables {
		cs := chunks[t.Source]
		switch {
		case len(cs) > 0 && checkpoint.Horizon(cs) == 0:
			// Marked above or by an earlier setup, or its copy stopped.
		case len(cs) > 0:
			continue // copied
		case created[t.Source], len(chunks) > 0:
			// Added (or removed and added back) after the copies kept
			// state, or its target was created now.
			m := mark(t)
			marks = append(marks, m)
			chunks[t.Source] = []checkpoint.Chunk{m}
		default:
			continue // a replication set up before copies kept state
		}
		added = append(added, t)
	}
	return added, store.SaveChunks(ctx, marks...)
}

// addTables copies tables added to a replication, in the snapshot of a
// temporary slot at C, while `replicator run` may keep streaming. Their
// copies were marked as pending in the copy state, and each is then marked
// in the stream (markStream) before C: a daemon that meets the mark holds
// its checkpoint from there, below C, whether or not the publication sent
// the table's changes before (FOR ALL TABLES, FOR TABLES IN SCHEMA, a
// table added to the publication first), and a daemon started later finds
// the pending copy. Started again with them configured, it resumes at its
// checkpoint: the tables' changes below C write at most their tombstones
// (their horizon is C), those from C on are written as usual, and changes
// made before the table joined the publication are in the copy.
//
// Each table is copied into a new table, as a resync's copy is, which the
// daemon puts in place of its ClickHouse table when it runs with this
// configuration and the copy is complete. Readers keep the old rows until
// then (of a table removed and added back, of one that left the
// publication), and rows that a daemon still writes into the old table
// (one that names the table may replay its changes from before the mark,
// a TRUNCATE among them) never mix with the copy: the old table may hold
// rows Postgres deleted while the stream did not carry the table; the new
// one holds exactly the rows alive at C. (A copy that an earlier version
// marked into the ClickHouse table itself empties it first, and that
// needs the daemon stopped.)
func addTables(ctx context.Context, cfg config.Config, log hclog.Logger, opts Options, pg *postgres.Conn,
	store *checkpoint.Store, added []*mapping.Table, created map[string]bool, chunks map[string][]checkpoint.Chunk,
	slot postgres.Slot, pos checkpoint.Position, say func(string, ...any)) error {
	names := sources(added)
	load := currentLoad(chunks, pos)
	state := make(map[string][]checkpoint.Chunk, len(chunks))
	for source, cs := range chunks {
		state[source] = cs
	}
	c := &copier{cfg: cfg, store: store, log: log, progress: newProgress(ctx, log, opts.Terminal), inexact: map[string]bool{}}
	copies := make([]*mapping.Table, len(added))
	for i, t := range added {
		copies[i] = t
		switch cs := chunks[t.Source]; {
		case resyncing(cs, t.Target):
			if err := createShadow(ctx, cfg, t, say); err != nil {
				return err
			}
			shadow := *t
			shadow.Target = ddl.ShadowName(t.Target)
			copies[i] = &shadow
		case !created[t.Source] && !planned(cs):
			if slot.Active {
				return fmt.Errorf("table %s is added back onto its existing ClickHouse table %s, which its copy (marked so "+
					"by an earlier version) empties first: stop `replicator run` (pid %s) so that it writes nothing into it meanwhile, then run "+
					"`replicator setup` again", t.Source, t.Target, slot.ActivePID)
			}
			c.inexact[t.Source] = true
		}
	}
	for _, t := range added {
		at, err := markStream(ctx, pg, cfg.Postgres.Slot, t.Source)
		if err != nil {
			return err
		}
		say("copy of %s marked in the WAL %s: a running `replicator run` holds its checkpoint from there until it runs with this configuration", t.Source, at)
	}
	say("copying the added tables %s", strings.Join(names, ", "))
	if err := resume(ctx, c, pg, copies, state, load, say); err != nil {
		return err
	}
	for _, t := range added {
		if err := store.SaveColumns(ctx, t.Source, t.MappedNames()); err != nil {
			return err
		}
	}
	for i, t := range copies {
		if t != added[i] {
			say("table %s is copied into ClickHouse table %s: `replicator run` puts it in place of %s when it runs with this "+
				"configuration; readers see the old rows until then", t.Source, t.Target, added[i].Target)
		}
	}
	if slot.Active {
		say("added tables copied: `replicator run` (pid %s) holds its checkpoint from their marks on; "+
			"restart it with this configuration, or send it SIGHUP once its configuration file names them", slot.ActivePID)
		return nil
	}
	say("added tables copied: start `replicator run` with this configuration")
	return nil
}

// resyncing reports whether a table's copy state is that of a resync (its
// copy goes into the shadow of target) not yet swapped in.
func resyncing(cs []checkpoint.Chunk, target string) bool {
	return checkpoint.Into(cs, ddl.ShadowName(target))
}

// shadows returns the shadow tables a table's copy state writes into.
func shadows(cs []checkpoint.Chunk) []string {
	var out []string
	for _, c := range cs {
		if ddl.IsShadow(c.Target) && !slices.Contains(out, c.Target) {
			out = append(out, c.Target)
		}
	}
	return out
}

// currentLoad returns the load the chunks of added tables join, so that
// the daemon reads every table's copy state: the current one's, or the
// checkpoint of a replication set up before copies kept state.
func currentLoad(chunks map[string][]checkpoint.Chunk, pos checkpoint.Position) pglogrepl.LSN {
	for _, cs := range chunks {
		if len(cs) > 0 {
			return cs[0].Load
		}
	}
	return pos.LSN
}

func sources(tables []*mapping.Table) []string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Source
	}
	return names
}

// finish records the columns each table was copied with (a column gone
// from the stream's first Relation message was dropped or renamed since)
// and saves the slot's consistent point as the first checkpoint.
func finish(ctx context.Context, store *checkpoint.Store, tables []*mapping.Table, lsn pglogrepl.LSN, say func(string, ...any)) error {
	for _, t := range tables {
		if err := store.SaveColumns(ctx, t.Source, t.MappedNames()); err != nil {
			return err
		}
	}
	// Transactions that commit at or after the consistent point are streamed.
	if err := store.Save(ctx, checkpoint.Position{LSN: lsn, Commit: false}); err != nil {
		return err
	}
	say("checkpoint %s saved: `replicator run` streams from here", lsn)
	return nil
}

// resumable reports whether the copy state belongs to the slot: its
// consistent point, which the slot keeps as confirmed position until the
// first acknowledgement.
func resumable(chunks map[string][]checkpoint.Chunk, confirmed pglogrepl.LSN) bool {
	for _, cs := range chunks {
		if len(cs) > 0 && cs[0].Load == confirmed {
			return true
		}
	}
	return false
}

// resume finishes the copy of load (the main slot's consistent point) in
// the snapshot of a temporary slot: see copyAll.
func resume(ctx context.Context, c *copier, pg *postgres.Conn, tables []*mapping.Table,
	chunks map[string][]checkpoint.Chunk, load pglogrepl.LSN, say func(string, ...any)) error {
	repl, err := replication.Connect(ctx, c.cfg.Postgres.DSN)
	if err != nil {
		return err
	}
	defer repl.Close(context.Background())
	lsn, name, err := repl.CreateTempSlot(ctx, tempSlot(c.cfg.Postgres.Slot))
	if err != nil {
		return err
	}
	say("created temporary replication slot %s at %s for the rest of the copy", tempSlot(c.cfg.Postgres.Slot), lsn)
	return copyAll(ctx, c, pg, tables, chunks, snapshot{name: name, lsn: lsn}, load, say)
}

// tempSlot names the temporary slot of a resumed copy.
func tempSlot(slot string) string {
	const suffix = "_copy"
	if len(slot)+len(suffix) > 63 {
		slot = slot[:63-len(suffix)]
	}
	return slot + suffix
}

// copyAll brings every table's copy to snap: chunks not yet copied are
// copied whole, and chunks copied in an earlier snapshot (by a setup that
// stopped before it finished) get again every row version created since
// that snapshot's xmin. Every row alive in snap then is stored with
// version snap.lsn − 1 unless its version was already visible to the
// earlier snapshot, which stored it. Rows deleted in between are deleted
// by the stream, which starts at load and writes the tombstones of every
// change; the rows of changes below snap.lsn are superseded by the copy
// (see checkpoint.Horizon). A table copied whole in one snapshot is left
// as it is. A table rewritten since its plan (its file changed) is emptied
// and copied again.
func copyAll(ctx context.Context, c *copier, pg *postgres.Conn, tables []*mapping.Table,
	chunks map[string][]checkpoint.Chunk, snap snapshot, load pglogrepl.LSN, say func(string, ...any)) error {
	ps, err := pg.BeginSnapshot(ctx, snap.name)
	if err != nil {
		return err
	}
	defer ps.Close()
	if snap.xmin, snap.xmax, err = ps.Xids(ctx); err != nil {
		return err
	}
	c.snap = snap
	c.tables = tables
	tidRange := pg.ServerVersion() >= postgres.TIDRangeVersion
	var jobs []job
	// The storage of each table in the snapshot: what its copy agrees
	// with, recorded once the copy is complete (see postgres.Storage).
	storage := make(map[string]postgres.Storage, len(tables))
	for _, t := range tables {
		tp, err := planTable(ctx, ps, t, chunks[t.Source], c.cfg.Load.ChunkSize, tidRange, load)
		if err != nil {
			return err
		}
		if storage[t.Source], err = ps.Storage(ctx, t.Source); err != nil {
			return err
		}
		cs := tp.chunks
		// A table without copy state in a resumed copy was added to the
		// configuration since (or removed and added back), or is copied
		// again: its target may hold rows of an older copy, among them
		// rows Postgres deleted since, which no change will delete.
		stale := chunks != nil && !planned(chunks[t.Source]) && !ddl.IsShadow(t.Target)
		if tp.rewritten {
			say("table %s was rewritten since its copy began (a partition's file changed or a partition is gone): copying it again", t.Source)
			// (A mark, never no state: a daemon on another configuration
			// holds its checkpoint while the table's copy is pending.)
			if err := c.store.ReplaceChunks(ctx, checkpoint.Chunk{Source: t.Source, Load: load, Target: t.Target}); err != nil {
				return err
			}
			cs, stale = nil, true
		}
		if stale {
			if err := emptyTarget(ctx, c.cfg, t); err != nil {
				return err
			}
			say("emptied ClickHouse table %s before its copy", t.Target)
		}
		if tp.rewritten {
			if tp, err = planTable(ctx, ps, t, nil, c.cfg.Load.ChunkSize, tidRange, load); err != nil {
				return err
			}
			cs = tp.chunks
		}
		if len(cs) == 0 {
			// A partitioned table without partitions: its copy, complete
			// in this snapshot, holds nothing (a later plan finds the
			// table is not a leaf and copies it again).
			empty := checkpoint.Chunk{Source: t.Source, Relation: t.Source, Target: t.Target, Load: load,
				LSN: snap.lsn, Xmin: snap.xmin}
			if !c.inexact[t.Source] {
				empty.Whole = snap.lsn
			}
			tp.added = []checkpoint.Chunk{empty}
		}
		if len(tp.added) > 0 {
			if err := c.store.SaveChunks(ctx, tp.added...); err != nil {
				return err
			}
		}
		rel := tp.size
		fresh := make(map[uint32]bool, len(tp.added))
		for _, c := range tp.added {
			fresh[c.Chunk] = true
		}
		tj, done, pages := tableJobs(t, cs, snap, tp.pages, fresh)
		c.progress.table(t.Source, len(cs), done, pages, rel.RowsPerPage)
		if len(tj) == 0 {
			say("table %s is copied", t.Source)
			continue
		}
		whole := 0
		for _, j := range tj {
			if j.since == nil {
				whole++
			}
		}
		say("copying %s with version %s: %d of %d chunks whole, %d for the rows changed since their copy",
			t.Source, snap.lsn-1, whole, len(cs), len(tj)-whole)
		jobs = append(jobs, tj...)
	}
	if err := ps.Commit(ctx); err != nil {
		return err
	}
	start := time.Now()
	logCtx, stopLog := context.WithCancel(ctx)
	go c.progress.run(logCtx)
	err = c.run(ctx, jobs)
	stopLog()
	c.progress.wait()
	var re *mapping.RowError
	if errors.As(err, &re) {
		return fmt.Errorf("%w; change the value in Postgres or the column's type in the configuration, "+
			"then run `replicator setup` again: it resumes the copy", err)
	}
	if err != nil {
		return err
	}
	for _, t := range tables {
		if err := c.store.SaveStorage(ctx, t.Source, storage[t.Source]); err != nil {
			return err
		}
		for col, n := range t.Invalid() {
			say("stored %d values of %s column %s that its type cannot hold by its invalid option", n, t.Source, col)
		}
		if tp := c.progress.get(t.Source); tp != nil && tp.rows.Load() > 0 {
			rows, secs := tp.rows.Load(), time.Since(start).Seconds()
			say("copied %d rows of %s in %.1fs (%.0f rows/s) with version %s", rows, t.Source, secs,
				float64(rows)/max(secs, 1e-9), snap.lsn-1)
		}
	}
	return nil
}

// tablePlan is a table's chunks in a snapshot.
type tablePlan struct {
	chunks []checkpoint.Chunk
	// added are the chunks planned now: of a table without copy state,
	// or of partitions created since the plan.
	added []checkpoint.Chunk
	// pages holds the heap pages of each relation (the table or its
	// partitions) in the snapshot.
	pages map[string]uint32
	// size sums the relations: pages and the planner's rows per page.
	size postgres.Relation
	// rewritten reports that a relation of the plan was rewritten or is
	// gone: the table's copy starts over.
	rewritten bool
}

// planTable plans the copy of t in the snapshot: its relations (the table,
// or the leaf partitions of a partitioned table) are split into chunks;
// chunks planned before (cs) are kept, and partitions created since get
// chunks of their own.
func planTable(ctx context.Context, ps *postgres.Snapshot, t *mapping.Table, cs []checkpoint.Chunk,
	chunkSize uint64, tidRange bool, load pglogrepl.LSN) (tablePlan, error) {
	leaves, err := ps.Partitions(ctx, t.Source)
	if err != nil {
		return tablePlan{}, err
	}
	tp := tablePlan{chunks: cs, pages: make(map[string]uint32, len(leaves))}
	rels := make(map[string]postgres.Relation, len(leaves))
	var rows float64
	for _, leaf := range leaves {
		rel, err := ps.Relation(ctx, leaf)
		if err != nil {
			return tablePlan{}, err
		}
		rels[leaf] = rel
		tp.pages[leaf] = rel.Pages
		tp.size.Pages += rel.Pages
		rows += float64(rel.Pages) * rel.RowsPerPage
	}
	if tp.size.Pages > 0 {
		tp.size.RowsPerPage = rows / float64(tp.size.Pages)
	}
	if !planned(cs) {
		// Nothing, or the mark of a copy that a setup could not start
		// (see Setup).
		cs, tp.chunks = nil, nil
	}
	planned := make(map[string]bool)
	for _, c := range cs {
		rel, ok := rels[c.Relation]
		if !ok || rel.Filenode != c.Filenode {
			tp.rewritten = true
			return tp, nil
		}
		planned[c.Relation] = true
	}
	for _, leaf := range leaves {
		if planned[leaf] {
			continue
		}
		added := plan(t.Source, leaf, uint32(len(tp.chunks)), rels[leaf], chunkSize, tidRange, load)
		for i := range added {
			added[i].Target = t.Target
		}
		tp.added = append(tp.added, added...)
		tp.chunks = append(tp.chunks, added...)
	}
	return tp, nil
}

// createShadow creates the new ClickHouse table that the copy of t goes
// into (ddl.ShadowName), empty.
func createShadow(ctx context.Context, cfg config.Config, t *mapping.Table, say func(string, ...any)) error {
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	shadow, err := newShadow(ctx, client, t)
	if err != nil {
		return err
	}
	say("created ClickHouse table %s.%s for the new copy of %s", client.DB().Name, shadow.Target, t.Source)
	return nil
}

// truncates reports whether a table replicates TRUNCATE (not ignored).
func truncates(tables []config.Table) bool {
	for _, t := range tables {
		if !slices.Contains(t.Ignore, mapping.IgnoreTruncate) {
			return true
		}
	}
	return false
}

// planned reports whether a table's copy state holds planned chunks: not
// nothing, nor only the mark of a copy that a setup could not start.
func planned(cs []checkpoint.Chunk) bool {
	return len(cs) > 0 && !(len(cs) == 1 && cs[0].Relation == "")
}

// emptyTarget truncates the ClickHouse target of t.
func emptyTarget(ctx context.Context, cfg config.Config, t *mapping.Table) error {
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.Exec(ctx, client.DB().Truncate(t.Target)); err != nil {
		return fmt.Errorf("empty ClickHouse table %s before the copy: %w", t.Target, err)
	}
	return nil
}

// tableJobs returns the jobs that bring a table's chunks to snap, how many
// chunks need nothing and how many pages the jobs copy whole (relPages
// holds the pages of each relation; fresh the chunks planned by this run).
func tableJobs(t *mapping.Table, cs []checkpoint.Chunk, snap snapshot, relPages map[string]uint32,
	fresh map[uint32]bool) (jobs []job, done int, pages int64) {
	if h := checkpoint.Horizon(cs); h != 0 && allAt(cs, h) {
		return nil, len(cs), 0
	}
	for _, c := range cs {
		switch {
		case c.LSN == snap.lsn:
			done++
		case c.Done() && snap.xmax-c.Xmin < maxWindow:
			jobs = append(jobs, job{table: t, chunk: c, since: &xidWindow{Since: c.Xmin, Until: snap.xmax}})
		default:
			end := c.EndPage
			if end == 0 {
				end = max(relPages[c.Relation], c.FirstPage)
			}
			jobs = append(jobs, job{table: t, chunk: c, pages: int64(end - c.FirstPage), fresh: fresh[c.Chunk]})
			pages += int64(end - c.FirstPage)
		}
	}
	return jobs, done, pages
}

// allAt reports whether every chunk was copied in the snapshot at lsn.
func allAt(cs []checkpoint.Chunk, lsn pglogrepl.LSN) bool {
	for _, c := range cs {
		if c.LSN != lsn {
			return false
		}
	}
	return true
}

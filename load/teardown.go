package load

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// Teardown is what `replicator teardown` removes, read from the servers
// before anything changes: Steps says what Run will do, in order, and Kept
// what it leaves and why. Close releases its connections.
type Teardown struct {
	Steps []string
	Kept  []string

	pg       *postgres.Conn
	ch       *sink.Client
	slot     string
	pub      string
	dropSlot bool
	dropPub  bool
	// marks is whether postgres.MarkTable exists, otherMarks whether
	// other slots have rows in it.
	marks, otherMarks bool
	// statements are the ClickHouse statements Run executes, each with
	// its arguments.
	statements []statement
}

type statement struct {
	sql  string
	args []any
}

// ownTables are the replicator's tables in the target database; each has
// a slot column.
var ownTables = []string{ddl.CheckpointTable, ddl.TruncationTable, ddl.ProgressTable, ddl.ChunkTable, ddl.ColumnTable,
	ddl.StorageTable, ddl.RecoveryTable}

// PlanTeardown reads what a teardown of cfg's replication would remove:
// the replication slot, unless a process streams from it (that is a
// *postgres.SlotInUseError naming its pid); the publication, only when
// `replicator setup` made it (postgres.PublicationMark) and no other
// pgoutput slot of the database may stream with it; the slot's rows of
// postgres.MarkTable (the table when no other slot has rows); and with clickhouse
// the targets and views of the configured tables (and the shadow tables
// of a resync) and the slot's rows of the replicator's tables, each table
// dropped when no other slot has rows in it.
func PlanTeardown(ctx context.Context, cfg config.Config, clickhouse bool) (_ *Teardown, err error) {
	t := &Teardown{slot: cfg.Postgres.Slot, pub: cfg.Postgres.Publication}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if t.pg, err = postgres.Connect(ctx, cfg.Postgres.DSN); err != nil {
		return nil, err
	}
	slot, err := t.pg.Slot(ctx, t.slot)
	switch {
	case errors.Is(err, postgres.ErrSlotMissing):
		t.Kept = append(t.Kept, fmt.Sprintf("replication slot %s does not exist", t.slot))
	case err != nil:
		return nil, err
	case slot.Active:
		return nil, fmt.Errorf("refusing to drop a slot in use (stop `replicator run` first): %w",
			&postgres.SlotInUseError{Slot: t.slot, PID: slot.ActivePID})
	default:
		t.dropSlot = true
		retained := ""
		if n, ok := slot.RetainedWAL(); ok {
			retained = fmt.Sprintf(" (it retains %d bytes of WAL)", n)
		}
		t.Steps = append(t.Steps, fmt.Sprintf("drop replication slot %s%s", t.slot, retained))
	}
	exists, bySetup, err := t.pg.PublicationMade(ctx, t.pub)
	if err != nil {
		return nil, err
	}
	others, err := t.pg.OtherSlots(ctx, t.slot)
	if err != nil {
		return nil, err
	}
	switch {
	case !exists:
		t.Kept = append(t.Kept, fmt.Sprintf("publication %s does not exist", t.pub))
	case !bySetup:
		t.Kept = append(t.Kept, fmt.Sprintf("publication %s: kept, as `replicator setup` did not create it and it may serve others "+
			"(DROP PUBLICATION %s drops it)", t.pub, postgres.QuoteIdent(t.pub)))
	case len(others) > 0:
		t.Kept = append(t.Kept, fmt.Sprintf("publication %s: kept, as other slots of the database may stream with it: %s",
			t.pub, strings.Join(others, ", ")))
	default:
		t.dropPub = true
		t.Steps = append(t.Steps, fmt.Sprintf("drop publication %s (created by `replicator setup`)", t.pub))
	}
	if t.marks, t.otherMarks, err = t.pg.MarksOfOthers(ctx, t.slot); err != nil {
		return nil, err
	}
	switch {
	case t.marks && t.otherMarks:
		t.Steps = append(t.Steps, fmt.Sprintf("delete slot %s's rows from Postgres table %s (other slots have rows in it)", t.slot, postgres.MarkTable))
	case t.marks:
		t.Steps = append(t.Steps, fmt.Sprintf("drop Postgres table %s, where setup marks resyncs before PostgreSQL 14 "+
			"(no other slot has rows in it)", postgres.MarkTable))
	}
	if !clickhouse {
		t.Kept = append(t.Kept, fmt.Sprintf("ClickHouse database %s: kept (--drop-clickhouse drops the targets, their views and "+
			"the slot's rows of the replicator's tables)", cfg.ClickHouse.Database))
		return t, nil
	}
	if t.ch, err = sink.Open(ctx, cfg.ClickHouse); err != nil {
		return nil, err
	}
	return t, t.planClickHouse(ctx, cfg)
}

// planClickHouse adds the ClickHouse steps: views, then tables, then the
// replicator's own tables.
func (t *Teardown) planClickHouse(ctx context.Context, cfg config.Config) error {
	db := t.ch.DB()
	rows, err := t.ch.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", db.Name)
	if err != nil {
		return fmt.Errorf("list the tables of ClickHouse database %s: %w", db.Name, err)
	}
	existing := map[string]bool{}
	for _, r := range rows {
		if name, ok := r[0].(string); ok {
			existing[name] = true
		}
	}
	var views, tables []string
	for _, tc := range cfg.Tables {
		views = append(views, ddl.ViewOf(tc.Target), ddl.CommittedOf(tc.Target))
		for _, name := range []string{tc.Target, ddl.ShadowName(tc.Target), ddl.ReplacedName(tc.Target)} {
			tables = append(tables, name)
			if db.Cluster != "" {
				tables = append(tables, ddl.LocalName(name))
			}
		}
	}
	for _, name := range append(views, tables...) {
		if existing[name] {
			t.statements = append(t.statements, statement{sql: db.Drop(name)})
			t.Steps = append(t.Steps, fmt.Sprintf("drop ClickHouse table %s.%s", db.Name, name))
		}
	}
	for _, name := range ownTables {
		if !existing[name] {
			continue
		}
		rows, err := t.ch.Query(ctx, fmt.Sprintf("SELECT DISTINCT slot FROM %s WHERE slot != ? AND slot != ''", db.Table(name)), t.slot)
		if err != nil {
			return fmt.Errorf("read the slots of %s: %w", name, err)
		}
		if len(rows) == 0 {
			t.statements = append(t.statements, statement{sql: db.Drop(name)})
			t.Steps = append(t.Steps, fmt.Sprintf("drop ClickHouse table %s.%s (no other slot has rows in it)", db.Name, name))
			continue
		}
		t.statements = append(t.statements, statement{sql: fmt.Sprintf("ALTER TABLE %s DELETE WHERE slot = ?", db.Table(name)),
			args: []any{t.slot}})
		t.Steps = append(t.Steps, fmt.Sprintf("delete slot %s's rows from ClickHouse table %s.%s (other slots have rows in it)",
			t.slot, db.Name, name))
	}
	return nil
}

// Run carries out the steps in order: the slot first, so that Postgres
// stops retaining WAL for it even if a later step fails; run again, a
// teardown does what is left. The report says what was done.
func (t *Teardown) Run(ctx context.Context) (report []string, err error) {
	say := func(format string, args ...any) { report = append(report, fmt.Sprintf(format, args...)) }
	if t.dropSlot {
		if err := t.pg.DropSlot(ctx, t.slot); err != nil {
			return report, err
		}
		say("dropped replication slot %s", t.slot)
	}
	if t.dropPub {
		if err := t.pg.DropPublication(ctx, t.pub); err != nil {
			return report, err
		}
		say("dropped publication %s", t.pub)
	}
	if t.marks {
		if err := t.pg.DropMarks(ctx, t.slot, t.otherMarks); err != nil {
			return report, err
		}
		if t.otherMarks {
			say("deleted slot %s's rows from %s", t.slot, postgres.MarkTable)
		} else {
			say("dropped table %s", postgres.MarkTable)
		}
	}
	for _, s := range t.statements {
		if err := t.ch.Exec(ctx, s.sql, s.args...); err != nil {
			return report, fmt.Errorf("%s: %w", strings.TrimSpace(s.sql), err)
		}
		say("%s", strings.TrimSpace(s.sql))
	}
	return report, nil
}

// Close releases the connections; it may be called more than once.
func (t *Teardown) Close() {
	if t.pg != nil {
		t.pg.Close()
		t.pg = nil
	}
	if t.ch != nil {
		t.ch.Close()
		t.ch = nil
	}
}

// Empty reports whether the teardown has nothing to do.
func (t *Teardown) Empty() bool { return len(t.Steps) == 0 }

package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
)

// MarkTable is the table whose rows mark a resync in the stream on servers
// whose pgoutput sends no logical messages (before MessagesVersion): one
// row per slot and table, written again by every resync. `replicator setup`
// creates it there and adds it to the publication; its row's insert or
// update reaches the stream in commit order, where a logical message
// would have been.
const MarkTable = "public.replicator_marks"

// The columns of MarkTable that name the resync.
const (
	MarkSlotColumn  = "slot"
	MarkTableColumn = "source"
)

const markDDL = `CREATE TABLE IF NOT EXISTS public.replicator_marks (
  slot      text NOT NULL,
  source    text NOT NULL,
  marked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot, source)
)`

// NeedsMarkTable reports whether a server of major version major marks
// resyncs with MarkTable rather than with logical messages.
func NeedsMarkTable(major int) bool { return major < MessagesVersion }

// EnsureMarkTable creates MarkTable when it does not exist; it reports
// whether it did.
func (c *Conn) EnsureMarkTable(ctx context.Context) (created bool, err error) {
	var exists bool
	if err := c.pg.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", MarkTable).Scan(&exists); err != nil {
		return false, fmt.Errorf("read table %s: %w", MarkTable, Describe(err, "", ""))
	}
	if exists {
		return false, nil
	}
	if _, err := c.pg.Exec(ctx, markDDL); err != nil {
		return false, fmt.Errorf("create table %s (it marks resyncs in the stream of PostgreSQL %d, whose pgoutput sends no logical messages): %w",
			MarkTable, c.ServerVersion(), Describe(err, "", ""))
	}
	return true, nil
}

// CheckMarkTable returns an error that says what to run when publication
// pub does not send the changes of MarkTable.
func (c *Conn) CheckMarkTable(ctx context.Context, pub string) error {
	schema, name, _ := strings.Cut(MarkTable, ".")
	var published bool
	err := c.pg.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
		pub, schema, name).Scan(&published)
	if err != nil {
		return fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	if !published {
		return fmt.Errorf("publication %s does not publish %s, which marks a resync in the stream of PostgreSQL %d "+
			"(its pgoutput sends no logical messages): run `replicator setup`, which creates the table and adds it", pub, MarkTable, c.ServerVersion())
	}
	return nil
}

// MarkResync writes the row of MarkTable that marks a resync of table for
// slot in the stream, and returns the WAL position after its commit: the
// mark's commit LSN is below it. CheckMarkTable tells beforehand whether
// the stream will carry it.
func (c *Conn) MarkResync(ctx context.Context, slot, table string) (pglogrepl.LSN, error) {
	_, err := c.pg.Exec(ctx, "INSERT INTO "+QuoteTable(MarkTable)+" ("+MarkSlotColumn+", "+MarkTableColumn+") VALUES ($1, $2) "+
		"ON CONFLICT ("+MarkSlotColumn+", "+MarkTableColumn+") DO UPDATE SET marked_at = now()", slot, table)
	if err != nil {
		return 0, fmt.Errorf("mark the resync in %s: %w", MarkTable, Describe(err, "", ""))
	}
	return c.CurrentWAL(ctx)
}

// MarksOfOthers reports whether MarkTable exists and whether it holds
// rows of slots other than slot.
func (c *Conn) MarksOfOthers(ctx context.Context, slot string) (exists, others bool, err error) {
	if err := c.pg.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", MarkTable).Scan(&exists); err != nil || !exists {
		return false, false, describeMarks(err)
	}
	err = c.pg.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+QuoteTable(MarkTable)+" WHERE "+MarkSlotColumn+" <> $1)", slot).Scan(&others)
	return true, others, describeMarks(err)
}

// DropMarks removes slot's rows of MarkTable, and the table when others
// is false (no other slot has rows in it).
func (c *Conn) DropMarks(ctx context.Context, slot string, others bool) error {
	var err error
	if others {
		_, err = c.pg.Exec(ctx, "DELETE FROM "+QuoteTable(MarkTable)+" WHERE "+MarkSlotColumn+" = $1", slot)
	} else {
		_, err = c.pg.Exec(ctx, "DROP TABLE IF EXISTS "+QuoteTable(MarkTable))
	}
	return describeMarks(err)
}

func describeMarks(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("table %s: %w", MarkTable, Describe(err, "", ""))
}

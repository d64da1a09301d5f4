package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// FilterVersion is the first major version whose publications can filter
// a table's rows (WHERE) and columns (a column list).
const FilterVersion = 15

// Publication is what a publication sends, as far as the replication of
// configured tables depends on it.
type Publication struct {
	// Exists reports whether the publication exists.
	Exists bool
	// Tables holds the tables it publishes ("schema.name"), by whatever
	// means: FOR ALL TABLES, FOR TABLES IN SCHEMA, FOR TABLE.
	Tables map[string]bool
	// Filtered holds, per table published with a row filter or a column
	// list, what it filters, in words.
	Filtered map[string]string
	// The actions it publishes.
	Insert, Update, Delete, Truncate bool
}

// Publication reads what publication pub sends of tables ("schema.name").
func (c *Conn) Publication(ctx context.Context, pub string, tables []string) (Publication, error) {
	p := Publication{Tables: map[string]bool{}, Filtered: map[string]string{}}
	err := c.pg.QueryRow(ctx, "SELECT true, pubinsert, pubupdate, pubdelete, "+c.pubTruncate()+" FROM pg_publication WHERE pubname = $1",
		pub).Scan(&p.Exists, &p.Insert, &p.Update, &p.Delete, &p.Truncate)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	rows, err := c.pg.Query(ctx, "SELECT schemaname || '.' || tablename FROM pg_publication_tables "+
		"WHERE pubname = $1 AND schemaname || '.' || tablename = ANY ($2)", pub, tables)
	if err != nil {
		return p, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return p, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
		}
		p.Tables[t] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	if c.ServerVersion() < FilterVersion {
		return p, nil
	}
	rows, err = c.pg.Query(ctx, `SELECT n.nspname || '.' || cl.relname, coalesce(pg_get_expr(pr.prqual, pr.prrelid), ''),
			coalesce((SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a
				WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs::int2[])), '')
		FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
		JOIN pg_class cl ON cl.oid = pr.prrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
		WHERE p.pubname = $1 AND (pr.prqual IS NOT NULL OR pr.prattrs IS NOT NULL)`, pub)
	if err != nil {
		return p, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	defer rows.Close()
	for rows.Next() {
		var t, where, cols string
		if err := rows.Scan(&t, &where, &cols); err != nil {
			return p, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
		}
		var what []string
		if where != "" {
			what = append(what, "rows WHERE "+where)
		}
		if cols != "" {
			what = append(what, "columns ("+cols+")")
		}
		p.Filtered[t] = strings.Join(what, " and ")
	}
	return p, rows.Err()
}

// pubTruncate is pg_publication's column of TRUNCATE, or true before
// Postgres 11, which replicates none.
func (c *Conn) pubTruncate() string {
	if c.ServerVersion() < 11 {
		return "true"
	}
	return "pubtruncate"
}

// CheckActions returns an error that says what to run when p does not
// publish every insert, update and delete, and every TRUNCATE when
// truncates is set (a configured table replicates them).
func (p Publication) CheckActions(pub string, truncates bool) error {
	if p.Insert && p.Update && p.Delete && (p.Truncate || !truncates) {
		return nil
	}
	return fmt.Errorf("publication %s does not publish every insert, update, delete and truncate, so the stream lacks "+
		"changes of the tables: run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate'); changes made "+
		"while it did not are not in the stream, so copy the tables again afterwards (`replicator resync --config FILE "+
		"--table ...` for each, or drop the slot and run `replicator setup`)", pub, QuoteIdent(pub))
}

// CheckFilters returns an error naming the first of tables that p
// publishes with a row filter or a column list, and the statement that
// publishes it whole. A copy reads every row and column of a table, while
// the stream would carry only some, and a filter changed later changes
// which rows the stream sends without a change of the rows themselves:
// neither can keep ClickHouse equal to what Postgres sends.
func (p Publication) CheckFilters(pub string, tables []string) error {
	for _, t := range tables {
		if what, ok := p.Filtered[t]; ok {
			return fmt.Errorf("publication %s publishes table %s with a filter (%s): the replicator copies and replicates "+
				"whole tables; run ALTER PUBLICATION %s DROP TABLE %s, then `replicator setup`, which publishes it whole "+
				"and copies it again", pub, t, what, QuoteIdent(pub), QuoteTable(t))
		}
	}
	return nil
}

// PublicationMark is the comment `replicator setup` gives the publication
// it creates: `replicator teardown` drops a publication only with it, as
// one made by someone else (FOR ALL TABLES, say) may serve others.
const PublicationMark = "created by replicator setup"

// PublicationMade reports whether publication pub exists and whether
// `replicator setup` made it (it carries PublicationMark).
func (c *Conn) PublicationMade(ctx context.Context, pub string) (exists, bySetup bool, err error) {
	var comment string
	err = c.pg.QueryRow(ctx, "SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1",
		pub).Scan(&comment)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, false, nil
	case err != nil:
		return false, false, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", pub))
	}
	return true, comment == PublicationMark, nil
}

// DropPublication drops publication pub if it exists.
func (c *Conn) DropPublication(ctx context.Context, pub string) error {
	if _, err := c.pg.Exec(ctx, "DROP PUBLICATION IF EXISTS "+QuoteIdent(pub)); err != nil {
		return fmt.Errorf("drop publication %s: %w", pub, Describe(err, "", pub))
	}
	return nil
}

// OtherSlots returns the pgoutput slots of the connection's database other
// than slot: clients that may stream with the same publication.
func (c *Conn) OtherSlots(ctx context.Context, slot string) ([]string, error) {
	rows, err := c.pg.Query(ctx, "SELECT slot_name FROM pg_replication_slots WHERE plugin = 'pgoutput' "+
		"AND database = current_database() AND slot_name <> $1 ORDER BY slot_name", slot)
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", Describe(err, "", ""))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", Describe(err, "", ""))
	}
	return names, nil
}

// DropSlot drops replication slot slot; a slot in use is a
// *SlotInUseError.
func (c *Conn) DropSlot(ctx context.Context, slot string) error {
	if _, err := c.pg.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
		return fmt.Errorf("drop replication slot %s: %w", slot, Describe(err, slot, ""))
	}
	return nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/replicator/replicator/mapping"
)

// Columns reads the columns of table ("schema.name") that publication
// sends, in the order pgoutput sends them, marking the replica identity.
// A table whose updates and deletes cannot be replicated is an error that
// says what to change.
//
// A generated column is among them only when the stream carries it: a
// stored one when the publication publishes them (see
// PublishesGenerated), a virtual one never. A copy reads exactly these
// columns, so the copy and the stream agree on every column.
func (c *Conn) Columns(ctx context.Context, table, publication string) ([]mapping.SourceColumn, error) {
	schema, name, _ := strings.Cut(table, ".")
	var ident string
	var hasPK bool
	err := c.pg.QueryRow(ctx, `SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, name).Scan(&ident, &hasPK)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("table %s does not exist in Postgres", table)
	}
	if err != nil {
		return nil, fmt.Errorf("read table %s: %w", table, Describe(err, "", ""))
	}
	if err := checkIdentity(table, ident, hasPK); err != nil {
		return nil, err
	}
	stored, err := c.PublishesGenerated(ctx, publication)
	if err != nil {
		return nil, err
	}
	rows, err := c.pg.Query(ctx, `SELECT a.attname, a.atttypid::int8, a.atttypmod,
		CASE c.relreplident
			WHEN 'f' THEN true
			WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))
			WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY (i.indkey))
			ELSE false END,
		a.attgenerated::text
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, Describe(err, "", ""))
	}
	var all []CatalogColumn
	for rows.Next() {
		var col CatalogColumn
		var oid int64
		if err := rows.Scan(&col.Name, &oid, &col.TypeMod, &col.Identity, &col.Generated); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", table, Describe(err, "", ""))
		}
		col.TypeOID = uint32(oid)
		all = append(all, col)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, Describe(err, "", ""))
	}
	cols, err := PublishedColumns(table, publication, all, stored)
	if err != nil {
		return nil, err
	}
	if err := c.DescribeTypes(ctx, cols); err != nil {
		return nil, err
	}
	return cols, nil
}

// CatalogColumn is a live column as pg_attribute describes it.
type CatalogColumn struct {
	mapping.SourceColumn
	// Generated is pg_attribute.attgenerated: "" for a column that stores
	// what is written to it, "s" for a stored generated column, "v" for a
	// virtual one (18).
	Generated string
}

// PublishedColumns returns the columns of cols that pgoutput sends: every
// column that is not generated, and the stored generated ones when stored
// (the publication publishes them). A replica identity that includes a
// generated column the stream lacks is an error: a delete would carry a
// key without it (before 18; 18 refuses the UPDATE or DELETE in Postgres).
func PublishedColumns(table, publication string, cols []CatalogColumn, stored bool) ([]mapping.SourceColumn, error) {
	var out []mapping.SourceColumn
	for _, c := range cols {
		switch {
		case c.Generated == "" || c.Generated == "s" && stored:
			out = append(out, c.SourceColumn)
		case c.Identity:
			return nil, fmt.Errorf("table %s: column %s of the replica identity is a generated column that publication %s "+
				"does not send, so updates and deletes would carry keys without it: %s, or choose a replica identity without it "+
				"(ALTER TABLE %s REPLICA IDENTITY USING INDEX ...)", table, c.Name, publication,
				publishGeneratedHint(table, publication, c.Generated), QuoteTable(table))
		}
	}
	return out, nil
}

// publishGeneratedHint says how a generated column of kind (attgenerated)
// can reach the stream.
func publishGeneratedHint(table, publication, kind string) string {
	if kind == "v" {
		return "a virtual generated column is never published; make it STORED"
	}
	return fmt.Sprintf("on PostgreSQL %d or later run ALTER PUBLICATION %s SET (publish_generated_columns = stored) "+
		"and then `replicator resync --config FILE --table %s`", GeneratedVersion, QuoteIdent(publication), table)
}

// UnsentGenerated returns the generated columns of table ("schema.name")
// that publication does not send, and so neither the copy nor ClickHouse
// has (see Columns), each with why.
func (c *Conn) UnsentGenerated(ctx context.Context, table, publication string) ([]string, error) {
	stored, err := c.PublishesGenerated(ctx, publication)
	if err != nil {
		return nil, err
	}
	rows, err := c.pg.Query(ctx, `SELECT a.attname, a.attgenerated::text FROM pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
		ORDER BY a.attnum`, QuoteTable(table))
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, Describe(err, "", ""))
	}
	var out []string
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read columns of %s: %w", table, Describe(err, "", ""))
		}
		switch {
		case kind == "v":
			out = append(out, name+" (virtual: never published)")
		case !stored:
			out = append(out, fmt.Sprintf("%s (stored: %s)", name, publishGeneratedHint(table, publication, kind)))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, Describe(err, "", ""))
	}
	return out, nil
}

// PublishesGenerated reports whether publication sends stored generated
// columns (publish_generated_columns = stored, PostgreSQL 18 and later).
// A publication that does not exist yet does on 18 and later:
// `replicator setup` creates it so (see EnsurePublication).
func (c *Conn) PublishesGenerated(ctx context.Context, publication string) (bool, error) {
	if c.ServerVersion() < GeneratedVersion {
		return false, nil
	}
	var gen string
	err := c.pg.QueryRow(ctx, "SELECT pubgencols::text FROM pg_publication WHERE pubname = $1", publication).Scan(&gen)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read publication %s: %w", publication, Describe(err, "", publication))
	}
	return gen == "s", nil
}

// DescribeTypes completes columns of types a user created from the
// catalog: a domain is described by its base type (and the base's type
// modifier), an array by its element type, an enum or an hstore (the
// extension's type, in any schema; or an array of one) is marked. Built-in types need no catalog (see mapping.Source).
func (c *Conn) DescribeTypes(ctx context.Context, cols []mapping.SourceColumn) error {
	for i := range cols {
		col := &cols[i]
		if col.TypeOID < mapping.FirstUserOID {
			continue
		}
		t, err := c.describeType(ctx, col.TypeOID, 0)
		if err != nil {
			return fmt.Errorf("describe the type of column %s: %w", col.Name, err)
		}
		col.TypeOID, col.Enum, col.Labels, col.Hstore = t.oid, t.enum, t.labels, t.hstore
		if t.mod != -1 {
			col.TypeMod = t.mod
		}
		if t.array {
			e, err := c.describeType(ctx, t.elem, 0)
			if err != nil {
				return fmt.Errorf("describe the element type of column %s: %w", col.Name, err)
			}
			col.Elem, col.Enum, col.Hstore = e.oid, e.enum, e.hstore
			if e.mod != -1 {
				col.TypeMod = e.mod
			}
		}
	}
	return nil
}

// pgType is a type as DescribeTypes resolves it.
type pgType struct {
	oid, elem   uint32
	mod         int32
	enum, array bool
	hstore      bool
	// labels are an enum's, in sort order.
	labels []string
}

// describeType reads a type, following domains to their base type.
func (c *Conn) describeType(ctx context.Context, oid uint32, depth int) (pgType, error) {
	if depth > 8 {
		return pgType{}, fmt.Errorf("type %d: domains nested too deep", oid)
	}
	var typtype, category, name string
	var elem, base uint32
	var mod int32
	err := c.pg.QueryRow(ctx, "SELECT typtype::text, typcategory::text, typelem, typbasetype, typtypmod, typname::text FROM pg_type WHERE oid = $1",
		oid).Scan(&typtype, &category, &elem, &base, &mod, &name)
	if err != nil {
		return pgType{}, fmt.Errorf("read type %d: %w", oid, Describe(err, "", ""))
	}
	switch {
	case typtype == "d":
		t, err := c.describeType(ctx, base, depth+1)
		if err == nil && mod != -1 {
			t.mod = mod
		}
		return t, err
	case typtype == "e":
		labels, err := c.enumLabels(ctx, oid)
		return pgType{oid: oid, mod: -1, enum: true, labels: labels}, err
	case category == "A" && elem != 0:
		return pgType{oid: oid, mod: -1, elem: elem, array: true}, nil
	}
	// hstore is a base type of its extension, in whichever schema it
	// was created.
	return pgType{oid: oid, mod: -1, hstore: typtype == "b" && name == "hstore"}, nil
}

// enumLabels reads the labels of an enum type in sort order. Labels are
// only ever added (ALTER TYPE ... ADD VALUE) or renamed, never removed, so
// the labels now hold every label an older change can carry, unless one
// was renamed since.
func (c *Conn) enumLabels(ctx context.Context, oid uint32) ([]string, error) {
	rows, err := c.pg.Query(ctx, "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder", oid)
	if err != nil {
		return nil, fmt.Errorf("read the labels of enum %d: %w", oid, Describe(err, "", ""))
	}
	labels, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the labels of enum %d: %w", oid, Describe(err, "", ""))
	}
	return labels, nil
}

// publicationError describes a failed change of the publication; a role
// without the right to make it (the tables' owner's) gets the statement
// to run as their owner.
func publicationError(what, stmt string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%s: %s: this role may not change the publication (that takes the tables' owner): "+
			"as their owner, run %s; then run `replicator setup` again", what, pgErr.Message, stmt)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// checkIdentity refuses a replica identity (pg_class.relreplident) under
// which deletes carry no key.
func checkIdentity(table, ident string, hasPK bool) error {
	switch {
	case ident == "n":
		return fmt.Errorf("table %s has REPLICA IDENTITY NOTHING: deletes cannot be replicated; "+
			"run ALTER TABLE %s REPLICA IDENTITY DEFAULT (with a primary key) or FULL", table, table)
	case ident == "d" && !hasPK:
		return fmt.Errorf("table %s has no primary key: updates and deletes cannot be replicated; "+
			"add a primary key or run ALTER TABLE %s REPLICA IDENTITY FULL", table, table)
	}
	return nil
}

// EnsurePublication creates the publication for tables ("schema.name"), or
// checks an existing one and adds the tables it lacks. A partitioned table
// must be published via its root (Postgres 13+), so that the changes of
// its partitions, including partitions created later, arrive under its
// name. It returns a line for each thing it created or found.
func (c *Conn) EnsurePublication(ctx context.Context, pub string, tables []string) (report []string, err error) {
	say := func(format string, args ...any) { report = append(report, fmt.Sprintf(format, args...)) }
	var partitioned []string
	for _, t := range tables {
		p, err := c.Partitioned(ctx, t)
		if err != nil {
			return report, err
		}
		if p {
			partitioned = append(partitioned, t)
		}
	}
	viaRootKnown := c.ServerVersion() >= 13
	if len(partitioned) > 0 && !viaRootKnown {
		return report, fmt.Errorf("table %s is partitioned: replicating a partitioned table needs Postgres 13 or later "+
			"(publish_via_partition_root)", partitioned[0])
	}
	var all, ins, upd, del, trunc, viaRoot bool
	viaRootCol := "false"
	if viaRootKnown {
		viaRootCol = "pubviaroot"
	}
	err = c.pg.QueryRow(ctx, "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, "+viaRootCol+
		" FROM pg_publication WHERE pubname = $1", pub).Scan(&all, &ins, &upd, &del, &trunc, &viaRoot)
	if errors.Is(err, pgx.ErrNoRows) {
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = publishedName(t, partitioned)
		}
		var opts []string
		if viaRootKnown {
			opts = append(opts, "publish_via_partition_root = true")
		}
		if c.ServerVersion() >= GeneratedVersion {
			// Stored generated columns reach ClickHouse with the values
			// Postgres computed (Columns: the copy reads them too).
			opts = append(opts, "publish_generated_columns = stored")
		}
		with := ""
		if len(opts) > 0 {
			with = " WITH (" + strings.Join(opts, ", ") + ")"
		}
		stmt := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s%s", QuoteIdent(pub), strings.Join(names, ", "), with)
		// One simple-protocol Exec runs both in one transaction: the
		// publication exists only with the mark that `replicator
		// teardown` drops it by.
		mark := fmt.Sprintf("COMMENT ON PUBLICATION %s IS %s", QuoteIdent(pub), quoteLiteral(PublicationMark))
		if _, err := c.pg.Exec(ctx, stmt+"; "+mark); err != nil {
			return report, publicationError(fmt.Sprintf("create publication %s", pub), stmt, err)
		}
		say("created publication %s for %s", pub, strings.Join(names, ", "))
		return report, nil
	}
	if err != nil {
		return report, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	if !ins || !upd || !del {
		return report, fmt.Errorf("publication %s does not publish every insert, update and delete: "+
			"run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", pub, pub)
	}
	if len(partitioned) > 0 && !viaRoot {
		return report, fmt.Errorf("publication %s does not publish via the partition root, so the changes of partitioned "+
			"table %s would arrive under its partitions' names: run ALTER PUBLICATION %s SET (publish_via_partition_root = true)",
			pub, partitioned[0], QuoteIdent(pub))
	}
	if all {
		say("publication %s exists (FOR ALL TABLES)", pub)
		return report, nil
	}
	for _, t := range tables {
		schema, name, _ := strings.Cut(t, ".")
		var in bool
		if err := c.pg.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
			pub, schema, name).Scan(&in); err != nil {
			return report, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
		}
		if in {
			continue
		}
		stmt := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", QuoteIdent(pub), publishedName(t, partitioned))
		if _, err := c.pg.Exec(ctx, stmt); err != nil {
			return report, publicationError(fmt.Sprintf("add %s to publication %s", t, pub), stmt, err)
		}
		say("added %s to publication %s", t, pub)
	}
	extra, err := c.publishedOnly(ctx, pub, tables)
	if err != nil {
		return report, err
	}
	for _, t := range extra {
		stmt := fmt.Sprintf("ALTER PUBLICATION %s DROP TABLE %s", QuoteIdent(pub), QuoteTable(t))
		if _, err := c.pg.Exec(ctx, stmt); err != nil {
			return report, publicationError(fmt.Sprintf("remove %s from publication %s", t, pub), stmt, err)
		}
		say("removed %s from publication %s: it is no longer configured, so its replication stops; "+
			"its ClickHouse table, if any, is kept (DROP TABLE it there when it is no longer needed)", t, pub)
	}
	say("publication %s exists", pub)
	return report, nil
}

// publishedName is how a publication names table: a partitioned table
// with its partitions (published via the root), any other table ONLY,
// without the children of legacy inheritance (INHERITS), which are tables
// of their own (see Snapshot.Partitions).
func publishedName(table string, partitioned []string) string {
	if slices.Contains(partitioned, table) {
		return QuoteTable(table)
	}
	return "ONLY " + QuoteTable(table)
}

// publishedOnly returns the tables of publication pub that are not among
// tables (a table block removed from the configuration).
func (c *Conn) publishedOnly(ctx context.Context, pub string, tables []string) ([]string, error) {
	rows, err := c.pg.Query(ctx, `SELECT n.nspname || '.' || cl.relname FROM pg_publication_rel pr
		JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class cl ON cl.oid = pr.prrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE p.pubname = $1 ORDER BY 1`, pub)
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("read publication %s: %w", pub, Describe(err, "", ""))
		}
		if !slices.Contains(tables, t) {
			out = append(out, t)
		}
	}
	return out, rows.Err()
}

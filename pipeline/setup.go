package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
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

	client, err := sink.Open(ctx, sinkOptions(cfg))
	if err != nil {
		return report, err
	}
	defer client.Close()
	caps := client.Caps()
	if !caps.DateTime64 {
		log.Warn("ClickHouse has no DateTime64 (needs >= 20.1): timestamps are stored as DateTime('UTC') and lose sub-second precision",
			"version", client.Version())
	}

	pg, err := connectSQL(ctx, cfg.Postgres.DSN)
	if err != nil {
		return report, err
	}
	defer pg.Close(context.Background())
	var walLevel string
	var canReplicate bool
	if err := pg.QueryRow(ctx, replication.ServerCheckSQL).Scan(&walLevel, &canReplicate); err != nil {
		return report, fmt.Errorf("check postgres settings: %w", err)
	}
	if err := replication.CheckSettings(walLevel, canReplicate); err != nil {
		return report, err
	}
	repl, err := replication.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return report, err
	}
	defer repl.Close(context.Background())

	// Resolve every table before changing anything.
	var tables []*mapping.Table
	for _, tc := range cfg.Tables {
		cols, err := sourceColumns(ctx, pg, tc)
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
	}

	if err := ensurePublication(ctx, pg, cfg, say); err != nil {
		return report, err
	}

	db := cfg.ClickHouse.Database
	if err := client.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+mapping.Quote(db)); err != nil {
		return report, fmt.Errorf("create ClickHouse database %s: %w", db, err)
	}
	for _, t := range tables {
		names, types, err := client.ColumnTypes(ctx, t.Target)
		if err != nil {
			return report, fmt.Errorf("read ClickHouse table %s: %w", t.Target, err)
		}
		if len(names) > 0 {
			if err := checkTarget(t, targetSchema{names: names, types: types}); err != nil {
				return report, err
			}
			say("ClickHouse table %s.%s exists", db, t.Target)
		} else {
			if err := client.Exec(ctx, t.CreateTable(db)); err != nil {
				return report, fmt.Errorf("create ClickHouse table %s: %w", t.Target, err)
			}
			say("created ClickHouse table %s.%s", db, t.Target)
		}
		if err := client.Exec(ctx, t.CreateView(db)); err != nil {
			return report, fmt.Errorf("create ClickHouse view %s: %w", t.ViewName(), err)
		}
		say("ClickHouse view %s.%s shows one live row per key", db, t.ViewName())
	}
	if err := client.Exec(ctx, checkpoint.CreateTable(db)); err != nil {
		return report, fmt.Errorf("create checkpoint table: %w", err)
	}
	if err := client.Exec(ctx, checkpoint.CreateProgressTable(db)); err != nil {
		return report, fmt.Errorf("create progress table: %w", err)
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
		if err := checkSlot(slotName, slot, pos); err != nil {
			return report, err
		}
		say("replication slot %s exists with checkpoint %s: nothing to copy", slotName, pos.LSN)
		return report, nil
	case err == nil:
		if slot.Active {
			return report, &replication.SlotInUseError{Slot: slotName, PID: slot.ActivePID}
		}
		// A slot without a checkpoint is left from a setup that did not
		// finish: nothing was acknowledged from it, so start over.
		if err := repl.DropSlot(ctx, slotName); err != nil {
			return report, err
		}
		say("dropped replication slot %s left by an unfinished setup", slotName)
	case errors.Is(err, replication.ErrSlotMissing):
		if hasCheckpoint {
			if err := store.Delete(ctx); err != nil {
				return report, err
			}
			say("removed checkpoint %s of the former slot %s", pos.LSN, slotName)
		}
	default:
		return report, err
	}

	for _, t := range tables {
		if err := client.Exec(ctx, fmt.Sprintf("TRUNCATE TABLE %s.%s", mapping.Quote(db), mapping.Quote(t.Target))); err != nil {
			return report, fmt.Errorf("empty ClickHouse table %s before the copy: %w", t.Target, err)
		}
	}
	lsn, snapshot, err := repl.CreateSlot(ctx, slotName)
	if err != nil {
		return report, err
	}
	say("created replication slot %s at %s", slotName, lsn)

	// The exported snapshot lives while repl stays idle; copy inside it.
	writer := sink.NewWriter(client, tables)
	for i, t := range tables {
		start := time.Now()
		n, err := copyTable(ctx, pg, snapshot, t, i, writer, lsn, cfg.Batch.MaxRows)
		if err != nil {
			return report, fmt.Errorf("copy %s: %w", t.Source, err)
		}
		secs := time.Since(start).Seconds()
		say("copied %d rows of %s in %.1fs (%.0f rows/s) with version %s", n, t.Source, secs, float64(n)/max(secs, 1e-9), lsn)
	}
	// Transactions that commit at or after the consistent point are streamed.
	if err := store.Save(ctx, checkpoint.Position{LSN: lsn, Commit: false}); err != nil {
		return report, err
	}
	say("checkpoint %s saved: `replicator run` streams from here", lsn)
	return report, nil
}

func connectSQL(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: invalid connection string")
	}
	for k, v := range replication.SessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return conn, nil
}

// sourceColumns reads a table's columns in the order pgoutput sends them,
// marking the replica identity.
func sourceColumns(ctx context.Context, pg *pgx.Conn, tc config.Table) ([]mapping.SourceColumn, error) {
	schema, name := tc.SourceParts()
	var ident string
	var hasPK bool
	err := pg.QueryRow(ctx, `SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, name).Scan(&ident, &hasPK)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("table %s does not exist in Postgres", tc.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("read table %s: %w", tc.Name, err)
	}
	switch {
	case ident == "n":
		return nil, fmt.Errorf("table %s has REPLICA IDENTITY NOTHING: deletes cannot be replicated; "+
			"run ALTER TABLE %s REPLICA IDENTITY DEFAULT (with a primary key) or FULL", tc.Name, tc.Name)
	case ident == "d" && !hasPK:
		return nil, fmt.Errorf("table %s has no primary key: updates and deletes cannot be replicated; "+
			"add a primary key or run ALTER TABLE %s REPLICA IDENTITY FULL", tc.Name, tc.Name)
	}
	rows, err := pg.Query(ctx, `SELECT a.attname, a.atttypid::int8,
		CASE c.relreplident
			WHEN 'f' THEN true
			WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))
			WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY (i.indkey))
			ELSE false END
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, schema, name)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", tc.Name, err)
	}
	var cols []mapping.SourceColumn
	for rows.Next() {
		var c mapping.SourceColumn
		var oid int64
		if err := rows.Scan(&c.Name, &oid, &c.Identity); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", tc.Name, err)
		}
		c.TypeOID = uint32(oid)
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", tc.Name, err)
	}
	return cols, nil
}

func ensurePublication(ctx context.Context, pg *pgx.Conn, cfg config.Config, say func(string, ...any)) error {
	pub := cfg.Postgres.Publication
	var all, ins, upd, del, trunc bool
	err := pg.QueryRow(ctx, "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1",
		pub).Scan(&all, &ins, &upd, &del, &trunc)
	if errors.Is(err, pgx.ErrNoRows) {
		names := make([]string, len(cfg.Tables))
		for i, t := range cfg.Tables {
			names[i] = pgx.Identifier(strings.SplitN(t.Name, ".", 2)).Sanitize()
		}
		if _, err := pg.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", pgx.Identifier{pub}.Sanitize(), strings.Join(names, ", "))); err != nil {
			return fmt.Errorf("create publication %s: %w", pub, err)
		}
		say("created publication %s for %s", pub, strings.Join(names, ", "))
		return nil
	}
	if err != nil {
		return fmt.Errorf("read publication %s: %w", pub, err)
	}
	if !ins || !upd || !del {
		return fmt.Errorf("publication %s does not publish every insert, update and delete: "+
			"run ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", pub, pub)
	}
	if all {
		say("publication %s exists (FOR ALL TABLES)", pub)
		return nil
	}
	for _, t := range cfg.Tables {
		schema, name := t.SourceParts()
		var in bool
		if err := pg.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
			pub, schema, name).Scan(&in); err != nil {
			return fmt.Errorf("read publication %s: %w", pub, err)
		}
		if in {
			continue
		}
		ident := pgx.Identifier{schema, name}.Sanitize()
		if _, err := pg.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pgx.Identifier{pub}.Sanitize(), ident)); err != nil {
			return fmt.Errorf("add %s to publication %s: %w", t.Name, pub, err)
		}
		say("added %s to publication %s", t.Name, pub)
	}
	say("publication %s exists", pub)
	return nil
}

// copyTable copies a table's rows inside the exported snapshot, with the
// slot's consistent point as version.
func copyTable(ctx context.Context, pg *pgx.Conn, snapshot string, t *mapping.Table, idx int, w *sink.Writer,
	version pglogrepl.LSN, maxRows int) (int, error) {
	tx, err := pg.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+replication.QuoteLiteral(snapshot)); err != nil {
		return 0, fmt.Errorf("use exported snapshot: %w", err)
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	schema, name, _ := strings.Cut(t.Source, ".")
	sql := fmt.Sprintf("SELECT %s FROM %s", strings.Join(cols, ", "), pgx.Identifier{schema, name}.Sanitize())
	rr := tx.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, nil)
	n := len(t.Columns)
	vals := make([]mapping.Value, n)
	count := 0
	for rr.NextRow() {
		for i, v := range rr.Values() {
			if v == nil {
				vals[i] = mapping.Value{Kind: mapping.ValueNull}
			} else {
				vals[i] = mapping.Value{Kind: mapping.ValueText, Data: v}
			}
		}
		row := make([]any, n+2)
		if _, err := t.Row(vals, row, nil); err != nil {
			rr.Close()
			return count, newMappingError(t, vals, version, err)
		}
		row[n], row[n+1] = uint64(version), uint8(0)
		w.Put(idx, t.KeyString(row), row)
		count++
		if w.Rows() >= maxRows {
			if err := w.Flush(ctx); err != nil {
				rr.Close()
				return count, err
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return count, err
	}
	if err := w.Flush(ctx); err != nil {
		return count, err
	}
	return count, tx.Commit(ctx)
}

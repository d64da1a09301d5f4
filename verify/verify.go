package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/shopspring/decimal"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/sink"
)

// Report is the result of comparing one table.
type Report struct {
	Table      string
	Snapshot   pglogrepl.LSN
	Compared   uint64
	Missing    uint64 // in Postgres, not live in ClickHouse
	Extra      uint64 // live in ClickHouse, not in Postgres
	Different  uint64 // a column differs under the mapping rules
	Skipped    uint64 // changed after the snapshot; not counted
	Ranges     int
	Drilled    int
	FirstKeys  map[string][]string
	Duration   time.Duration
	RowsPerSec float64
	// NotVerified says why the table was not compared.
	NotVerified string
	// Repair says what verify --repair changed; nil when it did not run.
	Repair *Repair

	// groups are the first sorting column's values of the lasting
	// differences, for repair.
	groups []string
}

// Equal reports whether no difference was found.
func (r *Report) Equal() bool { return r.Missing == 0 && r.Extra == 0 && r.Different == 0 }

// Options tunes Run.
type Options struct {
	// Table restricts the comparison to one source table ("schema.table").
	Table string
	// RangeRows is the target number of rows per key range (default 50000).
	RangeRows int
	// CatchUpTimeout bounds the wait for the daemon's checkpoint to pass the
	// snapshot (default 60s).
	CatchUpTimeout time.Duration
	// Repair copies the key ranges with lasting differences again (see
	// Report.Repair).
	Repair bool
}

const firstKeys = 10

// Run compares each configured table in Postgres with its ClickHouse copy
// under the mapping rules. It works on a live system: Postgres is read in
// one snapshot whose position L is known, ClickHouse is read once its
// checkpoint passed L, and keys whose ClickHouse version is newer than L
// (changed after the snapshot) are not counted. Both sides compute counts
// and checksums per key range; only ranges that differ are read row by row,
// so memory is bounded by the range size. Keys found different are checked
// again in a later snapshot, so a change racing the first one is no alarm.
func Run(ctx context.Context, cfg config.Config, opt Options, log hclog.Logger) ([]*Report, error) {
	if opt.RangeRows <= 0 {
		opt.RangeRows = 50000
	}
	if opt.CatchUpTimeout <= 0 {
		opt.CatchUpTimeout = time.Minute
	}
	client, err := sink.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	pg, err := postgres.Connect(ctx, cfg.Postgres.DSN)
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	store := checkpoint.NewStore(client, cfg.Postgres.Slot)
	trimmed, err := decimalsTrimmed(ctx, client)
	if err != nil {
		return nil, err
	}

	var reports []*Report
	found := false
	for _, tc := range cfg.Tables {
		if opt.Table != "" && opt.Table != tc.Name {
			continue
		}
		found = true
		v, why, err := newVerifier(ctx, cfg, opt, pg, client, store, tc, trimmed, log)
		if err != nil {
			return nil, err
		}
		if why != "" {
			reports = append(reports, &Report{Table: tc.Name, NotVerified: why})
			continue
		}
		rep, err := v.run(ctx)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", tc.Name, err)
		}
		reports = append(reports, rep)
		if opt.Repair && len(rep.groups) > 0 {
			rep.Repair, err = v.repair(ctx, rep.groups)
			if err != nil {
				return reports, err
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("verify: table %q is not configured", opt.Table)
	}
	return reports, nil
}

// newVerifier returns the verifier of table tc, or why the table cannot be
// compared; trimmed is decimalsTrimmed of the server.
func newVerifier(ctx context.Context, cfg config.Config, opt Options, pg *postgres.Conn, client *sink.Client,
	store *checkpoint.Store, tc config.Table, trimmed bool, log hclog.Logger) (*verifier, string, error) {
	if tc.Mode == mapping.ModeHistory {
		return nil, "a history table keeps every change, and verify compares the latest state of each row", nil
	}
	if len(tc.Ignore) > 0 {
		return nil, "the table ignores " + strings.Join(tc.Ignore, " and ") + ", so ClickHouse keeps rows that Postgres no longer has", nil
	}
	cols, err := pg.Columns(ctx, tc.Name, cfg.Postgres.Publication)
	if err != nil {
		return nil, "", err
	}
	t, err := mapping.Resolve(tc.Spec(), cols, client.Caps())
	if err != nil {
		return nil, "", err
	}
	schema, err := client.Schema(ctx, tc.Target)
	if err != nil {
		return nil, "", err
	}
	schema.Adopt(t, client.Caps())
	return &verifier{cfg: cfg, opt: opt, pg: pg, ch: client, store: store, t: t, log: log.With("table", tc.Name),
		sortingKey: schema.SortingKey, partitionKey: schema.PartitionKey, decimalsTrimmed: trimmed}, "", nil
}

// decimalsTrimmed reports whether the server's text of a Decimal drops
// trailing zeros ("1.5" for 1.50 of scale 2), as ClickHouse does from 21.9
// (ClickHouse#27680); earlier servers print the scale's digits ("1.50").
// The server is asked, not its version compared.
func decimalsTrimmed(ctx context.Context, client *sink.Client) (bool, error) {
	rows, err := client.Query(ctx, "SELECT toString(toDecimal32(1.5, 2))")
	if err != nil {
		return false, fmt.Errorf("read how clickhouse prints a decimal: %w", err)
	}
	return rows[0][0].(string) == "1.5", nil
}

type verifier struct {
	cfg   config.Config
	opt   Options
	pg    *postgres.Conn
	ch    *sink.Client
	store *checkpoint.Store
	t     *mapping.Table
	log   hclog.Logger
	// sortingKey and partitionKey are the target's keys as ClickHouse
	// renders them: its newest rows are read per sorting key and
	// partition (see ddl.Newest).
	sortingKey, partitionKey string
	// decimalsTrimmed: the server prints a Decimal without trailing
	// zeros (see decimalsTrimmed).
	decimalsTrimmed bool

	key      firstKey // ranges split the first sorting key column
	pgSum    string   // checksum expression over the checksummed columns
	chSum    string
	streamed []int // columns compared row by row in every range
	// onDiff, when set, is told each lasting difference: its kind
	// (missing, extra, different) and key.
	onDiff func(kind, key string)
}

func (v *verifier) prepare() error {
	t := v.t
	k, err := newFirstKey(t)
	if err != nil {
		return err
	}
	v.key = k
	var pgParts, chParts []string
	for i, c := range t.Columns {
		p, h, ok := checksumExprs(c, v.decimalsTrimmed)
		if !ok {
			v.streamed = append(v.streamed, i)
			continue
		}
		pgParts = append(pgParts, fmt.Sprintf("octet_length(%[1]s)::text || ':' || %[1]s", p))
		chParts = append(chParts, fmt.Sprintf("toString(length(%[1]s)), ':', %[1]s", h))
	}
	if len(pgParts) == 0 {
		pgParts, chParts = []string{"''"}, []string{"''"}
	}
	v.pgSum = fmt.Sprintf("COALESCE(sum(('x' || substr(md5(%s), 1, 8))::bit(32)::bigint), 0)", strings.Join(pgParts, " || '|' || "))
	v.chSum = fmt.Sprintf("sum(reinterpretAsUInt32(reverse(substring(MD5(concat(%s)), 1, 4))))", strings.Join(chParts, ", '|', "))
	return nil
}

// checksumExprs returns the text of a mapped column in Postgres SQL and in
// ClickHouse SQL, identical for equal values; ok is false for columns whose
// mapping Postgres cannot compute (e.g. xxhash64) or whose text form is not
// stable across the two (floats). trimmed says that the server prints a
// Decimal without trailing zeros (see decimalsTrimmed).
func checksumExprs(c mapping.Column, trimmed bool) (pg, ch string, ok bool) {
	col := postgres.QuoteIdent(c.Source)
	qc := ddl.Quote(c.Name)
	typ := c.Type
	var def string
	switch {
	case c.Transform != mapping.TransformNone, c.Policy() != "" && c.Policy() != mapping.InvalidError:
		// Computed by the mapping only: compared row by row.
		return "", "", false
	case typ.Kind == mapping.KindMap, typ.Kind == mapping.KindJSON:
		// No text of both sides alike (a Map's pairs are in the order
		// they were sent, a Go map's; JSON's text is ClickHouse's own):
		// compared row by row (see equalValue).
		return "", "", false
	case typ.Array:
		return arrayChecksumExprs(c, trimmed)
	case typ.IsInteger() && (c.SourceOID == 20 || c.SourceOID == 21 || c.SourceOID == 23):
		pg, ch, def = col+"::text", "toString("+qc+")", "'0'"
	case typ.IsInteger() && c.SourceOID == 16:
		pg, ch, def = col+"::int::text", "toString("+qc+")", "'0'"
	case typ.Kind == mapping.KindString && c.SourceOID != 17:
		pg, ch, def = col+"::text", qc, "''"
	case typ.IsEnum() && c.Src.Enum:
		pg, ch, def = col+"::text", "toString("+qc+")", "''"
	case typ.Kind == mapping.KindDateTime && (c.SourceOID == 1114 || c.SourceOID == 1184):
		pg, ch, def = "floor(extract(epoch from "+col+"))::bigint::text", "toString(toUnixTimestamp("+qc+"))", "'0'"
	case typ.Kind == mapping.KindDateTime64 && typ.Precision == 6 && (c.SourceOID == 1114 || c.SourceOID == 1184):
		pg, ch, def = "floor(extract(epoch from "+col+") * 1000000)::bigint::text", "toString(toUnixTimestamp64Micro("+qc+"))", "'0'"
	case typ.Kind == mapping.KindUUID && c.SourceOID == 2950:
		pg, ch, def = col+"::text", "toString("+qc+")", "'00000000-0000-0000-0000-000000000000'"
	case typ.Kind == mapping.KindDecimal && c.SourceOID == 1700:
		pg, ch, def = decimalText(col, typ.Scale, trimmed), "toString("+qc+")", decimalText("0", typ.Scale, trimmed)
	case typ.Kind == mapping.KindBool && c.SourceOID == 16:
		pg, ch, def = col+"::text", "toString("+qc+")", "'false'"
	case (typ.Kind == mapping.KindDate || typ.Kind == mapping.KindDate32) && c.SourceOID == 1082:
		// Days since 1970 (ClickHouse 18.16 prints day 0 as 0000-00-00).
		pg, ch, def = "("+col+" - date '1970-01-01')::text", "toString(toInt32("+qc+"))", "'0'"
	default:
		return "", "", false
	}
	if typ.Nullable {
		return "COALESCE(" + pg + ", '\\N')", "ifNull(" + ch + ", '\\N')", true
	}
	return "COALESCE(" + pg + ", " + def + ")", ch, true
}

// decimalText is the Postgres SQL of the text ClickHouse's toString gives a
// numeric x stored at scale: rounded to the scale, with its trailing zeros
// ("1.50") or, where the server trims them, without ("1.5", "2", "0";
// trim_scale needs PostgreSQL 13).
func decimalText(x string, scale int, trimmed bool) string {
	if trimmed {
		return fmt.Sprintf("trim_scale(round(%s, %d))::text", x, scale)
	}
	return fmt.Sprintf("round(%s, %d)::text", x, scale)
}

// arrayChecksumExprs is checksumExprs for an array of integers, text,
// decimals or dates: its elements' text joined by commas in brackets,
// NULL elements as the element's default (or NULL when they are Nullable),
// a NULL array as [].
func arrayChecksumExprs(c mapping.Column, trimmed bool) (pg, ch string, ok bool) {
	col := postgres.QuoteIdent(c.Source)
	qc := ddl.Quote(c.Name)
	typ := c.Type
	elem := "e::text"
	var def string
	switch {
	case typ.IsInteger():
		def = "'0'"
	case typ.Kind == mapping.KindString:
		def = "''"
	case typ.Kind == mapping.KindDecimal:
		elem, def = decimalText("e", typ.Scale, trimmed), decimalText("0", typ.Scale, trimmed)
	case typ.Kind == mapping.KindDate:
		elem, def = "(e - date '1970-01-01')::text", "'0'"
	default:
		return "", "", false
	}
	if typ.Nullable {
		def = "'NULL'"
	}
	pg = fmt.Sprintf("'[' || array_to_string(ARRAY(SELECT COALESCE(%s, %s) FROM unnest(%s) WITH ORDINALITY AS u(e, n) ORDER BY n), ',') || ']'",
		elem, def, col)
	text := "toString(x)"
	if typ.Kind == mapping.KindDate {
		text = "toString(toInt32(x))"
	}
	ch = fmt.Sprintf("concat('[', arrayStringConcat(arrayMap(x -> ifNull(%s, 'NULL'), %s), ','), ']')", text, qc)
	return "COALESCE(" + pg + ", '[]')", ch, true
}

func (v *verifier) run(ctx context.Context) (*Report, error) {
	start := time.Now()
	if err := v.prepare(); err != nil {
		return nil, err
	}
	rep := &Report{Table: v.t.Source, FirstKeys: map[string][]string{}}
	snap, err := v.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	rep.Snapshot = snap.lsn
	bounds, err := v.keyBounds(ctx, snap)
	if err != nil {
		snap.Close()
		return nil, err
	}
	var candidates []string
	for _, r := range ranges(bounds) {
		rep.Ranges++
		c, err := v.compareRange(ctx, snap, r, rep)
		if err != nil {
			snap.Close()
			return nil, err
		}
		candidates = append(candidates, c...)
	}
	snap.Close()
	// A key is counted only when it still differs in two newer snapshots:
	// a commit whose record precedes a snapshot's position may not be
	// visible in it yet, so one recheck can meet such a race again.
	for round := 0; round < recheckRounds && len(candidates) > 0; round++ {
		if candidates, err = v.recheck(ctx, candidates, rep, round == recheckRounds-1); err != nil {
			return nil, err
		}
	}
	rep.groups = candidates
	rep.Duration = time.Since(start)
	rep.RowsPerSec = float64(rep.Compared) / math.Max(rep.Duration.Seconds(), 1e-9)
	return rep, nil
}

// snap is a Postgres snapshot at a known position, with ClickHouse caught up to it.
type snap struct {
	*postgres.Snapshot
	lsn pglogrepl.LSN
}

// snapshot opens a repeatable-read transaction and reads the WAL position
// after its snapshot was taken: every change visible in it committed below
// that position. It then waits until the daemon's checkpoint reaches it.
func (v *verifier) snapshot(ctx context.Context) (*snap, error) {
	tx, err := v.pg.BeginSnapshot(ctx, "")
	if err != nil {
		return nil, err
	}
	lsn, err := tx.CurrentWAL(ctx)
	if err != nil {
		tx.Close()
		return nil, err
	}
	s := &snap{Snapshot: tx, lsn: lsn}
	deadline := time.Now().Add(v.opt.CatchUpTimeout)
	for {
		pos, found, err := v.store.Load(ctx)
		if err != nil {
			s.Close()
			return nil, err
		}
		if found && pos.LSN >= lsn {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Close()
			cp := "none"
			if found {
				cp = pos.LSN.String()
			}
			return nil, fmt.Errorf("the ClickHouse checkpoint (%s) did not reach the snapshot position %s within %s: "+
				"is `replicator run` running and caught up?", cp, lsn, v.opt.CatchUpTimeout)
		}
		select {
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (v *verifier) source() string { return postgres.QuoteTable(v.t.Source) }

func (v *verifier) target() string { return v.ch.DB().Table(v.t.Target) }

// keyBounds returns the first sorting column's values that split the
// table into ranges of about RangeRows rows in the snapshot, ascending and
// distinct, in one ordered pass: memory holds only the bounds.
func (v *verifier) keyBounds(ctx context.Context, s *snap) ([]string, error) {
	rows, err := s.Query(ctx, fmt.Sprintf("SELECT b::text FROM (SELECT DISTINCT b FROM (SELECT %[1]s AS b, row_number() OVER (ORDER BY %[1]s) AS n "+
		"FROM %[2]s) s WHERE n %% %[3]d = 0) d ORDER BY d.b%[4]s", v.key.pg, v.source(), v.opt.RangeRows, v.key.collate))
	if err != nil {
		return nil, fmt.Errorf("postgres key ranges: %w", err)
	}
	var bounds []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, err
		}
		bounds = append(bounds, b)
	}
	rows.Close()
	return bounds, rows.Err()
}

// changedAfter returns the first-column values among those matching
// chWhere that ClickHouse holds a row of newer than the snapshot at lsn,
// as a change after the snapshot writes, and the WAL position w read after
// them. A row newer than w is no change's (every stored change committed
// below w): it is damage, and its values are not skipped.
func (v *verifier) changedAfter(ctx context.Context, chWhere string, lsn pglogrepl.LSN) (skip map[string]bool, w pglogrepl.LSN, err error) {
	rows, err := v.ch.Query(ctx, fmt.Sprintf("SELECT toString(%s), max(%s) FROM %s WHERE %s AND %s > %d GROUP BY %s",
		v.key.ch, mapping.VersionColumn, v.target(), chWhere, mapping.VersionColumn, uint64(lsn), v.key.ch))
	if err != nil {
		return nil, 0, err
	}
	if w, err = v.pg.CurrentWAL(ctx); err != nil {
		return nil, 0, err
	}
	skip = make(map[string]bool, len(rows))
	for _, r := range rows {
		if r[1].(uint64) <= uint64(w) {
			skip[r[0].(string)] = true
		}
	}
	return skip, w, nil
}

// compareRange compares one range of the first key column by count and
// checksum, and row by row when they differ or when the table has columns
// only Go can compare. It returns the first-column values whose rows
// differ.
func (v *verifier) compareRange(ctx context.Context, s *snap, r keyRange, rep *Report) ([]string, error) {
	// Keys changed after the snapshot are not compared (with a composite
	// key, every row of their first column's value).
	skip, w, err := v.changedAfter(ctx, v.key.chRange(r), s.lsn)
	if err != nil {
		return nil, err
	}
	rep.Skipped += uint64(len(skip))
	skipList := slices.Sorted(maps.Keys(skip))
	pgWhere := v.key.pgRange(r)
	chWhere := fmt.Sprintf("%s AND %s = 0 AND (%s <= %d OR %s > %d)", v.key.chRange(r),
		mapping.DeletedColumn, mapping.VersionColumn, uint64(s.lsn), mapping.VersionColumn, uint64(w))
	if len(skipList) > 0 {
		pgWhere += " AND " + v.key.pgIn(skipList, true)
		chWhere += " AND " + v.key.chIn(skipList, true)
	}
	var pgCount int64
	var pgSum int64
	if err := s.QueryRow(ctx, fmt.Sprintf("SELECT count(*), %s FROM %s WHERE %s", v.pgSum, v.source(), pgWhere)).Scan(&pgCount, &pgSum); err != nil {
		return nil, fmt.Errorf("postgres checksum of range %s: %w", r, err)
	}
	chRows, err := v.ch.Query(ctx, fmt.Sprintf("SELECT count(), %s FROM %s WHERE %s", v.chSum, v.newest(v.key.chRange(r)), chWhere))
	if err != nil {
		return nil, fmt.Errorf("clickhouse checksum of range %s: %w", r, err)
	}
	chCount, chSum := chRows[0][0].(uint64), chRows[0][1].(uint64)
	v.log.Debug("compared a key range by checksum", "range", r, "postgres_rows", pgCount, "clickhouse_rows", chCount)
	rep.Compared += uint64(pgCount)
	cols := v.all()
	if uint64(pgCount) == chCount && uint64(pgSum) == chSum {
		if len(v.streamed) == 0 {
			return nil, nil
		}
		// Counts and checksums agree: compare only the columns the
		// checksum cannot cover, with the key.
		cols = append(slices.Clone(v.t.Key), v.streamed...)
	} else {
		rep.Drilled++
	}
	pgRows, err := v.pgRows(ctx, s.Snapshot, pgWhere, cols)
	if err != nil {
		return nil, err
	}
	chMap, err := v.chRows(ctx, v.key.chRange(r), chWhere, cols)
	if err != nil {
		return nil, err
	}
	diff := map[string]bool{}
	for k, pr := range pgRows {
		cr, ok := chMap[k]
		if !ok || !v.equalRows(pr, cr, cols) {
			diff[v.key.text(pr)] = true
		}
		delete(chMap, k)
	}
	for _, cr := range chMap {
		diff[v.key.text(cr)] = true
	}
	return slices.Sorted(maps.Keys(diff)), nil
}

// rowKey renders the sorting key of a mapped or read-back row the same way
// for both sides, at the precision of each column.
func (v *verifier) rowKey(row []any) string {
	var b strings.Builder
	for n, i := range v.t.Key {
		if n > 0 {
			b.WriteString(", ")
		}
		c := v.t.Columns[i]
		b.WriteString(c.Name)
		b.WriteByte('=')
		switch x := deref(row[i]).(type) {
		case time.Time:
			switch c.Type.Kind {
			case mapping.KindDateTime:
				b.WriteString(strconv.FormatInt(x.Unix(), 10))
			case mapping.KindDate, mapping.KindDate32:
				b.WriteString(x.Format("2006-01-02"))
			default:
				b.WriteString(x.UTC().Truncate(time.Duration(math.Pow10(9 - c.Type.Precision))).Format(time.RFC3339Nano))
			}
		case string:
			b.WriteString(strconv.Quote(x))
		default:
			if c.Type.IsInteger() {
				b.WriteString(strconv.FormatInt(toInt64(x), 10))
			} else {
				fmt.Fprint(&b, x)
			}
		}
	}
	return b.String()
}

func (v *verifier) all() []int {
	cols := make([]int, len(v.t.Columns))
	for i := range cols {
		cols[i] = i
	}
	return cols
}

// pgRows reads the given columns of the Postgres rows matching where and
// maps them (other columns get defaults), by key.
func (v *verifier) pgRows(ctx context.Context, s *postgres.Snapshot, where string, cols []int) (map[string][]any, error) {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = v.t.Columns[c].Source
	}
	out := map[string][]any{}
	n := len(v.t.Columns)
	var vals []mapping.Value
	err := s.Rows(ctx, v.t.Source, names, where, func(read []mapping.Value) error {
		vals = v.t.Tuple(vals, cols, read)
		row := make([]any, n)
		if _, err := v.t.Row(vals, row, nil); err != nil {
			return fmt.Errorf("map %s %s: %w", v.t.Source, v.t.KeyOf(vals), err)
		}
		out[v.rowKey(row)] = row
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// newest returns the FROM source of the newest rows of the target among
// those matching keys, a condition on sorting key columns (see
// ddl.Newest).
func (v *verifier) newest(keys string) string {
	return ddl.Newest(v.target(), v.sortingKey, v.partitionKey, keys)
}

// chRows reads the given columns of the newest ClickHouse rows matching
// keys (a condition on sorting key columns) and where, placed at their
// column indexes, by key.
func (v *verifier) chRows(ctx context.Context, keys, where string, cols []int) (map[string][]any, error) {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = ddl.Quote(v.t.Columns[c].Name)
		if v.t.Columns[c].Type.Kind == mapping.KindJSON {
			// Its text, whatever the session's JSON output setting.
			names[i] = "toString(" + names[i] + ")"
		}
	}
	rows, err := v.ch.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(names, ", "), v.newest(keys), where))
	if err != nil {
		return nil, err
	}
	out := make(map[string][]any, len(rows))
	for _, r := range rows {
		row := make([]any, len(v.t.Columns))
		for i, c := range cols {
			row[c] = r[i]
		}
		out[v.rowKey(row)] = row
	}
	return out, nil
}

func (v *verifier) equalRows(pg, ch []any, cols []int) bool {
	for _, i := range cols {
		if !equalValue(v.t.Columns[i].Type, pg[i], ch[i]) {
			return false
		}
	}
	return true
}

// equalValue compares a mapped Postgres value with the value read back from
// ClickHouse, at the precision of the column.
func equalValue(t mapping.Type, a, b any) bool {
	switch av := a.(type) {
	case time.Time:
		bv, ok := deref(b).(time.Time)
		if !ok {
			return false
		}
		switch t.Kind {
		case mapping.KindDateTime:
			return av.Unix() == bv.Unix()
		case mapping.KindDate, mapping.KindDate32:
			// A date read back is at midnight in the server's zone.
			return av.Format("2006-01-02") == bv.Format("2006-01-02")
		}
		p := time.Duration(math.Pow10(9 - t.Precision))
		return av.Truncate(p).Equal(bv.Truncate(p))
	case nil:
		return deref(b) == nil
	case decimal.Decimal:
		bv, ok := deref(b).(decimal.Decimal)
		return ok && av.Equal(bv)
	case map[string]string, map[string]*string:
		return equalMap(a, b)
	}
	if t.Kind == mapping.KindJSON {
		as, ok1 := a.(string)
		bs, ok2 := deref(b).(string)
		return ok1 && ok2 && equalJSON(as, bs)
	}
	if t.Array {
		return equalArray(t, a, deref(b))
	}
	return fmt.Sprint(a) == fmt.Sprint(deref(b))
}

// equalArray compares two arrays element by element, as equalValue.
func equalArray(t mapping.Type, a, b any) bool {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	if av.Kind() != reflect.Slice || bv.Kind() != reflect.Slice || av.Len() != bv.Len() {
		return false
	}
	et := t
	et.Array, et.Nullable = false, false
	for i := 0; i < av.Len(); i++ {
		x, y := av.Index(i), bv.Index(i)
		if x.Kind() == reflect.Pointer || y.Kind() == reflect.Pointer {
			if x.IsNil() || y.IsNil() {
				if x.IsNil() != y.IsNil() {
					return false
				}
				continue
			}
			x, y = x.Elem(), y.Elem()
		}
		if !equalValue(et, x.Interface(), y.Interface()) {
			return false
		}
	}
	return true
}

// equalMap compares two Maps of String to String or to Nullable(String),
// pair by pair.
func equalMap(a, b any) bool {
	pairs := func(m any) (map[string]*string, bool) {
		switch x := m.(type) {
		case map[string]*string:
			return x, true
		case map[string]string:
			out := make(map[string]*string, len(x))
			for k, v := range x {
				out[k] = &v
			}
			return out, true
		}
		return nil, false
	}
	am, ok1 := pairs(a)
	bm, ok2 := pairs(b)
	if !ok1 || !ok2 || len(am) != len(bm) {
		return false
	}
	for k, x := range am {
		y, ok := bm[k]
		if !ok || (x == nil) != (y == nil) || x != nil && *x != *y {
			return false
		}
	}
	return true
}

// equalJSON compares the text of a json value with the text ClickHouse
// gives the JSON it stored: as values, numbers by their float64, with the
// members that ClickHouse does not keep (null, and objects left empty
// without them) left out of both.
func equalJSON(a, b string) bool {
	var av, bv any
	if json.Unmarshal([]byte(a), &av) != nil || json.Unmarshal([]byte(b), &bv) != nil {
		return a == b
	}
	return reflect.DeepEqual(prune(av), prune(bv))
}

// prune drops the null members of objects, and the members that are
// objects empty after that, recursively.
func prune(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			e = prune(e)
			if m, ok := e.(map[string]any); e == nil || ok && len(m) == 0 {
				continue
			}
			out[k] = e
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = prune(e)
		}
		return out
	}
	return v
}

func deref(v any) any {
	switch p := v.(type) {
	case *string:
		if p == nil {
			return nil
		}
		return *p
	case *uint64:
		if p == nil {
			return nil
		}
		return *p
	case *int64:
		if p == nil {
			return nil
		}
		return *p
	case *int32:
		if p == nil {
			return nil
		}
		return *p
	case *time.Time:
		if p == nil {
			return nil
		}
		return *p
	}
	return v
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case uint64:
		return int64(n)
	case int64:
		return n
	case uint32:
		return int64(n)
	case int32:
		return int64(n)
	case uint16:
		return int64(n)
	case int16:
		return int64(n)
	case uint8:
		return int64(n)
	case int8:
		return int64(n)
	}
	return 0
}

// recheckRounds is how many newer snapshots a difference must persist in.
const recheckRounds = 2

// recheck compares the rows of the candidate first-column values again in
// a new snapshot and returns those whose rows still differ there and did
// not change after it; in the final round it counts the differing keys.
func (v *verifier) recheck(ctx context.Context, ids []string, rep *Report, final bool) ([]string, error) {
	s, err := v.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var still []string
	slices.Sort(ids)
	for len(ids) > 0 {
		n := min(len(ids), 5000)
		batch := ids[:n]
		ids = ids[n:]
		skip, _, err := v.changedAfter(ctx, v.key.chIn(batch, false), s.lsn)
		if err != nil {
			return nil, err
		}
		if final {
			rep.Skipped += uint64(len(skip))
		}
		pgRows, err := v.pgRows(ctx, s.Snapshot, v.key.pgIn(batch, false), v.all())
		if err != nil {
			return nil, err
		}
		chIn := v.key.chIn(batch, false)
		chRows, err := v.chRows(ctx, chIn, fmt.Sprintf("%s AND %s = 0", chIn, mapping.DeletedColumn), v.all())
		if err != nil {
			return nil, err
		}
		found := map[string]bool{}
		kinds := diffKinds(pgRows, chRows, v)
		for _, k := range slices.Sorted(maps.Keys(kinds)) {
			d := kinds[k]
			if skip[d.group] {
				continue
			}
			found[d.group] = true
			if !final {
				continue
			}
			switch d.kind {
			case "missing":
				rep.Missing++
			case "extra":
				rep.Extra++
			default:
				rep.Different++
			}
			if v.onDiff != nil {
				v.onDiff(d.kind, k)
			}
			if len(rep.FirstKeys[d.kind]) < firstKeys {
				rep.FirstKeys[d.kind] = append(rep.FirstKeys[d.kind], k)
			}
		}
		still = append(still, slices.Sorted(maps.Keys(found))...)
	}
	return still, nil
}

// difference is a key found different: its kind (missing, extra or
// different) and its first sorting column's value.
type difference struct{ kind, group string }

// diffKinds compares the rows of both sides by key.
func diffKinds(pgRows, chRows map[string][]any, v *verifier) map[string]difference {
	out := map[string]difference{}
	for k, pr := range pgRows {
		cr, inCH := chRows[k]
		switch {
		case !inCH:
			out[k] = difference{"missing", v.key.text(pr)}
		case !v.equalRows(pr, cr, v.all()):
			out[k] = difference{"different", v.key.text(pr)}
		}
	}
	for k, cr := range chRows {
		if _, inPG := pgRows[k]; !inPG {
			out[k] = difference{"extra", v.key.text(cr)}
		}
	}
	return out
}

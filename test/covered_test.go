package test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// audit is Postgres' events at any commit position since the audit began:
// the rows of events then, and a logical slot of its own (test_decoding)
// that holds every change since. checkpointCovered compares ClickHouse up
// to a checkpoint with it.
type audit struct {
	slot    string
	start   pglogrepl.LSN
	initial map[uint64]auditRow
}

// auditRow holds the columns of an events row that the tests' writers
// change, besides its id.
type auditRow struct {
	author uint64
	action uint64
}

// startAudit begins the audit of events. No transaction may write events
// meanwhile: the rows read are those at the slot's start. On a server
// without test_decoding checkpointCovered falls back to a weaker check.
func (e *env) startAudit() {
	e.t.Helper()
	ctx := context.Background()
	slot := "audit_" + e.name
	var start pglogrepl.LSN
	if err := e.pg.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'test_decoding')", slot).Scan(&start); err != nil {
		e.t.Logf("no audit of events (checkpointCovered checks less): %v", err)
		return
	}
	e.t.Cleanup(func() {
		e.pg.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot)
	})
	rows, err := e.pg.Query(ctx, "SELECT id, author_id, action FROM events")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	a := &audit{slot: slot, start: start, initial: map[uint64]auditRow{}}
	for rows.Next() {
		var id, author, action int64
		if err := rows.Scan(&id, &author, &action); err != nil {
			e.t.Fatal(err)
		}
		a.initial[uint64(id)] = auditRow{uint64(author), uint64(action)}
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	e.audit = a
}

// auditChange is one change of events: the row with id old is gone (0:
// none), the row new is there (nil: none).
type auditChange struct {
	old   uint64
	newID uint64
	new   *auditRow
}

// eventsAt returns the rows of events after every transaction that
// committed at or below the commit LSN l: test_decoding gives each
// transaction's changes and the end of its commit record; the transaction
// committed at l is the first whose commit record ends above l.
func (e *env) eventsAt(l pglogrepl.LSN) map[uint64]auditRow {
	e.t.Helper()
	rows, err := e.pg.Query(context.Background(), "SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, NULL, "+
		"'include-xids', '0', 'skip-empty-xacts', '0')", e.audit.slot)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	type txn struct {
		end     pglogrepl.LSN
		changes []auditChange
	}
	var txns []txn
	var open []auditChange
	for rows.Next() {
		var lsn pglogrepl.LSN
		var data string
		if err := rows.Scan(&lsn, &data); err != nil {
			e.t.Fatal(err)
		}
		switch {
		case data == "BEGIN":
			open = nil
		case data == "COMMIT":
			txns = append(txns, txn{end: lsn, changes: open})
		case strings.HasPrefix(data, "table public.events: "):
			c, err := parseAuditChange(strings.TrimPrefix(data, "table public.events: "))
			if err != nil {
				e.t.Fatalf("audit: %v: %s", err, data)
			}
			open = append(open, c)
		}
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	state := make(map[uint64]auditRow, len(e.audit.initial))
	for id, r := range e.audit.initial {
		state[id] = r
	}
	for _, t := range txns {
		for _, c := range t.changes {
			delete(state, c.old)
			if c.new != nil {
				state[c.newID] = *c.new
			}
		}
		if t.end > l {
			return state
		}
	}
	e.t.Fatalf("audit: no commit at %s among %d transactions", l, len(txns))
	return nil
}

// parseAuditChange parses test_decoding's text of a change of events:
// "INSERT: id[bigint]:1 ...", "UPDATE: [old-key: ... new-tuple: ]...",
// "DELETE: id[bigint]:1 ...".
func parseAuditChange(s string) (auditChange, error) {
	op, rest, _ := strings.Cut(s, ": ")
	var c auditChange
	switch op {
	case "INSERT", "UPDATE":
		if old, tuple, ok := strings.Cut(rest, "new-tuple: "); ok {
			cols, err := parseAuditTuple(strings.TrimPrefix(old, "old-key: "))
			if err != nil {
				return c, err
			}
			c.old, _ = strconv.ParseUint(cols["id"], 10, 64)
			rest = tuple
		}
		cols, err := parseAuditTuple(rest)
		if err != nil {
			return c, err
		}
		var r auditRow
		var err1, err2, err3 error
		c.newID, err1 = strconv.ParseUint(cols["id"], 10, 64)
		r.author, err2 = orZero(cols["author_id"])
		r.action, err3 = orZero(cols["action"])
		for _, err := range []error{err1, err2, err3} {
			if err != nil {
				return c, err
			}
		}
		if c.old == 0 {
			c.old = c.newID
		}
		c.new = &r
	case "DELETE":
		cols, err := parseAuditTuple(rest)
		if err != nil {
			return c, err
		}
		if c.old, err = strconv.ParseUint(cols["id"], 10, 64); err != nil {
			return c, err
		}
	default:
		return c, fmt.Errorf("unknown change %q", op)
	}
	return c, nil
}

// orZero parses a number, NULL as ClickHouse stores it: 0.
func orZero(s string) (uint64, error) {
	if s == "null" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// parseAuditTuple parses "name[type]:value ..." where a value is quoted
// (in single quotes, a quote inside doubled) or ends at a space.
func parseAuditTuple(s string) (map[string]string, error) {
	cols := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		i := strings.IndexByte(s, '[')
		j := strings.Index(s, "]:")
		if i < 0 || j < i {
			return nil, fmt.Errorf("malformed tuple at %q", s)
		}
		name := s[:i]
		s = s[j+2:]
		var v strings.Builder
		if strings.HasPrefix(s, "'") {
			k := 1
			for ; k < len(s); k++ {
				if s[k] == '\'' {
					if k+1 < len(s) && s[k+1] == '\'' {
						v.WriteByte('\'')
						k++
						continue
					}
					break
				}
				v.WriteByte(s[k])
			}
			s = s[min(k+1, len(s)):]
		} else {
			k := strings.IndexByte(s, ' ')
			if k < 0 {
				k = len(s)
			}
			v.WriteString(s[:k])
			s = s[k:]
		}
		cols[name] = v.String()
	}
	return cols, nil
}

// checkpointCovered asserts that the newest commit checkpoint L is covered
// by data: ClickHouse's events restricted to rows of versions at or below
// L equal Postgres' events at L. Called right after the daemon died, it
// fails when a checkpoint was saved before the rows of a transaction it
// covers. Rows of later versions (a flush whose checkpoint was not saved)
// may have replaced the rows of their keys at or below L in a merge: keys
// with such rows are left out. Without an audit (startAudit) it checks only
// that the transaction at L wrote rows, or that later ones did.
func (e *env) checkpointCovered() {
	e.t.Helper()
	cps := e.checkpoints()
	if len(cps) == 0 {
		return
	}
	l := pglogrepl.LSN(cps[len(cps)-1])
	ctx := context.Background()
	if e.audit == nil || l < e.audit.start {
		var n uint64
		if err := e.ch.QueryRow(ctx, fmt.Sprintf(
			"SELECT count() FROM db_%s.events WHERE _version >= %d", e.name, uint64(l))).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			e.t.Fatalf("checkpoint %s has no data rows at or above its version: checkpoint ahead of data", l)
		}
		return
	}
	want := e.eventsAt(l)
	// The rows of each place (sorting key and partition) at or below L.
	var sortingKey, partitionKey string
	if err := e.ch.QueryRow(ctx, "SELECT sorting_key, partition_key FROM system.tables WHERE database = ? AND name = 'events'",
		"db_"+e.name).Scan(&sortingKey, &partitionKey); err != nil {
		e.t.Fatal(err)
	}
	place := sortingKey
	if partitionKey != "" {
		place += ", " + partitionKey
	}
	latest := "(_version, _seq)"
	rows, err := e.ch.Query(ctx, fmt.Sprintf(`SELECT id, argMaxIf(author_id, %[1]s, _version <= %[2]d),
		argMaxIf(action, %[1]s, _version <= %[2]d), argMaxIf(_deleted, %[1]s, _version <= %[2]d),
		countIf(_version <= %[2]d), max(_version) > %[2]d
		FROM db_%[3]s.events GROUP BY %[4]s`, latest, uint64(l), e.name, place))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	got := map[uint64]auditRow{}
	later := map[uint64]bool{}
	for rows.Next() {
		var id, author, below uint64
		var action, deleted, after uint8
		if err := rows.Scan(&id, &author, &action, &deleted, &below, &after); err != nil {
			e.t.Fatal(err)
		}
		if after == 1 {
			later[id] = true
		}
		if below > 0 && deleted == 0 {
			if _, ok := got[id]; ok {
				e.t.Errorf("checkpoint %s: id %d is live at two places at or below it", l, id)
			}
			got[id] = auditRow{author, uint64(action)}
		}
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	var diffs []string
	compared := 0
	for id, w := range want {
		if later[id] {
			continue
		}
		compared++
		if g, ok := got[id]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("id %d: postgres %+v, clickhouse %+v (found %v)", id, w, g, ok))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok && !later[id] {
			diffs = append(diffs, fmt.Sprintf("id %d: not in postgres, clickhouse %+v", id, g))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		e.t.Fatalf("checkpoint %s: ClickHouse's rows at or below it differ from Postgres at it in %d ids "+
			"(checkpoint ahead of data), e.g.\n  %s", l, len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "\n  "))
	}
	e.t.Logf("checkpoint %s covered: %d rows equal Postgres at it (%d ids with later rows left out)", l, compared, len(later))
}

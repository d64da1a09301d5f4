package test

import (
	"context"
	"crypto/md5"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

// movedBase is added to a doc's id to move it to another sorting key; ids
// below it have not been moved.
const movedBase = 100000000

// docsChaos is the state the docs writers of a chaos run share: the next
// fresh id, when the last big transaction and the last TRUNCATE ran (both
// are paced by time so that a run's cost does not depend on how fast the
// writers are), and how many transactions of each kind committed.
type docsChaos struct {
	e    *env
	p    chaosPlan
	txns *atomic.Int64

	nextID atomic.Int64
	salt   atomic.Int64
	// paused, when set and true, holds the writers.
	paused *atomic.Bool

	mu                 sync.Mutex
	lastBig, lastTrunc time.Time
	counts             map[string]int
}

func newDocsChaos(e *env, p chaosPlan, txns *atomic.Int64) *docsChaos {
	d := &docsChaos{e: e, p: p, txns: txns, counts: map[string]int{}}
	d.nextID.Store(int64(p.docs) + 1)
	now := time.Now()
	d.lastBig, d.lastTrunc = now.Add(-p.docsBigEvery/2), now
	return d
}

// due reports whether every has passed since *last, and if so restarts it.
func (d *docsChaos) due(last *time.Time, every time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if every <= 0 || time.Since(*last) < every {
		return false
	}
	*last = time.Now()
	return true
}

func (d *docsChaos) committed(kind string, n int) {
	d.txns.Add(int64(n))
	d.mu.Lock()
	d.counts[kind] += n
	d.mu.Unlock()
}

// summary lists the committed docs transactions by kind.
func (d *docsChaos) summary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var kinds []string
	total := 0
	for k, n := range d.counts {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d docs transactions: %s", total, strings.Join(kinds, ", "))
}

// body returns an SQL expression of a fresh body for the row whose id is
// the expression id: mostly stored out of line (several KB), sometimes
// small enough to stay inline, sometimes NULL.
func (d *docsChaos) body(rng *rand.Rand, id string) string {
	salt := fmt.Sprintf("s%d", d.salt.Add(1))
	switch r := rng.IntN(10); {
	case r == 0:
		return "NULL"
	case r == 1:
		return docBody(id, salt, 200)
	case r < 4:
		return docBody(id, salt, 9000)
	default:
		return docBody(id, salt, d.p.docSize)
	}
}

// exec runs one transaction (q may be several statements with BEGIN and
// COMMIT) and counts it under kind when it commits.
func (d *docsChaos) exec(kind, q string) bool {
	if _, err := d.e.pg.Exec(context.Background(), q); err != nil {
		if !strings.Contains(err.Error(), "duplicate key") && !strings.Contains(err.Error(), "deadlock") {
			time.Sleep(50 * time.Millisecond) // Postgres restarting
		}
		return false
	}
	d.committed(kind, 1)
	return true
}

// pick returns the id of a random doc, one not moved yet when unmoved.
func (d *docsChaos) pick(unmoved bool) (int64, bool) {
	q := `SELECT id FROM docs ORDER BY random() LIMIT 1`
	if unmoved {
		q = fmt.Sprintf(`SELECT id FROM docs WHERE id < %d ORDER BY random() LIMIT 1`, movedBase)
	}
	var id int64
	if err := d.e.pg.QueryRow(context.Background(), q).Scan(&id); err != nil {
		if !strings.Contains(err.Error(), "no rows") {
			time.Sleep(50 * time.Millisecond)
		}
		return 0, false
	}
	return id, true
}

// workload writes random docs transactions until ctx is done: updates that
// leave the out-of-line body unchanged (flag only, key moves), body
// rewrites, updates followed by a delete of the key, deletes, inserts,
// inserts changed again in their transaction, and paced by time big
// transactions (several times batch.max_rows) that change the same keys
// more than once, and TRUNCATE followed by re-inserts.
func (d *docsChaos) workload(ctx context.Context, rng *rand.Rand) {
	randomDocs := func(n int) string { return fmt.Sprintf(`SELECT id FROM docs ORDER BY random() LIMIT %d`, n) }
	for ctx.Err() == nil {
		if d.paused != nil && d.paused.Load() {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if d.due(&d.lastBig, d.p.docsBigEvery) {
			d.big(rng)
			continue
		}
		if d.due(&d.lastTrunc, d.p.truncateEvery) {
			d.truncate(rng)
			continue
		}
		switch p := rng.IntN(1000); {
		case p < 180:
			d.exec("flag", fmt.Sprintf(`UPDATE docs SET flag = %d WHERE id IN (%s)`, rng.IntN(256), randomDocs(rng.IntN(5)+1)))
		case p < 300:
			// The lowest ids, which the big transactions change too.
			d.exec("flag of a hot key", fmt.Sprintf(`UPDATE docs SET flag = flag %% 250 + 1
				WHERE id = (SELECT id FROM docs ORDER BY id OFFSET %d LIMIT 1)`, rng.IntN(20)))
		case p < 360:
			d.exec("key move", fmt.Sprintf(`UPDATE docs SET id = id + %d
				WHERE id = (SELECT id FROM docs WHERE id < %[1]d ORDER BY random() LIMIT 1)`, movedBase))
		case p < 390:
			d.exec("key move and flag", fmt.Sprintf(`UPDATE docs SET id = id + %d, flag = %d
				WHERE id = (SELECT id FROM docs WHERE id < %[1]d ORDER BY random() LIMIT 1)`, movedBase, rng.IntN(256)))
		case p < 490:
			d.exec("body rewrite", fmt.Sprintf(`UPDATE docs SET body = %s, flag = %d WHERE id IN (%s)`,
				d.body(rng, "id"), rng.IntN(256), randomDocs(rng.IntN(3)+1)))
		case p < 560:
			// An update, maybe another, then a delete of the same key, each
			// in its own transaction.
			id, ok := d.pick(false)
			if !ok {
				continue
			}
			d.exec("update before delete", fmt.Sprintf(`UPDATE docs SET flag = %d WHERE id = %d`, rng.IntN(256), id))
			if rng.IntN(2) == 0 {
				d.exec("update before delete", fmt.Sprintf(`UPDATE docs SET flag = flag %% 250 + 1 WHERE id = %d`, id))
			}
			d.exec("delete after update", fmt.Sprintf(`DELETE FROM docs WHERE id = %d`, id))
		case p < 640:
			d.exec("delete", fmt.Sprintf(`DELETE FROM docs WHERE id IN (%s)`, randomDocs(rng.IntN(3)+1)))
		case p < 800:
			n := rng.IntN(5) + 1
			from := d.nextID.Add(int64(n)) - int64(n)
			d.exec("insert", fmt.Sprintf(`INSERT INTO docs (id, flag, body) SELECT g, %d, %s FROM generate_series(%d, %d) g`,
				rng.IntN(256), d.body(rng, "g"), from, from+int64(n)-1))
		case p < 880:
			// Insert, change with the body unchanged, move, change again:
			// every image comes from the same transaction.
			id := d.nextID.Add(1) - 1
			d.exec("insert, flag, key move", fmt.Sprintf(`BEGIN;
				INSERT INTO docs (id, body) VALUES (%[1]d, %[2]s);
				UPDATE docs SET flag = 5 WHERE id = %[1]d;
				UPDATE docs SET id = id + %[3]d WHERE id = %[1]d;
				UPDATE docs SET flag = 6 WHERE id = %[1]d + %[3]d;
				COMMIT`, id, d.body(rng, fmt.Sprint(id)), movedBase))
		default:
			// An existing doc: flag, key move and flag in one transaction.
			id, ok := d.pick(true)
			if !ok {
				continue
			}
			d.exec("flag, key move, flag", fmt.Sprintf(`BEGIN;
				UPDATE docs SET flag = %d WHERE id = %d;
				UPDATE docs SET id = id + %d WHERE id = %[2]d;
				UPDATE docs SET flag = flag %% 250 + 1 WHERE id = %[2]d + %[3]d;
				COMMIT`, rng.IntN(256), id, movedBase))
		}
	}
}

// big runs a transaction several times larger than batch.max_rows that
// changes the lowest docsBigRows unmoved docs twice with the body unchanged,
// so that a key's changes fall into different flush chunks of one version.
func (d *docsChaos) big(rng *rand.Rand) {
	n := d.p.docsBigRows
	set := func(limit int) string {
		return fmt.Sprintf(`SELECT id FROM docs WHERE id < %d ORDER BY id LIMIT %d`, movedBase, limit)
	}
	switch rng.IntN(3) {
	case 0:
		d.exec("big: flag twice", fmt.Sprintf(`BEGIN;
			UPDATE docs SET flag = 1 WHERE id IN (%[1]s);
			UPDATE docs SET flag = 2 WHERE id IN (%[1]s);
			COMMIT`, set(n)))
	case 1:
		// A third of the bodies rewritten between the flag changes.
		d.exec("big: flag, body, flag", fmt.Sprintf(`BEGIN;
			UPDATE docs SET flag = 3 WHERE id IN (%[1]s);
			UPDATE docs SET body = %[3]s WHERE id IN (%[2]s);
			UPDATE docs SET flag = 4 WHERE id IN (%[1]s);
			COMMIT`, set(n), set(n/3), d.body(rng, "id")))
	default:
		// Then the first keys move: their image is the second change, in
		// an earlier chunk of the same version.
		d.exec("big: flag twice, key moves", fmt.Sprintf(`BEGIN;
			UPDATE docs SET flag = 7 WHERE id IN (%[1]s);
			UPDATE docs SET flag = 8 WHERE id IN (%[1]s);
			UPDATE docs SET id = id + %[3]d WHERE id IN (%[2]s);
			COMMIT`, set(n), set(20), movedBase))
	}
}

// truncate empties docs and re-inserts the docs 1..p.docs with new bodies,
// in the same transaction or the next one, sometimes changing some of them
// again (body unchanged) in the same transaction.
func (d *docsChaos) truncate(rng *rand.Rand) {
	reinsert := fmt.Sprintf(`INSERT INTO docs (id, flag, body) SELECT g, 0, %s FROM generate_series(1, %d) g`,
		docBody("g", fmt.Sprintf("t%d", d.salt.Add(1)), d.p.docSize), d.p.docs)
	switch rng.IntN(3) {
	case 0:
		d.exec("truncate and re-insert", fmt.Sprintf(`BEGIN; TRUNCATE docs; %s; COMMIT`, reinsert))
	case 1:
		d.exec("truncate and re-insert", fmt.Sprintf(`BEGIN; TRUNCATE docs; %s;
			UPDATE docs SET flag = 9 WHERE id <= 100; UPDATE docs SET id = id + %d WHERE id <= 10; COMMIT`, reinsert, movedBase))
	default:
		if d.exec("truncate", `BEGIN; UPDATE docs SET flag = 11 WHERE id <= 50; TRUNCATE docs; COMMIT`) {
			// Retried through a Postgres restart: docs must not stay empty.
			for i := 0; i < 100 && !d.exec("re-insert after truncate", reinsert); i++ {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// haltKey matches the key of docs that a halt's error names.
var haltKey = regexp.MustCompile(`table public\.docs .*key id=(\d+) in transaction`)

// haltReport describes, for a daemon that halted on a change of docs, the
// history of the key its error names: every change of the replay window
// (the slot's changes not yet acknowledged) that touched the key or a key
// it moved to or from, and every stored ClickHouse row of those keys. A
// halt is a path the sequences tests do not cover; this is what reduces
// it to one. It fails nothing: the caller reports the halt.
func (e *env) haltReport(logs string) string {
	m := haltKey.FindStringSubmatch(logs)
	if m == nil {
		return ""
	}
	id, _ := strconv.ParseUint(m[1], 10, 64)
	ids := map[uint64]bool{id: true, id + movedBase: true}
	if id > movedBase {
		ids[id-movedBase] = true
	}
	var b strings.Builder
	changes, err := e.docsWindow()
	if err != nil {
		fmt.Fprintf(&b, "replay window: %v\n", err)
	}
	// A key moved to or from a key of the set joins it.
	for grown := true; grown; {
		grown = false
		for _, c := range changes {
			if c.old != 0 && c.new != 0 && ids[c.old] != ids[c.new] {
				ids[c.old], ids[c.new], grown = true, true, true
			}
		}
	}
	fmt.Fprintf(&b, "changes of docs ids %v in the replay window (%d changes of docs):\n", slices.Sorted(maps.Keys(ids)), len(changes))
	for _, c := range changes {
		if ids[c.old] || ids[c.new] {
			fmt.Fprintf(&b, "  %s\n", c)
		}
	}
	var in []string
	for k := range ids {
		in = append(in, strconv.FormatUint(k, 10))
	}
	q := fmt.Sprintf(`SELECT id, flag, lower(hex(MD5(body))), length(body), _version, _deleted, _seq, _part FROM db_%s.docs
		WHERE id IN (%s) ORDER BY id, _version, _seq`, e.name, strings.Join(in, ", "))
	rows, err := e.ch.Query(context.Background(), q)
	if err != nil {
		fmt.Fprintf(&b, "clickhouse rows: %v\n", err)
		return b.String()
	}
	defer rows.Close()
	b.WriteString("clickhouse rows (id flag md5(body) length version deleted seq part):\n")
	for rows.Next() {
		var id, version, seq uint64
		var length uint64
		var flag, deleted uint8
		var sum, part string
		if err := rows.Scan(&id, &flag, &sum, &length, &version, &deleted, &seq, &part); err != nil {
			fmt.Fprintf(&b, "  %v\n", err)
			break
		}
		fmt.Fprintf(&b, "  %d %d %.8s %d %s %d %d %s\n", id, flag, sum, length, pglogrepl.LSN(version), deleted, seq, part)
	}
	return b.String()
}

// docChange is one change of docs in the replay window: its transaction's
// commit LSN (the rows' version), its own LSN (half the tombstone's seq),
// the old and new id (0: none) and what it says about the body.
type docChange struct {
	version, lsn pglogrepl.LSN
	op           replication.Op
	old, new     uint64
	flag, body   string
}

func (c docChange) String() string {
	return fmt.Sprintf("version %s lsn %s (seq %d) %c %d -> %d flag %s body %s", c.version, c.lsn, 2*uint64(c.lsn), c.op, c.old, c.new, c.flag, c.body)
}

// docsWindow decodes the changes of docs that the daemon's slot still
// holds (peeked: the slot is not advanced).
func (e *env) docsWindow() ([]docChange, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rows pgx.Rows
	var err error
	// The walsender of the daemon that exited may still hold the slot.
	for i := 0; i < 50; i++ {
		rows, err = e.pg.Query(ctx, `SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
			'proto_version', '1', 'publication_names', $2)`, "slot_"+e.name, "pub_"+e.name)
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dec := replication.NewDecoder()
	var out []docChange
	var version pglogrepl.LSN
	for rows.Next() {
		var lsn pglogrepl.LSN
		var data []byte
		if err := rows.Scan(&lsn, &data); err != nil {
			return out, err
		}
		m, err := dec.Decode(data)
		if err != nil {
			return out, err
		}
		switch m := m.(type) {
		case *replication.Begin:
			version = m.FinalLSN
		case *replication.Change:
			if m.Relation.Name != "docs" {
				continue
			}
			c := docChange{version: version, lsn: lsn, op: m.Op}
			if m.Old != nil {
				c.old = docsValue(m.Relation, m.Old, "id").id()
			}
			if m.New != nil {
				c.new = docsValue(m.Relation, m.New, "id").id()
				c.flag = docsValue(m.Relation, m.New, "flag").String()
				c.body = docsValue(m.Relation, m.New, "body").String()
			}
			out = append(out, c)
		}
	}
	return out, rows.Err()
}

// docValue is a column of a decoded docs tuple.
type docValue mapping.Value

func docsValue(rel *replication.Relation, vals []mapping.Value, name string) docValue {
	for i, c := range rel.Columns {
		if c.Name == name && i < len(vals) {
			return docValue(vals[i])
		}
	}
	return docValue{}
}

func (v docValue) id() uint64 {
	n, _ := strconv.ParseUint(string(v.Data), 10, 64)
	return n
}

// String is the value, a body by its MD5 (as the test compares it) and
// length, or "unchanged", "null".
func (v docValue) String() string {
	switch v.Kind {
	case mapping.ValueUnchanged:
		return "unchanged"
	case mapping.ValueText:
		if len(v.Data) > 16 {
			return fmt.Sprintf("%.8x (%d bytes)", md5.Sum(v.Data), len(v.Data))
		}
		return string(v.Data)
	}
	return "null"
}

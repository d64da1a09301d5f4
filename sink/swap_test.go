package sink

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// table is a table of the swap model: whose rows it holds ("old", "new",
// or "dist:<local table>" for a Distributed table) and its comment.
type table struct{ rows, comment string }

// apply runs one statement of the swap on the model tables of database a:
// DROP, RENAME (one or more pairs), EXCHANGE, and CREATE of a Distributed
// table; ON CLUSTER and SYNC change nothing here.
func apply(t *testing.T, m map[string]table, stmt string) {
	t.Helper()
	s := strings.NewReplacer("`a`.", "", "`", "", ",", " ", " ON CLUSTER `c`", "", " SYNC", "").Replace(stmt)
	f := strings.Fields(s)
	switch {
	case strings.HasPrefix(s, "DROP TABLE IF EXISTS "):
		delete(m, f[4])
	case strings.HasPrefix(s, "EXCHANGE TABLES "):
		a, b := f[2], f[4]
		if _, ok := m[a]; !ok {
			t.Fatalf("%s: no table %s", stmt, a)
		}
		if _, ok := m[b]; !ok {
			t.Fatalf("%s: no table %s", stmt, b)
		}
		m[a], m[b] = m[b], m[a]
	case strings.HasPrefix(s, "RENAME TABLE "):
		for i := 2; i+2 < len(f); i += 3 {
			from, to := f[i], f[i+2]
			if _, ok := m[from]; !ok {
				t.Fatalf("%s: no table %s", stmt, from)
			}
			if _, ok := m[to]; ok {
				t.Fatalf("%s: table %s exists", stmt, to)
			}
			m[to] = m[from]
			delete(m, from)
		}
	case strings.HasPrefix(s, "CREATE TABLE IF NOT EXISTS "):
		if _, ok := m[f[5]]; !ok {
			m[f[5]] = table{rows: "dist:" + f[7]}
		}
	default:
		t.Fatalf("the model does not know %s", stmt)
	}
}

// swapOnModel does what SwapIn does, on the model: it reads which tables
// exist and their comments, drops a previous copy under the replaced name,
// and runs the steps of swapSteps, the first crashAfter of them when not
// negative (then the process dies).
func swapOnModel(t *testing.T, db ddl.Database, tbl *mapping.Table, m map[string]table, crashAfter int) {
	t.Helper()
	shadow, target, replaced := db.Storage(ddl.ShadowName(tbl.Target)), db.Storage(tbl.Target), db.Storage(ddl.ReplacedName(tbl.Target))
	_, hasShadow := m[shadow]
	_, hasTarget := m[target]
	_, hasReplaced := m[replaced]
	_, hasDistributed := m[tbl.Target]
	form := ddl.SwapRename
	if hasShadow && hasTarget && db.Exchanges() {
		form = db.Swap(m[shadow].comment, m[target].comment)
	}
	if hasShadow && hasReplaced {
		for _, stmt := range db.DropTarget(ddl.ReplacedName(tbl.Target)) {
			apply(t, m, stmt)
		}
	}
	stmts, ok := swapSteps(db, tbl, swapState{shadow: hasShadow, target: hasTarget, replaced: hasReplaced,
		distributed: hasDistributed, form: form, same: true})
	if !ok {
		return
	}
	for i, stmt := range stmts {
		if i == crashAfter {
			return
		}
		apply(t, m, stmt)
	}
}

// TestSwapRepeatsAfterACrash: on every database engine, with and without
// a cluster, a swap that dies after any of its steps and runs again ends
// with the new copy under the target's name (on a cluster under its
// Distributed table) and the old one under the replaced name, and running
// it once more changes nothing. After an EXCHANGE the names alone are as
// before it: only the comment tokens keep a second run from exchanging
// the old rows back.
func TestSwapRepeatsAfterACrash(t *testing.T) {
	tbl := &mapping.Table{Target: "events", OrderBy: []string{"id"}}
	for _, engine := range []string{ddl.EngineOrdinary, ddl.EngineAtomic, ddl.EngineReplicated} {
		for _, cluster := range []string{"", "c"} {
			db := ddl.Database{Name: "a", Engine: engine, Comments: engine != ddl.EngineOrdinary, Cluster: cluster, ZKPath: ddl.DefaultZKPath}
			initial := func() map[string]table {
				newComment := ""
				if db.Exchanges() {
					newComment = ddl.ShadowComment(ddl.NewToken(timeAt(2)))
				}
				m := map[string]table{
					db.Storage("events"):        {rows: "old", comment: ddl.ShadowComment(ddl.NewToken(timeAt(1)))},
					db.Storage("events_resync"): {rows: "new", comment: newComment},
				}
				if cluster != "" {
					m["events"] = table{rows: "dist:events_local"}
					m["events_resync"] = table{rows: "dist:events_resync_local"}
				}
				return m
			}
			full := initial()
			steps, _ := swapSteps(db, tbl, swapState{shadow: true, target: true, distributed: cluster != "",
				form: db.Swap(full[db.Storage("events_resync")].comment, full[db.Storage("events")].comment), same: true})
			for crash := 0; crash <= len(steps); crash++ {
				t.Run(fmt.Sprintf("%s cluster %q crash after %d of %d", engine, cluster, crash, len(steps)), func(t *testing.T) {
					m := initial()
					swapOnModel(t, db, tbl, m, crash)
					swapOnModel(t, db, tbl, m, -1)
					swapOnModel(t, db, tbl, m, -1)
					want := map[string]table{db.Storage("events"): {rows: "new"}, db.Storage("events_replaced"): {rows: "old"}}
					if cluster != "" {
						want["events"] = table{rows: "dist:events_local"}
					}
					if len(m) != len(want) {
						t.Errorf("tables %v, want %v", m, want)
					}
					for name, w := range want {
						if m[name].rows != w.rows {
							t.Errorf("%s holds %q, want %q (tables %v)", name, m[name].rows, w.rows, m)
						}
					}
				})
			}
		}
	}
}

// timeAt is a time n days after 2026-01-01.
func timeAt(n int) time.Time { return time.Date(2026, 1, 1+n, 0, 0, 0, 0, time.UTC) }

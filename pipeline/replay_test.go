package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// storedTarget is the docs target of the replay model: ClickHouse's parts,
// each the rows of one INSERT in order, merged as ReplacingMergeTree
// (_version) merges them, and the saved checkpoint. The sessions of the
// model write into it one after another.
type storedTarget struct {
	mu    sync.Mutex
	t     *mapping.Table
	parts [][][]any
	saved checkpoint.Position
	rng   *rand.Rand
}

// merge folds a random run of adjacent parts (all: every part) into one,
// keeping per sorting key the row a merge keeps: the highest _version
// and, of equal ones, the last inserted.
func (s *storedTarget) merge(all bool) {
	if s.t == nil || len(s.parts) == 0 || !all && len(s.parts) < 2 {
		return
	}
	from, to := 0, len(s.parts)
	if !all {
		from = s.rng.IntN(len(s.parts) - 1)
		to = from + 2 + s.rng.IntN(len(s.parts)-from-1)
	}
	keep := map[string][]any{}
	var order []string
	for _, p := range s.parts[from:to] {
		for _, r := range p {
			k := s.t.KeyString(r)
			if old, ok := keep[k]; ok {
				if v, _, _ := s.t.Meta(r); v < old[len(s.t.Columns)].(uint64) {
					continue
				}
			} else {
				order = append(order, k)
			}
			keep[k] = r
		}
	}
	merged := make([][]any, 0, len(order))
	for _, k := range order {
		merged = append(merged, keep[k])
	}
	s.parts = slices.Replace(s.parts, from, to, merged)
}

// images returns every stored row by identity, as a flush's lookup reads
// them.
func (s *storedTarget) images() map[string][][]any {
	out := map[string][][]any{}
	for _, p := range s.parts {
		for _, r := range p {
			k := s.t.IdentString(r)
			out[k] = append(out[k], r)
		}
	}
	return out
}

// describe renders the stored parts, a row as id:flag:body@version/seq
// (a tombstone with an x), for a failure message.
func (s *storedTarget) describe() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, p := range s.parts {
		fmt.Fprintf(&b, "  part %d:", i)
		for _, r := range p {
			v, deleted, seq := s.t.Meta(r)
			x := ""
			if deleted {
				x = "x"
			}
			fmt.Fprintf(&b, " %v:%v:%v@%s/%x%s", r[0], r[1], r[2], pglogrepl.LSN(v), seq, x)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// final returns the live rows as FINAL reads them, "id flag body", sorted.
func (s *storedTarget) final() []string {
	var all [][]any
	for _, p := range s.parts {
		all = append(all, p...)
	}
	tmp := &storedTarget{t: s.t, parts: [][][]any{all}}
	tmp.merge(true)
	var out []string
	for _, r := range tmp.parts[0] {
		if !s.t.IsTombstone(r) {
			out = append(out, fmt.Sprintf("%v %v %v", r[0], r[1], r[2]))
		}
	}
	sort.Strings(out)
	return out
}

var (
	errCrashed = errors.New("crashed after the insert")
	errKilled  = errors.New("killed")
)

// modelWriter is the rowWriter and positionStore of one session of the
// replay model: it buffers as sink.Writer does (the latest row per key, in
// the order of first Put) and writes into the shared target, dropping in
// the replay window (rows at or below upTo, the highest version stored
// when the session started) the rows that sink.Superseded drops, and
// completing the rows that wait for images with sink.Fill.Complete, as
// sink.Writer does. A write may crash
// after its insert (crashP), and a merge may run before its lookup
// (mergeP). Once the session is killed or crashed, nothing it does reaches
// the target.
type modelWriter struct {
	target         *storedTarget
	crashP, mergeP float64
	upTo           uint64
	dead           bool // guarded by target.mu

	rows  [][]any
	fills []*sink.Fill
	index map[string]int
}

func (w *modelWriter) SetTable(_ int, t *mapping.Table) {
	w.target.mu.Lock()
	w.target.t = t
	w.target.mu.Unlock()
}

func (w *modelWriter) Put(_ int, key string, row []any, fill *sink.Fill) {
	if i, ok := w.index[key]; ok {
		w.rows[i], w.fills[i] = row, fill
		return
	}
	w.index[key] = len(w.rows)
	w.rows, w.fills = append(w.rows, row), append(w.fills, fill)
}

func (w *modelWriter) Latest(_ int, key string) ([]any, *sink.Fill, bool) {
	i, ok := w.index[key]
	if !ok {
		return nil, nil, false
	}
	return w.rows[i], w.fills[i], true
}

func (w *modelWriter) Size() (rows, bytes, waiting int) {
	for _, f := range w.fills {
		if f != nil {
			waiting++
		}
	}
	return len(w.rows), 0, waiting
}

func (w *modelWriter) Take() (int, func(context.Context) error) {
	rows, fills := w.rows, w.fills
	w.rows, w.fills, w.index = nil, nil, map[string]int{}
	return len(rows), func(context.Context) error {
		s := w.target
		s.mu.Lock()
		defer s.mu.Unlock()
		if w.dead {
			return errKilled
		}
		if len(rows) == 0 {
			return nil
		}
		if s.rng.Float64() < w.mergeP {
			s.merge(false)
		}
		images := s.images()
		var part [][]any
		for i, row := range rows {
			if v, _, _ := s.t.Meta(row); v <= w.upTo && sink.Superseded(s.t, row, images[s.t.IdentString(row)]) {
				continue
			}
			if f := fills[i]; f != nil {
				keep, err := f.Complete(s.t, row, images)
				if err != nil {
					w.dead = true
					return err
				}
				if !keep {
					continue
				}
			}
			part = append(part, slices.Clone(row))
		}
		s.parts = append(s.parts, part)
		if s.rng.Float64() < w.crashP {
			w.dead = true
			return errCrashed
		}
		return nil
	}
}

func (w *modelWriter) Truncate(context.Context, int) error {
	return errors.New("no truncation in the model")
}

func (w *modelWriter) Save(_ context.Context, pos checkpoint.Position) error {
	w.target.mu.Lock()
	defer w.target.mu.Unlock()
	if w.dead {
		return errKilled
	}
	w.target.saved = pos
	return nil
}

func (w *modelWriter) SaveProgress(context.Context, time.Time) error { return nil }

func (w *modelWriter) SaveTruncation(context.Context, string, checkpoint.Truncation) error {
	return errors.New("no truncation in the model")
}

// kill ends the session as kill -9 does: a write under way finishes (its
// INSERT was sent), nothing after it does.
func (w *modelWriter) kill() {
	w.target.mu.Lock()
	w.dead = true
	w.target.mu.Unlock()
}

// doc is a row of docs in the source.
type doc struct {
	flag int
	body string
}

// docsWorkload returns random transactions on a few docs: inserts, updates
// that leave the TOASTed body unchanged, body rewrites, key moves (body
// unchanged), deletes, several in one transaction, the same keys again
// and again (a new row at a key a row moved away from, moves back), and
// the docs they leave.
func docsWorkload(rng *rand.Rand, txns int) ([][]replication.Message, map[uint64]doc) {
	docs := map[uint64]doc{}
	var out [][]replication.Message
	lsn := pglogrepl.LSN(0x1000)
	bodies := 0
	body := func() string { bodies++; return "body" + strconv.Itoa(bodies) }
	id := func(s uint64) mapping.Value { return text(strconv.FormatUint(s, 10)) }
	flag := func(f int) mapping.Value { return text(strconv.Itoa(f)) }
	has := func(k uint64) bool { _, ok := docs[k]; return ok }
	free := func() (uint64, bool) {
		for range 10 {
			if k := uint64(rng.IntN(12) + 1); !has(k) {
				return k, true
			}
		}
		return 0, false
	}
	existing := func() (uint64, bool) {
		var ks []uint64
		for k := range docs {
			ks = append(ks, k)
		}
		if len(ks) == 0 {
			return 0, false
		}
		slices.Sort(ks)
		return ks[rng.IntN(len(ks))], true
	}
	for range txns {
		var changes []replication.Message
		change := func(op replication.Op, old, new []mapping.Value) {
			lsn += 0x10
			changes = append(changes, &replication.Change{Op: op, Relation: docsRel, Old: old, New: new, LSN: lsn})
		}
		for range rng.IntN(4) + 1 {
			switch p := rng.IntN(10); {
			case p < 2 || len(docs) < 3:
				if k, ok := free(); ok {
					d := doc{rng.IntN(100) + 1, body()}
					docs[k] = d
					change(replication.OpInsert, nil, []mapping.Value{id(k), flag(d.flag), text(d.body)})
				}
			case p < 5:
				if k, ok := existing(); ok {
					d := docs[k]
					d.flag = rng.IntN(100) + 1
					docs[k] = d
					change(replication.OpUpdate, nil, []mapping.Value{id(k), flag(d.flag), unchanged})
				}
			case p < 6:
				if k, ok := existing(); ok {
					d := docs[k]
					d.body = body()
					docs[k] = d
					change(replication.OpUpdate, nil, []mapping.Value{id(k), flag(d.flag), text(d.body)})
				}
			case p < 9:
				k, ok := existing()
				to, free := free()
				if ok && free {
					d := docs[k]
					if rng.IntN(2) == 0 {
						d.flag = rng.IntN(100) + 1
					}
					delete(docs, k)
					docs[to] = d
					change(replication.OpUpdate, []mapping.Value{id(k), null, null}, []mapping.Value{id(to), flag(d.flag), unchanged})
				}
			default:
				if k, ok := existing(); ok {
					delete(docs, k)
					change(replication.OpDelete, []mapping.Value{id(k), null, null}, nil)
				}
			}
		}
		lsn += 0x10
		txn := append([]replication.Message{&replication.Begin{FinalLSN: lsn}}, changes...)
		out = append(out, append(txn, &replication.Commit{CommitLSN: lsn}))
	}
	return out, docs
}

// replaySession runs one session of the model from the saved checkpoint
// over every transaction: flushes of maxRows rows, each crashing after
// its insert with probability crashP, a merge before each lookup with
// probability mergeP, and a kill -9 before message killAt (-1: none). It
// reports whether the session saved the last transaction, and fails the
// test on any error but a crash or kill.
func replaySession(t *testing.T, target *storedTarget, txns [][]replication.Message, maxRows int, crashP, mergeP float64, killAt int) bool {
	t.Helper()
	tables := []config.Table{{Name: "public.docs", Target: "docs", OrderBy: []string{"id"},
		Columns: map[string]mapping.ColumnSpec{"id": {Type: "UInt64"}, "flag": {Type: "UInt8"}}}}
	targets := []sink.Schema{{Names: []string{"id", "flag", "body", "_version", "_deleted", "_seq"}}}
	cfg := config.Config{Tables: tables, Batch: config.Batch{MaxRows: maxRows, MaxBytes: 1 << 30, MaxDelay: time.Hour, MinInterval: time.Hour}}
	target.mu.Lock()
	resume := target.saved
	w := &modelWriter{target: target, crashP: crashP, mergeP: mergeP, index: map[string]int{}}
	for _, p := range target.parts {
		for _, r := range p {
			v, _, _ := target.t.Meta(r)
			w.upTo = max(w.upTo, v)
		}
	}
	target.mu.Unlock()
	a := newApplier(cfg, w, w, newRegistry(tables, targets, mapping.Caps{}), resume, hclog.NewNullLogger(), nil)
	ctx := context.Background()
	n := 0
	check := func(err error) bool {
		if err != nil && !errors.Is(err, errCrashed) && !errors.Is(err, errKilled) {
			t.Fatalf("replay from %s: %v\nstored parts:\n%s", resume.LSN, err, target.describe())
		}
		return err == nil
	}
	for i, txn := range txns {
		for j, m := range txn {
			if n == killAt {
				w.kill()
				a.abort()
				return false
			}
			n++
			if !check(a.Handle(ctx, m)) {
				return false
			}
			if i == 0 && j == 0 {
				// Postgres sends the Relation before the session's first change.
				if !check(a.Handle(ctx, docsRel)) {
					return false
				}
			}
		}
	}
	if !check(a.drain(ctx)) {
		return false
	}
	last := txns[len(txns)-1][0].(*replication.Begin).FinalLSN
	return a.Durable() == last
}

// TestReplaysConverge runs random workloads on docs through sessions that
// crash between a flush's insert and its checkpoint or are killed, with
// flushes of varying sizes (a replay splits the transactions differently
// from its first attempt) and merges at any time, and then a session to
// the end: no session may stop (an unchanged TOAST value always finds its
// earlier image: DESIGN.md invariants 3 and 7), and the stored rows must
// read as the source's docs. REPLAY_SEEDS=n runs n workloads.
func TestReplaysConverge(t *testing.T) {
	seeds := 2000
	if n, err := strconv.Atoi(os.Getenv("REPLAY_SEEDS")); err == nil {
		seeds = n
	}
	if testing.Short() {
		seeds = 300
	}
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 3))
		txns, docs := docsWorkload(rng, 25)
		target := &storedTarget{rng: rand.New(rand.NewPCG(seed, 4))}
		var log []string
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("sessions: %s", strings.Join(log, "; "))
					for _, txn := range txns {
						t.Log(describeTxn(txn))
					}
				}
			}()
			for s := 0; s < 8; s++ {
				maxRows := []int{1, 2, 3, 5, 8, 1000}[rng.IntN(6)]
				crashP := []float64{0, 0.2, 0.5}[rng.IntN(3)]
				mergeP := []float64{0, 0.3, 1}[rng.IntN(3)]
				killAt := -1
				if rng.IntN(3) == 0 {
					killAt = rng.IntN(150)
				}
				log = append(log, fmt.Sprintf("session %d from %s: max_rows %d crash %g merge %g kill at %d", s, target.saved.LSN, maxRows, crashP, mergeP, killAt))
				replaySession(t, target, txns, maxRows, crashP, mergeP, killAt)
				switch rng.IntN(3) {
				case 0:
					target.merge(true)
				case 1:
					target.merge(false)
				}
			}
			log = append(log, fmt.Sprintf("last session from %s", target.saved.LSN))
			if !replaySession(t, target, txns, 1000, 0, 0.3, -1) {
				t.Fatal("the last session did not save the last transaction")
			}
			var want []string
			for k, d := range docs {
				want = append(want, fmt.Sprintf("%d %d %s", k, d.flag, d.body))
			}
			sort.Strings(want)
			if got := target.final(); !slices.Equal(got, want) {
				t.Errorf("stored docs:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
		if t.Failed() {
			break
		}
	}
}

// describeTxn renders a transaction of the model for a failure message.
func describeTxn(txn []replication.Message) string {
	var b strings.Builder
	for _, m := range txn {
		switch m := m.(type) {
		case *replication.Begin:
			fmt.Fprintf(&b, "txn %s:", m.FinalLSN)
		case *replication.Change:
			vals := func(vs []mapping.Value) string {
				var s []string
				for _, v := range vs {
					switch v.Kind {
					case mapping.ValueUnchanged:
						s = append(s, "u")
					case mapping.ValueNull:
						s = append(s, "-")
					default:
						s = append(s, string(v.Data))
					}
				}
				return strings.Join(s, ",")
			}
			fmt.Fprintf(&b, " %c@%s(%s|%s)", m.Op, m.LSN, vals(m.Old), vals(m.New))
		}
	}
	return b.String()
}

package replication_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/replication"
)

// inStream puts the xid of a (sub)transaction after the message type, as
// pgoutput does inside a streamed transaction's block.
func inStream(xid uint32, m []byte) []byte {
	return msg(m[0]).u32(xid).raw(m[1:]).bytes()
}

func streamStart(xid uint32, first bool) []byte {
	f := byte(0)
	if first {
		f = 1
	}
	return msg('S').u32(xid).u8(f).bytes()
}

func streamStop() []byte { return msg('E').bytes() }

func streamCommit(xid uint32, commitLSN, endLSN uint64, at time.Time) []byte {
	return msg('c').u32(xid).u8(0).u64(commitLSN).u64(endLSN).i64(pgMicros(at)).bytes()
}

func streamAbort(xid, sub uint32) []byte { return msg('A').u32(xid).u32(sub).bytes() }

// recorder is a Handler that writes down what it is given.
type recorder struct{ got []string }

func (r *recorder) Handle(_ context.Context, m replication.Message) error {
	switch m := m.(type) {
	case *replication.Begin:
		r.got = append(r.got, fmt.Sprintf("begin %s", m.FinalLSN))
	case *replication.Commit:
		r.got = append(r.got, fmt.Sprintf("commit %s", m.CommitLSN))
	case *replication.Relation:
		r.got = append(r.got, "relation "+m.QualifiedName())
	case *replication.Change:
		r.got = append(r.got, fmt.Sprintf("%c %s @%s", m.Op, m.New[0].Data, m.LSN))
	case *replication.Truncate:
		r.got = append(r.got, fmt.Sprintf("truncate %d", len(m.Relations)))
	default:
		r.got = append(r.got, fmt.Sprintf("%T", m))
	}
	return nil
}
func (r *recorder) Tick(context.Context, pglogrepl.LSN) error { return nil }
func (r *recorder) Durable() pglogrepl.LSN                    { return 0 }
func (r *recorder) Deadline() time.Time                       { return time.Time{} }

func ins(id string) []byte { return insertMsg(eventsRel, tuple(txt(id), txt("n"))) }

// TestStreamedTransactions feeds interleaved streamed and ordinary
// transactions, an aborted streamed transaction and a rolled-back
// subtransaction, held in memory and spilled to files: the handler sees
// each committed transaction whole, at its commit, in WAL order, without
// what was aborted.
func TestStreamedTransactions(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	feed := []struct {
		lsn  uint64
		data []byte
	}{
		{0x100, streamStart(700, true)},
		{0x110, inStream(700, eventsRelation())},
		{0x120, inStream(700, ins("1"))},
		{0x130, inStream(701, ins("2"))}, // SAVEPOINT a
		{0x140, inStream(702, ins("3"))}, // SAVEPOINT b
		{0x150, inStream(702, ins("4"))},
		// The transaction's first change of another table, in a
		// subtransaction rolled back below: its Relation message is sent
		// once for the whole transaction.
		{0x151, inStream(702, relationMsg(16390, "public", "items", 'd', relCol{1, "id", oidInt8, -1}, relCol{0, "name", oidText, -1}))},
		{0x152, inStream(702, insertMsg(16390, tuple(txt("70"), txt("x"))))},
		{0x160, streamStop()},
		// An ordinary transaction between the blocks, with its own
		// Relation message.
		{0x170, beginMsg(0x1a0, at, 650)},
		{0x171, eventsRelation()},
		{0x180, ins("50")},
		{0x1a0, commitMsg(0, 0x1a0, 0x1a8, at)},
		{0x1b0, streamStart(800, true)},
		{0x1c0, inStream(800, ins("9"))},
		{0x1d0, streamStop()},
		{0x1e0, streamAbort(700, 702)}, // ROLLBACK TO b
		{0x1f0, streamStart(700, false)},
		{0x200, inStream(703, ins("5"))}, // SAVEPOINT c, released
		{0x210, inStream(700, ins("6"))},
		{0x215, inStream(700, insertMsg(16390, tuple(txt("71"), txt("y"))))},
		{0x220, streamStop()},
		{0x230, streamAbort(800, 800)},
		{0x240, streamAbort(700, 799)}, // a subtransaction with nothing streamed
		{0x300, streamCommit(700, 0x300, 0x308, at)},
	}
	want := []string{
		"begin 0/1A0", "relation public.events", "I 50 @0/180", "commit 0/1A0",
		"begin 0/300", "relation public.events", "I 1 @0/120", "I 2 @0/130",
		"relation public.items", "I 5 @0/200", "I 6 @0/210", "I 71 @0/215", "commit 0/300",
	}
	for _, memory := range []int64{1 << 20, 0, 40} {
		t.Run(fmt.Sprintf("memory %d", memory), func(t *testing.T) {
			dir := t.TempDir()
			spool, err := replication.NewSpool(replication.SpoolOptions{Dir: dir, Prefix: "slot", Memory: memory})
			if err != nil {
				t.Fatal(err)
			}
			s := replication.NewSpooledStream(spool)
			h := &recorder{}
			for _, f := range feed {
				if err := s.Feed(context.Background(), h, pglogrepl.LSN(f.lsn), f.data); err != nil {
					t.Fatalf("at %x: %v", f.lsn, err)
				}
			}
			if !reflect.DeepEqual(h.got, want) {
				t.Errorf("handled\n%s\nwant\n%s", strings.Join(h.got, "\n"), strings.Join(want, "\n"))
			}
			if n, mem, disk := spool.Open(); n != 0 || mem != 0 || disk != 0 {
				t.Errorf("after the commit the spool holds %d transactions, %d bytes in memory, %d on disk", n, mem, disk)
			}
			if files, _ := os.ReadDir(dir); len(files) != 0 {
				t.Errorf("spill files left: %v", files)
			}
		})
	}
}

// TestSpoolFilesOfEarlierRun: a new spool removes its prefix's files of an
// earlier run and leaves other slots' files alone; a spilled open
// transaction's file goes with Close.
func TestSpoolFilesOfEarlierRun(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"slot-77.spill", "slot_b-77.spill", "other.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spool, err := replication.NewSpool(replication.SpoolOptions{Dir: dir, Prefix: "slot", Memory: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "slot-77.spill")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spill file of an earlier run kept: %v", err)
	}
	for _, f := range []string{"slot_b-77.spill", "other.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := spool.Start(5, true); err != nil {
		t.Fatal(err)
	}
	if err := spool.Add(5, 1, inStream(5, ins("1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "slot-5.spill")); err != nil {
		t.Fatalf("open transaction not spilled: %v", err)
	}
	if err := spool.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "slot-5.spill")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spill file kept after Close: %v", err)
	}
}

// TestSpoolErrors: a full spill directory, and blocks and commits of
// transactions whose first block the spool never saw, are errors.
func TestSpoolErrors(t *testing.T) {
	spool, err := replication.NewSpool(replication.SpoolOptions{Dir: t.TempDir(), Prefix: "s", Memory: 0, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := spool.Start(1, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		err := spool.Add(1, 1, inStream(1, ins("1")))
		if err == nil && i < 10 {
			continue
		}
		if !errors.Is(err, replication.ErrSpillFull) || !strings.Contains(err.Error(), "stream.spill_limit") {
			t.Fatalf("after %d messages over a 100-byte limit: %v", i+1, err)
		}
		break
	}
	if err := spool.Start(2, false); err == nil || !strings.Contains(err.Error(), "first block") {
		t.Errorf("later block of an unknown transaction: %v", err)
	}
	if err := spool.Start(1, true); err == nil {
		t.Errorf("first block twice: no error")
	}
	s := replication.NewSpooledStream(spool)
	if err := s.Feed(context.Background(), &recorder{}, 9, streamCommit(3, 9, 10, time.Now())); err == nil {
		t.Errorf("commit of an unknown streamed transaction: no error")
	}
	if _, err := replication.NewDecoder().DecodeStreamed(inStream(1, streamStop())); err == nil ||
		!strings.Contains(err.Error(), "unexpected message inside a streamed") {
		t.Errorf("stream stop with an xid inside a block: %v", err)
	}
	if err := spool.Abort(4, 4); err != nil {
		t.Errorf("abort of a transaction with nothing streamed: %v", err)
	}
}

// TestStreamCommitSkipsAbortedSubtransactions: a subtransaction that the
// commit log says aborted, with no Stream Abort for it, is not written.
func TestStreamCommitSkipsAbortedSubtransactions(t *testing.T) {
	spool, err := replication.NewSpool(replication.SpoolOptions{Dir: t.TempDir(), Prefix: "s", Memory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := replication.NewSpooledStream(spool)
	var asked []uint32
	s.SetAborted(func(_ context.Context, xids []uint32) (map[uint32]bool, error) {
		asked = append(asked, xids...)
		return map[uint32]bool{901: true, 902: false}, nil
	})
	h := &recorder{}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i, m := range [][]byte{
		streamStart(900, true),
		inStream(900, eventsRelation()),
		inStream(900, ins("1")),
		inStream(901, ins("2")),
		inStream(902, ins("3")),
		streamStop(),
		streamCommit(900, 0x500, 0x508, at),
	} {
		if err := s.Feed(context.Background(), h, pglogrepl.LSN(0x400+i*0x10), m); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"begin 0/500", "relation public.events", "I 1 @0/420", "I 3 @0/440", "commit 0/500"}
	if !reflect.DeepEqual(h.got, want) {
		t.Errorf("handled %q, want %q", h.got, want)
	}
	if len(asked) != 2 {
		t.Errorf("asked about %v, want the two subtransactions", asked)
	}
}

// TestSpoolChunks: a transaction held in memory across many chunks, with
// a subtransaction rolled back from the middle of one, replays exactly
// what is left, in order, held in memory or spilled.
func TestSpoolChunks(t *testing.T) {
	pad := strings.Repeat("p", 1000)
	for _, memory := range []int64{64 << 20, 2 << 20} {
		spool, err := replication.NewSpool(replication.SpoolOptions{Dir: t.TempDir(), Prefix: "s", Memory: memory})
		if err != nil {
			t.Fatal(err)
		}
		if err := spool.Start(7, true); err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := 0; i < 4000; i++ {
			sub := uint32(7)
			if i >= 1500 && i < 2500 {
				sub = 8 // rolled back below
			}
			m := inStream(sub, insertMsg(eventsRel, tuple(txt(fmt.Sprint(i)), txt(pad))))
			if err := spool.Add(7, pglogrepl.LSN(i+1), m); err != nil {
				t.Fatal(err)
			}
			if i == 2499 {
				if err := spool.Abort(7, 8); err != nil {
					t.Fatal(err)
				}
			}
			if sub == 7 {
				want = append(want, fmt.Sprint(i))
			}
		}
		var got []string
		d := replication.NewDecoder()
		d.Decode(eventsRelation())
		err = spool.Replay(7, nil, func(_ pglogrepl.LSN, data []byte) error {
			m, err := d.DecodeStreamed(data)
			if err != nil {
				return err
			}
			got = append(got, string(m.(*replication.Change).New[0].Data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("memory %d: replayed %d records, want %d (first difference near %v)", memory, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d: %s vs %s", i, a[i], b[i])
		}
	}
	return "the end"
}

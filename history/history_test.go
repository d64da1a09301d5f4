package history

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/postgres"
)

func TestParseTimelineHistory(t *testing.T) {
	got, err := ParseTimelineHistory([]byte("1\t0/3000158\tno recovery target specified\n\n# comment\n2\t1/A0000000\tat restore point \"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Switch{{1, 0x3000158}, {2, 0x1A0000000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"x\t0/1\tr", "1\tzz\tr", "1"} {
		if _, err := ParseTimelineHistory([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCheck(t *testing.T) {
	const sys = 7311234567890123456
	cp := checkpoint.Position{LSN: 0x5000, Commit: true, History: checkpoint.History{SystemID: sys, Timeline: 1, Epoch: 1}}
	idle := cp
	idle.Commit = false
	legacy := cp
	legacy.History = checkpoint.History{}
	slot := postgres.Slot{Name: "s", Plugin: "pgoutput", ConfirmedFlushLSN: 0x4000, WALStatus: "reserved"}
	srv := Server{SystemID: sys, Timeline: 1, WALPosition: 0x6000}
	promoted := func(end pglogrepl.LSN) Server {
		return Server{SystemID: sys, Timeline: 2, WALPosition: 0x9000, Switches: []Switch{{1, end}}}
	}
	with := func(f func(*postgres.Slot)) postgres.Slot { s := slot; f(&s); return s }
	missing := errors.New("wrapped: " + postgres.ErrSlotMissing.Error())
	missing = errors.Join(missing, postgres.ErrSlotMissing)

	for _, tc := range []struct {
		name    string
		cp      checkpoint.Position
		srv     Server
		slot    postgres.Slot
		slotErr error
		reason  string // "" continues
	}{
		{"same history", cp, srv, slot, nil, ""},
		{"slot at the checkpoint", cp, srv, with(func(s *postgres.Slot) { s.ConfirmedFlushLSN = 0x5000 }), nil, ""},
		{"WAL exactly at the checkpoint", cp, Server{SystemID: sys, Timeline: 1, WALPosition: 0x5000}, slot, nil, ""},
		{"another system", cp, Server{SystemID: sys + 1, Timeline: 1, WALPosition: 0x6000}, slot, nil, ReasonSystem},
		{"WAL behind the checkpoint", cp, Server{SystemID: sys, Timeline: 1, WALPosition: 0x4800}, slot, nil, ReasonRollback},
		{"older timeline", checkpoint.Position{LSN: 0x5000, History: checkpoint.History{SystemID: sys, Timeline: 3}}, srv, slot, nil, ReasonTimeline},
		{"promoted after the checkpoint", cp, promoted(0x5008), slot, nil, ""},
		{"promoted with a lagging synced slot", cp, promoted(0x5008), with(func(s *postgres.Slot) { s.ConfirmedFlushLSN = 0x1000 }), nil, ""},
		{"promoted at the commit", cp, promoted(0x5000), slot, nil, ReasonTimeline},
		{"promoted at the idle position", idle, promoted(0x5000), slot, nil, ""},
		{"promoted before the checkpoint", cp, promoted(0x4ff8), slot, nil, ReasonTimeline},
		{"timeline from another branch", cp, Server{SystemID: sys, Timeline: 3, WALPosition: 0x9000, Switches: []Switch{{2, 0x8000}}}, slot, nil, ReasonTimeline},
		{"slot missing", cp, srv, postgres.Slot{Name: "s"}, missing, ReasonSlotMissing},
		{"slot lost", cp, srv, with(func(s *postgres.Slot) { s.WALStatus = "lost" }), nil, ReasonSlotLost},
		{"slot past the checkpoint", cp, srv, with(func(s *postgres.Slot) { s.ConfirmedFlushLSN = 0x5008 }), nil, ReasonSlotAhead},
		{"legacy checkpoint", legacy, Server{SystemID: 1, Timeline: 4, WALPosition: 0x6000}, slot, nil, ""},
		{"legacy checkpoint, WAL behind", legacy, Server{SystemID: 1, Timeline: 4, WALPosition: 0x4000}, slot, nil, ReasonRollback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.cp, tc.srv, tc.slot, tc.slotErr)
			var brk *Break
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason == "":
			case !errors.As(err, &brk) || !errors.Is(err, ErrBreak):
				t.Fatalf("got %v, want a break (%s)", err, tc.reason)
			case brk.Reason != tc.reason:
				t.Fatalf("reason %s, want %s: %v", brk.Reason, tc.reason, err)
			case !strings.Contains(err.Error(), "replicator resync --all") || !strings.Contains(err.Error(), "slot s,"):
				t.Fatalf("the error does not name the fix: %v", err)
			}
		})
	}
	// A slot in use is a wait, not a break; another plugin is a stop.
	var inUse *postgres.SlotInUseError
	if err := Check(cp, srv, with(func(s *postgres.Slot) { s.Active = true }), nil); !errors.As(err, &inUse) {
		t.Errorf("slot in use: %v", err)
	}
	if err := Check(cp, srv, with(func(s *postgres.Slot) { s.Plugin = "wal2json" }), nil); err == nil || errors.Is(err, ErrBreak) {
		t.Errorf("other plugin: %v", err)
	}
}

func TestWitness(t *testing.T) {
	at := time.Date(2026, 12, 7, 13, 0, 0, 123456000, time.UTC)
	last := checkpoint.Transaction{LSN: 0x5000, Xid: 900, Time: checkpoint.CommitTime(at)}
	commit := checkpoint.Position{LSN: 0x5000, Commit: true, Last: last}
	earlier := checkpoint.Position{LSN: 0x5000, Commit: true, Last: checkpoint.Transaction{LSN: 0x5000, Xid: 900}}
	idle := checkpoint.Position{LSN: 0x7000, Last: last}
	type step struct {
		begin  bool
		lsn    pglogrepl.LSN
		xid    uint32
		broken bool
		// later: the transaction committed a second after the stored one
		later bool
	}
	for _, tc := range []struct {
		name      string
		cp        checkpoint.Position
		confirmed pglogrepl.LSN
		start     pglogrepl.LSN
		steps     []step
	}{
		{"the stored transaction comes again", commit, 0x4000, 0x5000,
			[]step{{false, 0x4000, 0, false, false}, {false, 0x5000, 0, false, false}, {true, 0x5000, 900, false, false}, {true, 0x6000, 901, false, false}, {false, 0x9000, 0, false, false}}},
		{"idle checkpoint starts at the stored transaction", idle, 0x4000, 0x5000,
			[]step{{true, 0x5000, 900, false, false}, {false, 0x7000, 0, false, false}}},
		{"another xid at the commit", commit, 0x4000, 0x5000, []step{{true, 0x5000, 77, true, false}}},
		// A data directory put back hands out the same xids again, and a
		// transaction of the same shape commits at the same LSN.
		{"same xid and LSN, another commit time", commit, 0x4000, 0x5000, []step{{true, 0x5000, 900, true, true}}},
		{"an earlier version's checkpoint has no commit time", earlier, 0x4000, 0x5000,
			[]step{{true, 0x5000, 900, false, true}, {false, 0x9000, 0, false, false}}},
		{"a later transaction first", commit, 0x4000, 0x5000, []step{{true, 0x5100, 950, true, false}}},
		{"the stream passes the commit", idle, 0x4000, 0x5000, []step{{false, 0x5008, 0, true, false}}},
		{"slot confirmed past the stored transaction", idle, 0x6000, 0x6000, []step{{true, 0x7100, 3, false, false}}},
		{"slot confirmed past the checkpoint", idle, 0x7000, 0x7000, []step{{true, 0x7100, 3, false, false}}},
		// Between the newest stored transaction and an idle checkpoint the
		// stored history has no transaction: one there is another history's
		// (a data directory put back, whose WAL grew past the checkpoint).
		{"a transaction in the gap after the stored one", idle, 0x4000, 0x5000,
			[]step{{true, 0x5000, 900, false, false}, {true, 0x6000, 901, true, false}}},
		{"a transaction in the gap, slot confirmed past the stored one", idle, 0x6000, 0x6000,
			[]step{{false, 0x6000, 0, false, false}, {true, 0x6800, 3, true, false}}},
		{"the stream passes the gap", idle, 0x6000, 0x6000,
			[]step{{false, 0x6800, 0, false, false}, {false, 0x7000, 0, false, false}, {true, 0x6800, 3, false, false}}},
		{"a transaction at the idle checkpoint", idle, 0x4000, 0x5000,
			[]step{{true, 0x5000, 900, false, false}, {true, 0x7000, 901, false, false}}},
		{"no stored transaction", checkpoint.Position{LSN: 0x5000}, 0x4000, 0x5000, []step{{true, 0x5100, 3, false, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWitness(tc.cp, tc.confirmed, "s")
			if got := w.Start(tc.cp.LSN); got != tc.start {
				t.Fatalf("start %s, want %s", got, tc.start)
			}
			for i, s := range tc.steps {
				var err error
				if s.begin {
					ct := at
					if s.later {
						ct = at.Add(time.Second)
					}
					err = w.Begin(s.lsn, s.xid, ct)
				} else {
					err = w.Position(s.lsn)
				}
				if s.broken != (err != nil) || err != nil && !errors.Is(err, ErrBreak) {
					t.Fatalf("step %d (%+v): %v", i, s, err)
				}
				if err != nil {
					return
				}
			}
			if w.Pending() && len(tc.steps) > 0 && tc.steps[len(tc.steps)-1].lsn > tc.cp.Last.LSN {
				t.Fatalf("still pending")
			}
		})
	}
	var none *Witness
	if none.Pending() || none.Begin(1, 1, at) != nil || none.Position(1) != nil || none.Start(5) != 5 {
		t.Fatal("a nil witness decides something")
	}
}

func TestWitnessAcknowledgesNothingNewWhilePending(t *testing.T) {
	cp := checkpoint.Position{LSN: 0x5000, Commit: true, Last: checkpoint.Transaction{LSN: 0x5000, Xid: 9}}
	w := NewWitness(cp, 0x4000, "s")
	if got := w.Acknowledged(0x5000); got != 0x4000 {
		t.Fatalf("acknowledged %s while pending, want the slot's 0/4000", got)
	}
	if err := w.Begin(0x5000, 9, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if w.Pending() {
		t.Skip("the witness waits for more (see its gap rules)")
	}
	if got := w.Acknowledged(0x5000); got != 0x5000 {
		t.Fatalf("acknowledged %s once decided, want 0/5000", got)
	}
	var none *Witness
	if got := none.Acknowledged(7); got != 7 {
		t.Fatalf("nil witness: %d", got)
	}
}

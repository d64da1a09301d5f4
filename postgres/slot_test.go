package postgres

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

func sp(s string) *string { return &s }

func fullSlotRow() []*string {
	return []*string{sp("pgoutput"), sp("db"), sp("t"), sp("1234"), sp("0/16B3748"), sp("0/16B3700"), sp("reserved"), sp("0/16B4000"), nil, sp("f"), sp("f")}
}

func TestParseSlot(t *testing.T) {
	withNulls := fullSlotRow()
	withNulls[2], withNulls[3], withNulls[4], withNulls[5], withNulls[7] = sp("f"), nil, nil, nil, nil
	for _, tc := range []struct {
		name    string
		vals    []*string
		found   bool
		want    Slot
		wantErr string // substring of the error; empty: no error
		missing bool   // the error wraps ErrSlotMissing
	}{
		{name: "not found", found: false, wantErr: "s1", missing: true},
		{name: "too few columns", vals: fullSlotRow()[:10], found: true, wantErr: "10 columns"},
		{name: "too many columns", vals: append(fullSlotRow(), sp("x")), found: true, wantErr: "12 columns"},
		{name: "failover, synced (17+)", vals: func() []*string { v := fullSlotRow(); v[9], v[10] = sp("t"), sp("t"); return v }(), found: true, want: Slot{
			Name: "s1", Plugin: "pgoutput", Database: "db", Active: true, ActivePID: "1234",
			ConfirmedFlushLSN: 0x16B3748, RestartLSN: 0x16B3700, WALStatus: "reserved", WALPosition: 0x16B4000, Failover: true, Synced: true,
		}},
		{name: "invalidated", vals: func() []*string { v := fullSlotRow(); v[6], v[8] = sp("lost"), sp("idle_timeout"); return v }(), found: true, want: Slot{
			Name: "s1", Plugin: "pgoutput", Database: "db", Active: true, ActivePID: "1234",
			ConfirmedFlushLSN: 0x16B3748, RestartLSN: 0x16B3700, WALStatus: "lost", WALPosition: 0x16B4000, InvalidationReason: "idle_timeout",
		}},
		{name: "full row", vals: fullSlotRow(), found: true, want: Slot{
			Name: "s1", Plugin: "pgoutput", Database: "db", Active: true, ActivePID: "1234",
			ConfirmedFlushLSN: 0x16B3748, RestartLSN: 0x16B3700, WALStatus: "reserved", WALPosition: 0x16B4000,
		}},
		{name: "nulls and inactive", vals: withNulls, found: true, want: Slot{
			Name: "s1", Plugin: "pgoutput", Database: "db", WALStatus: "reserved",
		}},
		{name: "only confirmed null", vals: func() []*string { v := fullSlotRow(); v[4] = nil; return v }(), found: true, want: Slot{
			Name: "s1", Plugin: "pgoutput", Database: "db", Active: true, ActivePID: "1234",
			RestartLSN: 0x16B3700, WALStatus: "reserved", WALPosition: 0x16B4000,
		}},
		{name: "only restart null", vals: func() []*string { v := fullSlotRow(); v[5] = nil; return v }(), found: true, want: Slot{
			Name: "s1", Plugin: "pgoutput", Database: "db", Active: true, ActivePID: "1234",
			ConfirmedFlushLSN: 0x16B3748, WALStatus: "reserved", WALPosition: 0x16B4000,
		}},
		{name: "bad confirmed lsn", vals: func() []*string { v := fullSlotRow(); v[4] = sp("zz"); return v }(), found: true, wantErr: "s1"},
		{name: "bad restart lsn", vals: func() []*string { v := fullSlotRow(); v[5] = sp("16B3700"); return v }(), found: true, wantErr: "s1"},
		{name: "bad wal position", vals: func() []*string { v := fullSlotRow(); v[7] = sp(""); return v }(), found: true, wantErr: "s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSlot("s1", tc.vals, tc.found)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("parseSlot = %+v, nil, want an error", got)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not contain %q", err, tc.wantErr)
				}
				if errors.Is(err, ErrSlotMissing) != tc.missing {
					t.Errorf("errors.Is(%q, ErrSlotMissing) = %v, want %v", err, !tc.missing, tc.missing)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSlot error = %v, want nil", err)
			}
			if got != tc.want {
				t.Errorf("parseSlot = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRetainedWAL(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slot      Slot
		want      uint64
		wantOK    bool
		wantPanic bool
	}{
		{name: "restart unknown", slot: Slot{RestartLSN: 0, WALPosition: 100}, want: 0, wantOK: false},
		{name: "position equals restart", slot: Slot{RestartLSN: 100, WALPosition: 100}, want: 0, wantOK: true},
		{name: "position behind restart", slot: Slot{RestartLSN: 100, WALPosition: 50}, want: 0, wantOK: true},
		{name: "position unknown", slot: Slot{RestartLSN: 100}, want: 0, wantOK: true},
		{name: "retained", slot: Slot{RestartLSN: 0x16B3700, WALPosition: 0x16B4000}, want: 0x900, wantOK: true},
		{name: "across segments", slot: Slot{RestartLSN: 0xFFFFFFFF, WALPosition: 0x1_00000001}, want: 2, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.slot.RetainedWAL()
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("RetainedWAL() = %v, %v, want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCheckResume(t *testing.T) {
	ok := Slot{Name: "s1", Plugin: "pgoutput", WALStatus: "reserved", ConfirmedFlushLSN: 1000}
	with := func(f func(*Slot)) Slot { s := ok; f(&s); return s }
	for _, tc := range []struct {
		name     string
		slot     Slot
		resume   pglogrepl.LSN
		contains []string // substrings of the error; nil: no error
		inUsePID string   // the error is a *SlotInUseError with this PID
		lost     bool     // the error wraps ErrSlotLost
	}{
		{name: "resume equals confirmed", slot: ok, resume: 1000},
		{name: "resume after confirmed", slot: ok, resume: 2000},
		{name: "confirmed unknown", slot: with(func(s *Slot) { s.ConfirmedFlushLSN = 0 }), resume: 0},
		{name: "wal status extended", slot: with(func(s *Slot) { s.WALStatus = "extended" }), resume: 1000},
		{name: "other plugin", slot: with(func(s *Slot) { s.Plugin = "wal2json" }), resume: 1000,
			contains: []string{"s1", `"wal2json"`, "pgoutput"}},
		{name: "empty plugin", slot: with(func(s *Slot) { s.Plugin = "" }), resume: 1000,
			contains: []string{"s1", `""`}},
		{name: "active", slot: with(func(s *Slot) { s.Active, s.ActivePID = true, "4242" }), resume: 1000,
			contains: []string{"s1", "4242"}, inUsePID: "4242"},
		{name: "lost", slot: with(func(s *Slot) { s.WALStatus = "lost" }), resume: 1000,
			contains: []string{"s1", "removed WAL"}, lost: true},
		{name: "wal removed (17+)", slot: with(func(s *Slot) { s.WALStatus, s.InvalidationReason = "lost", "wal_removed" }), resume: 1000,
			contains: []string{"s1", "removed WAL"}, lost: true},
		{name: "idle timeout (18)", slot: with(func(s *Slot) { s.WALStatus, s.InvalidationReason = "lost", "idle_timeout" }), resume: 1000,
			contains: []string{"s1", "invalidation_reason = idle_timeout", "replicator setup"}, lost: true},
		{name: "invalidated, wal status not lost", slot: with(func(s *Slot) { s.InvalidationReason = "rows_removed" }), resume: 1000,
			contains: []string{"rows_removed"}, lost: true},
		{name: "confirmed beyond checkpoint", slot: ok, resume: 999,
			contains: []string{"s1", "beyond the ClickHouse checkpoint", "pg_drop_replication_slot('s1')", "0/3E8", "0/3E7"}},
		{name: "plugin checked before active", slot: with(func(s *Slot) { s.Plugin, s.Active = "test_decoding", true }), resume: 1000,
			contains: []string{"test_decoding"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.slot.CheckResume(tc.resume)
			if tc.contains == nil {
				if err != nil {
					t.Errorf("CheckResume(%s) = %v, want nil", tc.resume, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckResume(%s) = nil, want an error", tc.resume)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			var inUse *SlotInUseError
			if isInUse := errors.As(err, &inUse); isInUse != (tc.inUsePID != "") {
				t.Errorf("errors.As(%q, *SlotInUseError) = %v, want %v", err, isInUse, tc.inUsePID != "")
			} else if isInUse && (inUse.PID != tc.inUsePID || inUse.Slot != "s1") {
				t.Errorf("SlotInUseError = %+v, want slot s1 pid %s", inUse, tc.inUsePID)
			}
			if errors.Is(err, ErrSlotLost) != tc.lost {
				t.Errorf("errors.Is(%q, ErrSlotLost) = %v, want %v", err, !tc.lost, tc.lost)
			}
		})
	}
}

func TestCheckIdentity(t *testing.T) {
	for _, tc := range []struct {
		ident   string
		hasPK   bool
		wantErr string
	}{
		{ident: "n", hasPK: true, wantErr: "REPLICA IDENTITY NOTHING"},
		{ident: "n", hasPK: false, wantErr: "REPLICA IDENTITY NOTHING"},
		{ident: "d", hasPK: false, wantErr: "no primary key"},
		{ident: "d", hasPK: true},
		{ident: "f", hasPK: false},
		{ident: "f", hasPK: true},
		{ident: "i", hasPK: false},
		{ident: "i", hasPK: true},
	} {
		t.Run(fmt.Sprintf("%s/pk=%v", tc.ident, tc.hasPK), func(t *testing.T) {
			err := checkIdentity("public.events", tc.ident, tc.hasPK)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("checkIdentity = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkIdentity = nil, want an error with %q", tc.wantErr)
			}
			for _, s := range []string{tc.wantErr, "public.events"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestCheckSettings(t *testing.T) {
	const walProblem, roleProblem, versionProblem = "wal_level", "REPLICATION attribute", "needs PostgreSQL 13 or later"
	for _, tc := range []struct {
		name         string
		major        int
		walLevel     string
		canReplicate bool
		want         []string // one substring per problem, in order; nil: no error
	}{
		{name: "all fine", walLevel: "logical", canReplicate: true},
		{name: "oldest supported", major: 13, walLevel: "logical", canReplicate: true},
		{name: "newest", major: 18, walLevel: "logical", canReplicate: true},
		{name: "too old", major: 12, walLevel: "logical", canReplicate: true, want: []string{versionProblem}},
		{name: "too old and replica", major: 10, walLevel: "replica", canReplicate: true, want: []string{versionProblem, walProblem}},
		{name: "replica wal level", walLevel: "replica", canReplicate: true, want: []string{walProblem}},
		{name: "empty wal level", walLevel: "", canReplicate: true, want: []string{walProblem}},
		{name: "no replication role", walLevel: "logical", canReplicate: false, want: []string{roleProblem}},
		{name: "both", walLevel: "minimal", canReplicate: false, want: []string{walProblem, roleProblem}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSettings(tc.major, tc.walLevel, tc.canReplicate)
			if tc.want == nil {
				if err != nil {
					t.Errorf("checkSettings = %v, want nil", err)
				}
				return
			}
			var se *ServerError
			if !errors.As(err, &se) {
				t.Fatalf("checkSettings = %v (%T), want a *ServerError", err, err)
			}
			if len(se.Problems) != len(tc.want) {
				t.Fatalf("problems = %q, want %d", se.Problems, len(tc.want))
			}
			for i, s := range tc.want {
				if !strings.Contains(se.Problems[i], s) {
					t.Errorf("problem %d = %q, want it to contain %q", i, se.Problems[i], s)
				}
				if !strings.Contains(err.Error(), se.Problems[i]) {
					t.Errorf("error %q does not list problem %q", err, se.Problems[i])
				}
			}
			if tc.walLevel != "logical" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.walLevel)) {
				t.Errorf("error %q does not name wal_level %q", err, tc.walLevel)
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestDescribe(t *testing.T) {
	plain := errors.New("something else")
	inUse := &pgconn.PgError{Code: "55006", Message: `replication slot "s" is active for PID 4242`}
	for _, tc := range []struct {
		name      string
		err       error
		slot, pub string
		retryable bool
		missing   bool   // wraps ErrSlotMissing
		inUsePID  string // is a *SlotInUseError with this PID
		same      bool   // returned unchanged
		contains  string
	}{
		{name: "slot in use", err: inUse, slot: "s", inUsePID: "4242"},
		{name: "slot in use wrapped", err: fmt.Errorf("start replication: %w", inUse), slot: "s", inUsePID: "4242"},
		{name: "object in use without slot", err: inUse, same: true},
		{name: "admin shutdown", err: &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"},
			retryable: true, contains: "administrator command"},
		{name: "too many connections", err: &pgconn.PgError{Code: "53300", Message: "sorry, too many clients already"}, retryable: true},
		{name: "slot missing", err: &pgconn.PgError{Code: "42704", Message: `replication slot "s" does not exist`},
			slot: "s", missing: true, contains: `replication slot "s" does not exist`},
		{name: "publication missing", err: &pgconn.PgError{Code: "42704", Message: `publication "p" does not exist`},
			pub: "p", contains: `create it with ` + "`replicator setup`" + ` (publication "p")`},
		{name: "slot named after a publication missing", err: &pgconn.PgError{Code: "42704", Message: `replication slot "publication_slot" does not exist`},
			slot: "publication_slot", missing: true, contains: `replication slot "publication_slot" does not exist`},
		{name: "other undefined object", err: &pgconn.PgError{Code: "42704", Message: `type "foo" does not exist`}, same: true},
		{name: "no replication role", err: &pgconn.PgError{Code: "42501", Message: "must be superuser or replication role to start walsender"},
			contains: "ALTER ROLE"},
		{name: "wal level", err: &pgconn.PgError{Code: "55000", Message: `logical decoding requires wal_level >= logical`},
			contains: "wal_level = logical"},
		{name: "in recovery", err: &pgconn.PgError{Code: "55000", Message: "recovery is in progress",
			Hint: "WAL control functions cannot be executed during recovery."}, retryable: true, contains: "waiting for its promotion"},
		{name: "synced slot on a standby", err: &pgconn.PgError{Code: "55000", Message: `cannot use replication slot "s" for logical decoding`,
			Detail: "This replication slot is being synchronized from the primary server."}, slot: "s", retryable: true, contains: "standby"},
		{name: "other prerequisite state", err: &pgconn.PgError{Code: "55000", Message: `replication slot "s" cannot be advanced`}, same: true},
		{name: "other server error", err: &pgconn.PgError{Code: "42601", Message: "syntax error"}, same: true},
		{name: "eof", err: io.EOF, retryable: true},
		{name: "unexpected eof wrapped", err: fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), retryable: true},
		{name: "net timeout", err: timeoutError{}, retryable: true},
		{name: "plain", err: plain, same: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Describe(tc.err, tc.slot, tc.pub)
			if got == nil {
				t.Fatalf("Describe(%v) = nil", tc.err)
			}
			if tc.same && got != tc.err {
				t.Errorf("Describe(%v) = %v, want it unchanged", tc.err, got)
			}
			if IsRetryable(got) != tc.retryable {
				t.Errorf("IsRetryable(%v) = %v, want %v", got, !tc.retryable, tc.retryable)
			}
			if errors.Is(got, ErrSlotMissing) != tc.missing {
				t.Errorf("errors.Is(%v, ErrSlotMissing) = %v, want %v", got, !tc.missing, tc.missing)
			}
			var siu *SlotInUseError
			if isInUse := errors.As(got, &siu); isInUse != (tc.inUsePID != "") {
				t.Errorf("errors.As(%v, *SlotInUseError) = %v, want %v", got, isInUse, tc.inUsePID != "")
			} else if isInUse && (siu.PID != tc.inUsePID || siu.Slot != tc.slot) {
				t.Errorf("SlotInUseError = %+v, want slot %s pid %s", siu, tc.slot, tc.inUsePID)
			}
			if tc.contains != "" && !strings.Contains(got.Error(), tc.contains) {
				t.Errorf("Describe(%v) = %q, want it to contain %q", tc.err, got, tc.contains)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct {
		fn   string
		in   string
		want string
	}{
		{fn: "QuoteTable", in: "public.events", want: `"public"."events"`},
		{fn: "QuoteTable", in: "events", want: `"events"`},
		{fn: "QuoteTable", in: "My Schema.Ev.ents", want: `"My Schema"."Ev.ents"`},
		{fn: "QuoteTable", in: `pub"lic.ev"ents`, want: `"pub""lic"."ev""ents"`},
		{fn: "QuoteIdent", in: "replicator", want: `"replicator"`},
		{fn: "QuoteIdent", in: "a.b", want: `"a.b"`},
		{fn: "QuoteIdent", in: `we"ird`, want: `"we""ird"`},
		{fn: "QuoteIdent", in: `"`, want: `""""`},
	} {
		t.Run(tc.fn+"/"+tc.in, func(t *testing.T) {
			quote := QuoteIdent
			if tc.fn == "QuoteTable" {
				quote = QuoteTable
			}
			if got := quote(tc.in); got != tc.want {
				t.Errorf("%s(%q) = %s, want %s", tc.fn, tc.in, got, tc.want)
			}
		})
	}
}

func TestQuoteLiteral(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "slot", want: "'slot'"},
		{in: "it's", want: "'it''s'"},
		{in: "", want: "''"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := quoteLiteral(tc.in); got != tc.want {
				t.Errorf("quoteLiteral(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestSlotSQL(t *testing.T) {
	for _, tc := range []struct {
		major  int
		reason bool // reads invalidation_reason, failover and synced
	}{{13, false}, {14, false}, {16, false}, {17, true}, {18, true}} {
		t.Run(fmt.Sprint(tc.major), func(t *testing.T) {
			q := slotSQL(tc.major, "it's")
			for _, col := range []string{"invalidation_reason", "failover", "synced"} {
				if got := strings.Contains(q, col); got != tc.reason {
					t.Errorf("slotSQL(%d) reads %s = %v, want %v: %s", tc.major, col, got, tc.reason, q)
				}
			}
			for _, col := range []string{"wal_status", "confirmed_flush_lsn", "restart_lsn", "'it''s'"} {
				if !strings.Contains(q, col) {
					t.Errorf("slotSQL(%d) lacks %s: %s", tc.major, col, q)
				}
			}
			if n := strings.Count(q[:strings.Index(q, " FROM ")], ",") + 1; n != slotColumns {
				t.Errorf("slotSQL(%d) selects %d columns, parseSlot reads %d: %s", tc.major, n, slotColumns, q)
			}
		})
	}
}

func TestNeedsMarkTable(t *testing.T) {
	for major, want := range map[int]bool{13: true, 14: false, 15: false, 16: false, 17: false, 18: false} {
		if got := NeedsMarkTable(major); got != want {
			t.Errorf("NeedsMarkTable(%d) = %v, want %v", major, got, want)
		}
	}
}

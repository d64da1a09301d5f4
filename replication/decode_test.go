package replication_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

// wire builds pgoutput v1 messages by hand, big-endian, independently of
// the decoder under test.
type wire struct{ b []byte }

func msg(typ byte) *wire { return &wire{b: []byte{typ}} }

func (w *wire) u8(v byte) *wire { w.b = append(w.b, v); return w }
func (w *wire) u16(v uint16) *wire {
	w.b = binary.BigEndian.AppendUint16(w.b, v)
	return w
}
func (w *wire) u32(v uint32) *wire {
	w.b = binary.BigEndian.AppendUint32(w.b, v)
	return w
}
func (w *wire) u64(v uint64) *wire {
	w.b = binary.BigEndian.AppendUint64(w.b, v)
	return w
}
func (w *wire) i32(v int32) *wire { return w.u32(uint32(v)) }
func (w *wire) i64(v int64) *wire { return w.u64(uint64(v)) }
func (w *wire) cstr(s string) *wire {
	w.b = append(append(w.b, s...), 0)
	return w
}
func (w *wire) raw(b []byte) *wire { w.b = append(w.b, b...); return w }
func (w *wire) bytes() []byte      { return w.b }

// relCol is one column of a Relation message.
type relCol struct {
	flags  byte
	name   string
	oid    uint32
	typmod int32
}

func relationMsg(id uint32, ns, name string, identity byte, cols ...relCol) []byte {
	w := msg('R').u32(id).cstr(ns).cstr(name).u8(identity).u16(uint16(len(cols)))
	for _, c := range cols {
		w.u8(c.flags).cstr(c.name).u32(c.oid).i32(c.typmod)
	}
	return w.bytes()
}

// tv is one TupleData column: kind 'n', 'u', 't' or 'b' (and anything else,
// for error tests); data is written with a length prefix for 't' and 'b'.
type tv struct {
	kind byte
	data string
}

func txt(s string) tv { return tv{kind: 't', data: s} }

var (
	null      = tv{kind: 'n'}
	unchanged = tv{kind: 'u'}
)

func tuple(cols ...tv) []byte {
	w := &wire{}
	w.u16(uint16(len(cols)))
	for _, c := range cols {
		w.u8(c.kind)
		if c.kind == 't' || c.kind == 'b' {
			w.u32(uint32(len(c.data))).raw([]byte(c.data))
		}
	}
	return w.bytes()
}

func insertMsg(rel uint32, newTup []byte) []byte {
	return msg('I').u32(rel).u8('N').raw(newTup).bytes()
}

// updateMsg builds an update; oldKind 0 sends no old tuple.
func updateMsg(rel uint32, oldKind byte, oldTup, newTup []byte) []byte {
	w := msg('U').u32(rel)
	if oldKind != 0 {
		w.u8(oldKind).raw(oldTup)
	}
	return w.u8('N').raw(newTup).bytes()
}

func deleteMsg(rel uint32, oldKind byte, oldTup []byte) []byte {
	return msg('D').u32(rel).u8(oldKind).raw(oldTup).bytes()
}

// pgMicros is t in microseconds since 2000-01-01 00:00:00 UTC.
func pgMicros(t time.Time) int64 {
	return t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
}

func beginMsg(finalLSN uint64, commit time.Time, xid uint32) []byte {
	return msg('B').u64(finalLSN).i64(pgMicros(commit)).u32(xid).bytes()
}

func commitMsg(flags byte, commitLSN, endLSN uint64, commit time.Time) []byte {
	return msg('C').u8(flags).u64(commitLSN).u64(endLSN).i64(pgMicros(commit)).bytes()
}

func truncateMsg(opts byte, rels ...uint32) []byte {
	w := msg('T').u32(uint32(len(rels))).u8(opts)
	for _, r := range rels {
		w.u32(r)
	}
	return w.bytes()
}

func logicalMsg(flags byte, lsn uint64, prefix string, content []byte) []byte {
	return msg('M').u8(flags).u64(lsn).cstr(prefix).u32(uint32(len(content))).raw(content).bytes()
}

const (
	oidInt8   = 20
	oidText   = 25
	eventsRel = 16384
)

// eventsRelation is public.events (id int8 primary key, name text).
func eventsRelation() []byte {
	return relationMsg(eventsRel, "public", "events", 'd',
		relCol{flags: 1, name: "id", oid: oidInt8, typmod: -1},
		relCol{flags: 0, name: "name", oid: oidText, typmod: -1})
}

// val is a copy of a mapping.Value, safe to keep across Decode calls.
type val struct {
	kind mapping.ValueKind
	data string
}

func snap(vs []mapping.Value) []val {
	if vs == nil {
		return nil
	}
	out := make([]val, len(vs))
	for i, v := range vs {
		out[i] = val{kind: v.Kind, data: string(v.Data)}
	}
	return out
}

var (
	vNull      = val{kind: mapping.ValueNull}
	vUnchanged = val{kind: mapping.ValueUnchanged}
)

func vText(s string) val { return val{kind: mapping.ValueText, data: s} }

func equalVals(a, b []val) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// change is a copy of a *replication.Change.
type change struct {
	op       replication.Op
	relation *replication.Relation
	old, new []val
}

func decodeChange(t *testing.T, d *replication.Decoder, data []byte) change {
	t.Helper()
	m, err := d.Decode(data)
	if err != nil {
		t.Fatalf("Decode(%q): %v", data, err)
	}
	c, ok := m.(*replication.Change)
	if !ok {
		t.Fatalf("Decode(%q) = %T, want *replication.Change", data, m)
	}
	return change{op: c.Op, relation: c.Relation, old: snap(c.Old), new: snap(c.New)}
}

func mustDecode(t *testing.T, d *replication.Decoder, data []byte) replication.Message {
	t.Helper()
	m, err := d.Decode(data)
	if err != nil {
		t.Fatalf("Decode(%q): %v", data, err)
	}
	return m
}

func checkChange(t *testing.T, name string, got change, op replication.Op, rel *replication.Relation, old, new []val) {
	t.Helper()
	if got.op != op {
		t.Errorf("%s: Op = %q, want %q", name, got.op, op)
	}
	if got.relation != rel {
		t.Errorf("%s: Relation = %p, want the decoded relation %p", name, got.relation, rel)
	}
	if !equalVals(got.old, old) {
		t.Errorf("%s: Old = %+v, want %+v", name, got.old, old)
	}
	if !equalVals(got.new, new) {
		t.Errorf("%s: New = %+v, want %+v", name, got.new, new)
	}
}

func TestDecodeTransaction(t *testing.T) {
	commitTime := time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC)
	d := replication.NewDecoder()

	// Begin.
	m := mustDecode(t, d, beginMsg(0x16B3748, commitTime, 771))
	b, ok := m.(*replication.Begin)
	if !ok {
		t.Fatalf("Begin decoded as %T", m)
	}
	if b.FinalLSN != pglogrepl.LSN(0x16B3748) || b.Xid != 771 || !b.CommitTime.Equal(commitTime) || b.CommitTime.Location() != time.UTC {
		t.Errorf("Begin = %+v, want FinalLSN 0/16B3748, Xid 771, CommitTime %v UTC", b, commitTime)
	}

	// Relation.
	m = mustDecode(t, d, eventsRelation())
	rel, ok := m.(*replication.Relation)
	if !ok {
		t.Fatalf("Relation decoded as %T", m)
	}
	wantCols := []mapping.SourceColumn{
		{Name: "id", TypeOID: oidInt8, TypeMod: -1, Identity: true},
		{Name: "name", TypeOID: oidText, TypeMod: -1, Identity: false},
	}
	if rel.ID != eventsRel || rel.Namespace != "public" || rel.Name != "events" || rel.ReplicaIdentity != 'd' ||
		!reflect.DeepEqual(rel.Columns, wantCols) {
		t.Errorf("Relation = %+v, want id %d public.events identity 'd' columns %+v", rel, eventsRel, wantCols)
	}
	if got := rel.QualifiedName(); got != "public.events" {
		t.Errorf("QualifiedName() = %q, want public.events", got)
	}

	// Insert id=1.
	c := decodeChange(t, d, insertMsg(eventsRel, tuple(txt("1"), txt("first"))))
	checkChange(t, "insert", c, replication.OpInsert, rel, nil, []val{vText("1"), vText("first")})

	// Update id=1 with a new name; no old tuple (key unchanged).
	c = decodeChange(t, d, updateMsg(eventsRel, 0, nil, tuple(txt("1"), txt("second"))))
	checkChange(t, "update", c, replication.OpUpdate, rel, nil, []val{vText("1"), vText("second")})

	// Update id 1 -> 2: the old key comes as 'K' with NULL for non-key columns.
	c = decodeChange(t, d, updateMsg(eventsRel, 'K', tuple(txt("1"), null), tuple(txt("2"), unchanged)))
	checkChange(t, "key update", c, replication.OpUpdate, rel, []val{vText("1"), vNull}, []val{vText("2"), vUnchanged})

	// Delete id=2.
	c = decodeChange(t, d, deleteMsg(eventsRel, 'K', tuple(txt("2"), null)))
	checkChange(t, "delete", c, replication.OpDelete, rel, []val{vText("2"), vNull}, nil)

	// Commit.
	m = mustDecode(t, d, commitMsg(0, 0x16B3748, 0x16B3778, commitTime))
	cm, ok := m.(*replication.Commit)
	if !ok {
		t.Fatalf("Commit decoded as %T", m)
	}
	if cm.CommitLSN != 0x16B3748 || cm.EndLSN != 0x16B3778 || !cm.CommitTime.Equal(commitTime) || cm.CommitTime.Location() != time.UTC {
		t.Errorf("Commit = %+v, want CommitLSN 0/16B3748, EndLSN 0/16B3778, CommitTime %v UTC", cm, commitTime)
	}
}

func TestDecodeValuesAreCopiedFromInput(t *testing.T) {
	// Data of a text value is exactly the bytes on the wire, including
	// empty strings and bytes that are not UTF-8.
	d := replication.NewDecoder()
	mustDecode(t, d, eventsRelation())
	c := decodeChange(t, d, insertMsg(eventsRel, tuple(txt("9223372036854775807"), txt(""))))
	if want := []val{vText("9223372036854775807"), vText("")}; !equalVals(c.new, want) {
		t.Errorf("New = %+v, want %+v", c.new, want)
	}
	c = decodeChange(t, d, insertMsg(eventsRel, tuple(txt("1"), txt("\x00\xff\\x41"))))
	if want := []val{vText("1"), vText("\x00\xff\\x41")}; !equalVals(c.new, want) {
		t.Errorf("New = %+v, want %+v", c.new, want)
	}
}

func TestDecodeUpdateWithFullOldRow(t *testing.T) {
	d := replication.NewDecoder()
	rel := mustDecode(t, d, relationMsg(7, "s", "t", 'f',
		relCol{flags: 1, name: "a", oid: 23, typmod: -1},
		relCol{flags: 1, name: "b", oid: 25, typmod: -1})).(*replication.Relation)
	if rel.ReplicaIdentity != 'f' || !rel.Columns[0].Identity || !rel.Columns[1].Identity {
		t.Errorf("Relation = %+v, want identity 'f' with both columns in the identity", rel)
	}
	c := decodeChange(t, d, updateMsg(7, 'O', tuple(txt("1"), txt("x")), tuple(txt("1"), txt("y"))))
	checkChange(t, "update O", c, replication.OpUpdate, rel, []val{vText("1"), vText("x")}, []val{vText("1"), vText("y")})
	c = decodeChange(t, d, deleteMsg(7, 'O', tuple(txt("1"), txt("y"))))
	checkChange(t, "delete O", c, replication.OpDelete, rel, []val{vText("1"), vText("y")}, nil)
}

func TestDecodeRelationRedefinition(t *testing.T) {
	// A Relation message after a schema change replaces the previous one;
	// later changes are decoded against the new column list.
	d := replication.NewDecoder()
	mustDecode(t, d, eventsRelation())
	rel2 := mustDecode(t, d, relationMsg(eventsRel, "public", "events", 'd',
		relCol{flags: 1, name: "id", oid: oidInt8, typmod: -1},
		relCol{name: "name", oid: oidText, typmod: -1},
		relCol{name: "extra", oid: 1043, typmod: 68})).(*replication.Relation)
	if rel2.Columns[2].TypeMod != 68 {
		t.Errorf("type modifier %d, want 68 (varchar(64))", rel2.Columns[2].TypeMod)
	}
	c := decodeChange(t, d, insertMsg(eventsRel, tuple(txt("1"), txt("n"), txt("e"))))
	checkChange(t, "insert", c, replication.OpInsert, rel2, nil, []val{vText("1"), vText("n"), vText("e")})
	if _, err := d.Decode(insertMsg(eventsRel, tuple(txt("1"), txt("n")))); err == nil {
		t.Errorf("insert with the old column count after redefinition: no error")
	}
}

func TestDecodeTruncate(t *testing.T) {
	d := replication.NewDecoder()
	r1 := mustDecode(t, d, eventsRelation()).(*replication.Relation)
	r2 := mustDecode(t, d, relationMsg(99, "s", "other", 'd', relCol{flags: 1, name: "k", oid: 23, typmod: -1})).(*replication.Relation)
	for _, tc := range []struct {
		name    string
		opts    byte
		ids     []uint32
		want    []*replication.Relation
		cascade bool
	}{
		{"one", 0, []uint32{eventsRel}, []*replication.Relation{r1}, false},
		{"two cascade", 1, []uint32{99, eventsRel}, []*replication.Relation{r2, r1}, true},
		{"restart identity only", 2, []uint32{99}, []*replication.Relation{r2}, false},
		{"cascade and restart identity", 3, []uint32{99}, []*replication.Relation{r2}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustDecode(t, d, truncateMsg(tc.opts, tc.ids...))
			tr, ok := m.(*replication.Truncate)
			if !ok {
				t.Fatalf("decoded as %T", m)
			}
			if tr.Cascade != tc.cascade {
				t.Errorf("Cascade = %v, want %v", tr.Cascade, tc.cascade)
			}
			if len(tr.Relations) != len(tc.want) {
				t.Fatalf("Relations = %d, want %d", len(tr.Relations), len(tc.want))
			}
			for i := range tc.want {
				if tr.Relations[i] != tc.want[i] {
					t.Errorf("Relations[%d] = %s, want %s", i, tr.Relations[i].QualifiedName(), tc.want[i].QualifiedName())
				}
			}
		})
	}
}

func TestDecodeLogicalMessage(t *testing.T) {
	d := replication.NewDecoder()
	for _, tc := range []struct {
		name          string
		flags         byte
		lsn           uint64
		prefix        string
		content       []byte
		transactional bool
	}{
		{"transactional", 1, 0x1234_5678_9ABC, "replicator", []byte("hello\x00world"), true},
		{"non-transactional empty", 0, 1, "", []byte{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustDecode(t, d, logicalMsg(tc.flags, tc.lsn, tc.prefix, tc.content))
			lm, ok := m.(*replication.LogicalMessage)
			if !ok {
				t.Fatalf("decoded as %T", m)
			}
			if lm.Transactional != tc.transactional || lm.LSN != pglogrepl.LSN(tc.lsn) || lm.Prefix != tc.prefix || string(lm.Content) != string(tc.content) {
				t.Errorf("LogicalMessage = %+v, want transactional %v LSN %X prefix %q content %q",
					lm, tc.transactional, tc.lsn, tc.prefix, tc.content)
			}
		})
	}
}

func TestDecodeCommitTime(t *testing.T) {
	d := replication.NewDecoder()
	for _, tc := range []struct {
		micros int64
		want   time.Time
	}{
		{0, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{1, time.Date(2000, 1, 1, 0, 0, 0, 1000, time.UTC)},
		{-946684800 * 1000000, time.Unix(0, 0).UTC()},
		{767873472123456, time.Date(2024, 5, 1, 10, 11, 12, 123456000, time.UTC)},
	} {
		m := mustDecode(t, d, msg('B').u64(1).i64(tc.micros).u32(2).bytes())
		if got := m.(*replication.Begin).CommitTime; !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("Begin commit time %d µs = %v, want %v", tc.micros, got, tc.want)
		}
		m = mustDecode(t, d, msg('C').u8(0).u64(1).u64(2).i64(tc.micros).bytes())
		if got := m.(*replication.Commit).CommitTime; !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("Commit commit time %d µs = %v, want %v", tc.micros, got, tc.want)
		}
	}
}

func TestDecodeIgnoredMessages(t *testing.T) {
	d := replication.NewDecoder()
	for _, data := range [][]byte{
		msg('O').u64(5).cstr("origin").bytes(),
		msg('Y').u32(1234).cstr("public").cstr("mytype").bytes(),
	} {
		m, err := d.Decode(data)
		if m != nil || err != nil {
			t.Errorf("Decode(%q) = %v, %v; want nil, nil", data, m, err)
		}
	}
}

// validMessages are well-formed messages that decode after eventsRelation.
func validMessages() map[string][]byte {
	ct := time.Date(2024, 5, 1, 10, 11, 12, 0, time.UTC)
	return map[string][]byte{
		"begin":      beginMsg(100, ct, 5),
		"commit":     commitMsg(0, 100, 120, ct),
		"relation":   eventsRelation(),
		"insert":     insertMsg(eventsRel, tuple(txt("1"), txt("a"))),
		"insert nul": insertMsg(eventsRel, tuple(txt("1"), null)),
		"update":     updateMsg(eventsRel, 0, nil, tuple(txt("1"), txt("b"))),
		"update K":   updateMsg(eventsRel, 'K', tuple(txt("1"), null), tuple(txt("2"), unchanged)),
		"update O":   updateMsg(eventsRel, 'O', tuple(txt("1"), txt("a")), tuple(txt("1"), txt("b"))),
		"delete K":   deleteMsg(eventsRel, 'K', tuple(txt("2"), null)),
		"delete O":   deleteMsg(eventsRel, 'O', tuple(txt("2"), txt("b"))),
		"truncate":   truncateMsg(1, eventsRel),
		"message":    logicalMsg(1, 100, "p", []byte("xyz")),
	}
}

func checkDecodeError(t *testing.T, m replication.Message, err error, typ byte, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, got message %#v", m)
	}
	var de *replication.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *replication.DecodeError", err, err)
	}
	if de.Type != typ {
		t.Errorf("DecodeError.Type = %q, want %q", de.Type, typ)
	}
	if m != nil {
		t.Errorf("message %#v returned with the error", m)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Errorf("error %q does not contain %q", err, contains)
	}
}

func TestDecodeTruncatedMessages(t *testing.T) {
	for name, full := range validMessages() {
		t.Run(name, func(t *testing.T) {
			d := replication.NewDecoder()
			mustDecode(t, d, eventsRelation())
			for n := 0; n < len(full); n++ {
				m, err := d.Decode(full[:n])
				if err == nil {
					t.Errorf("prefix of %d/%d bytes %q: no error, got %#v", n, len(full), full[:n], m)
					continue
				}
				var de *replication.DecodeError
				if !errors.As(err, &de) {
					t.Errorf("prefix of %d bytes: error %v is %T, want *replication.DecodeError", n, err, err)
				}
				if m != nil {
					t.Errorf("prefix of %d bytes: message %#v returned with error", n, m)
				}
			}
			// The relation survives failed decodes and the full message decodes.
			if _, err := d.Decode(full); err != nil {
				t.Errorf("full message after truncated ones: %v", err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	long := []byte(strings.Repeat("x", 10))
	for _, tc := range []struct {
		name     string
		data     []byte
		typ      byte
		contains string
	}{
		{"empty", nil, '?', "empty message"},
		{"unknown type", []byte{'Z', 0, 0, 0, 1}, 'Z', "unknown message type"},
		{"short stream commit", msg('c').u32(1).u8(0).bytes(), 'c', "message too short"},
		{"insert unknown relation", insertMsg(4242, tuple(txt("1"), txt("a"))), 'I', "unknown relation 4242"},
		{"update unknown relation", updateMsg(4242, 0, nil, tuple(txt("1"), txt("a"))), 'U', "unknown relation 4242"},
		{"delete unknown relation", deleteMsg(4242, 'K', tuple(txt("1"), null)), 'D', "unknown relation 4242"},
		{"truncate unknown relation", truncateMsg(0, eventsRel, 4242), 'T', "unknown relation 4242"},
		{"too few columns", insertMsg(eventsRel, tuple(txt("1"))), 'I', "tuple has 1 columns, relation has 2"},
		{"too many columns", insertMsg(eventsRel, tuple(txt("1"), txt("a"), txt("b"))), 'I', "tuple has 3 columns, relation has 2"},
		{"wrong old column count", updateMsg(eventsRel, 'K', tuple(txt("1")), tuple(txt("1"), txt("a"))), 'U', "tuple has 1 columns"},
		{"binary value", insertMsg(eventsRel, tuple(txt("1"), tv{kind: 'b', data: "\x00\x01"})), 'I', "binary tuple values are not supported"},
		{"binary old value", deleteMsg(eventsRel, 'K', tuple(tv{kind: 'b', data: "\x00\x00\x00\x00\x00\x00\x00\x01"}, null)), 'D', "binary"},
		{"unknown value kind", insertMsg(eventsRel, tuple(txt("1"), tv{kind: 'x'})), 'I', "unknown tuple value kind 'x'"},
		{"value longer than message", msg('I').u32(eventsRel).u8('N').u16(2).u8('t').u32(1).raw([]byte("1")).u8('t').u32(1 << 31).raw(long).bytes(), 'I', "exceeds message"},
		{"insert with old key", msg('I').u32(eventsRel).u8('K').raw(tuple(txt("1"), null)).u8('N').raw(tuple(txt("1"), txt("a"))).bytes(), 'I', "unexpected tuple marker 'K'"},
		{"update with two old tuples", msg('U').u32(eventsRel).u8('K').raw(tuple(txt("1"), null)).u8('O').raw(tuple(txt("1"), txt("a"))).u8('N').raw(tuple(txt("1"), txt("b"))).bytes(), 'U', "unexpected tuple marker 'O'"},
		{"update without new tuple", msg('U').u32(eventsRel).u8('K').raw(tuple(txt("1"), null)).bytes(), 'U', ""},
		{"update with unknown marker", msg('U').u32(eventsRel).u8('X').raw(tuple(txt("1"), txt("a"))).bytes(), 'U', "unexpected tuple marker 'X'"},
		{"delete with new tuple", msg('D').u32(eventsRel).u8('N').raw(tuple(txt("1"), txt("a"))).bytes(), 'D', "delete without old tuple"},
		{"insert trailing bytes", append(insertMsg(eventsRel, tuple(txt("1"), txt("a"))), 0), 'I', "trailing bytes"},
		{"update trailing tuple", append(updateMsg(eventsRel, 0, nil, tuple(txt("1"), txt("a"))), append([]byte{'N'}, tuple(txt("1"), txt("a"))...)...), 'U', "trailing bytes"},
		{"relation column count exceeds message", msg('R').u32(1).cstr("s").cstr("t").u8('d').u16(1000).u8(1).cstr("a").u32(23).i32(-1).bytes(), 'R', "column count exceeds message"},
		{"relation unterminated name", msg('R').u32(1).cstr("s").raw([]byte("t")).bytes(), 'R', "unterminated string"},
		{"truncate count exceeds message", msg('T').u32(1 << 30).u8(0).u32(eventsRel).bytes(), 'T', "relation count exceeds message"},
		{"logical message length exceeds message", msg('M').u8(0).u64(1).cstr("p").u32(0xFFFFFFFF).raw([]byte("abc")).bytes(), 'M', "message too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := replication.NewDecoder()
			mustDecode(t, d, eventsRelation())
			m, err := d.Decode(tc.data)
			checkDecodeError(t, m, err, tc.typ, tc.contains)
		})
	}
}

func TestDecodeFailedRelationIsNotRegistered(t *testing.T) {
	d := replication.NewDecoder()
	bad := msg('R').u32(55).cstr("s").cstr("t").u8('d').u16(2).u8(1).cstr("a").u32(23).i32(-1).bytes()
	if _, err := d.Decode(bad); err == nil {
		t.Fatal("relation with a missing column: no error")
	}
	m, err := d.Decode(insertMsg(55, tuple(txt("1"))))
	checkDecodeError(t, m, err, 'I', "unknown relation 55")
}

func TestDecodeDeleteTrailingBytes(t *testing.T) {
	// Inserts and updates with bytes after their last tuple are rejected as
	// malformed; a delete must be too.
	d := replication.NewDecoder()
	mustDecode(t, d, eventsRelation())
	data := append(deleteMsg(eventsRel, 'K', tuple(txt("2"), null)), 'N', 0, 2, 'n', 'n')
	m, err := d.Decode(data)
	checkDecodeError(t, m, err, 'D', "trailing bytes")
}

func TestDecodeZeroColumnTable(t *testing.T) {
	// A table with no columns (CREATE TABLE t ()) sends empty tuples. Whether
	// they decode must not depend on what the decoder decoded before.
	rel := relationMsg(3, "public", "empty", 'd')
	ins := insertMsg(3, tuple())

	warm := replication.NewDecoder()
	mustDecode(t, warm, eventsRelation())
	mustDecode(t, warm, insertMsg(eventsRel, tuple(txt("1"), txt("a"))))
	mustDecode(t, warm, rel)
	_, warmErr := warm.Decode(ins)

	fresh := replication.NewDecoder()
	mustDecode(t, fresh, rel)
	m, freshErr := fresh.Decode(ins)

	if (warmErr == nil) != (freshErr == nil) {
		t.Fatalf("insert into a zero-column table: after other inserts err = %v, on a fresh decoder err = %v", warmErr, freshErr)
	}
	if freshErr != nil {
		t.Fatalf("insert into a zero-column table: %v", freshErr)
	}
	c := m.(*replication.Change)
	if c.New == nil || len(c.New) != 0 {
		t.Errorf("New = %#v, want an empty non-nil tuple", c.New)
	}

	for _, tc := range []struct {
		name     string
		data     []byte
		old, new bool // whether Old and New are sent (empty, non-nil)
	}{
		{"update", updateMsg(3, 0, nil, tuple()), false, true},
		{"update with old", updateMsg(3, 'O', tuple(), tuple()), true, true},
		{"delete", deleteMsg(3, 'O', tuple()), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := replication.NewDecoder()
			mustDecode(t, d, rel)
			m, err := d.Decode(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			c := m.(*replication.Change)
			if (c.Old != nil) != tc.old || len(c.Old) != 0 || (c.New != nil) != tc.new || len(c.New) != 0 {
				t.Errorf("Old = %#v, New = %#v; want sent old %v, sent new %v, both empty", c.Old, c.New, tc.old, tc.new)
			}
		})
	}
}

package replication

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/mapping"
)

// Message is a decoded pgoutput message: *Begin, *Commit, *Relation,
// *Change, *Truncate, *LogicalMessage, or one of the messages of a streamed
// transaction (protocol version 2): *StreamStart, *StreamStop,
// *StreamCommit, *StreamAbort.
type Message interface{ isMessage() }

// Begin starts a transaction. FinalLSN is the LSN of its commit record,
// known before any of its changes arrive.
type Begin struct {
	FinalLSN   pglogrepl.LSN
	CommitTime time.Time
	Xid        uint32
}

// Commit ends a transaction.
type Commit struct {
	CommitLSN  pglogrepl.LSN
	EndLSN     pglogrepl.LSN
	CommitTime time.Time
}

// Relation describes a table before its first change in a session and after
// every schema change.
type Relation struct {
	ID              uint32
	Namespace       string
	Name            string
	ReplicaIdentity byte
	Columns         []mapping.SourceColumn
}

// QualifiedName returns "namespace.name".
func (r *Relation) QualifiedName() string { return r.Namespace + "." + r.Name }

// Op is the kind of a row change.
type Op byte

// Row change kinds, as pgoutput names them.
const (
	OpInsert Op = 'I'
	OpUpdate Op = 'U'
	OpDelete Op = 'D'
)

// Change is an insert, update or delete of one row. Old is the old key
// ('K') or full old row ('O') of an update or delete, nil when not sent.
// The values point into the decoded buffer and into memory reused by the
// next Decode: they are valid only until then.
type Change struct {
	Op       Op
	Relation *Relation
	Old      []mapping.Value
	New      []mapping.Value
	// OldFull is true when Old is the full old row (REPLICA IDENTITY FULL)
	// rather than the old key.
	OldFull bool
	// LSN is the WAL position of the change, which orders the changes of a
	// transaction; Stream sets it from the message's XLogData header.
	LSN pglogrepl.LSN
}

// Truncate empties one or more tables.
type Truncate struct {
	Relations []*Relation
	Cascade   bool
	// LSN is the WAL position of the truncation; Stream sets it.
	LSN pglogrepl.LSN
}

// LogicalMessage is a message written with pg_logical_emit_message.
type LogicalMessage struct {
	Transactional bool
	LSN           pglogrepl.LSN
	Prefix        string
	Content       []byte
}

// StreamStart opens a block of changes of the in-progress transaction Xid
// (protocol version 2). Until StreamStop, every message belongs to it and
// carries the xid of its (sub)transaction.
type StreamStart struct {
	Xid   uint32
	First bool
}

// StreamStop closes a block of a streamed transaction.
type StreamStop struct{}

// StreamCommit commits the streamed transaction Xid.
type StreamCommit struct {
	Xid        uint32
	CommitLSN  pglogrepl.LSN
	EndLSN     pglogrepl.LSN
	CommitTime time.Time
}

// StreamAbort aborts the streamed transaction Xid (SubXid == Xid) or its
// subtransaction SubXid (ROLLBACK TO SAVEPOINT).
type StreamAbort struct {
	Xid    uint32
	SubXid uint32
}

func (*StreamStart) isMessage()    {}
func (*StreamStop) isMessage()     {}
func (*StreamCommit) isMessage()   {}
func (*StreamAbort) isMessage()    {}
func (*Begin) isMessage()          {}
func (*Commit) isMessage()         {}
func (*Relation) isMessage()       {}
func (*Change) isMessage()         {}
func (*Truncate) isMessage()       {}
func (*LogicalMessage) isMessage() {}

// Decoder decodes pgoutput protocol version 1 and 2 messages. It keeps the
// relations seen so far. It is pure: it performs no I/O.
type Decoder struct {
	relations map[uint32]*Relation
	change    Change
	oldBuf    []mapping.Value
	newBuf    []mapping.Value
}

// NewDecoder returns a decoder with no known relations.
func NewDecoder() *Decoder {
	return &Decoder{relations: make(map[uint32]*Relation)}
}

// DecodeError is a malformed pgoutput message.
type DecodeError struct {
	Type byte
	Msg  string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode pgoutput message %q: %s", e.Type, e.Msg)
}

// Decode decodes one message outside a block of a streamed transaction.
// It returns nil, nil for messages the replicator does not use (Origin,
// Type).
func (d *Decoder) Decode(data []byte) (Message, error) { return d.decode(data, false) }

// DecodeStreamed decodes a message of a streamed transaction's block: a
// Relation, Type, change, Truncate or logical message preceded by the xid
// of its (sub)transaction.
func (d *Decoder) DecodeStreamed(data []byte) (Message, error) { return d.decode(data, true) }

// StreamedXid returns the (sub)transaction xid of a message of a streamed
// transaction's block.
func StreamedXid(data []byte) (uint32, error) {
	if len(data) < 5 {
		return 0, &DecodeError{Type: '?', Msg: "streamed message too short"}
	}
	switch data[0] {
	case 'R', 'Y', 'I', 'U', 'D', 'T', 'M':
		return binary.BigEndian.Uint32(data[1:5]), nil
	}
	return 0, &DecodeError{Type: data[0], Msg: "unexpected message inside a streamed transaction's block"}
}

func (d *Decoder) decode(data []byte, streamed bool) (Message, error) {
	if len(data) == 0 {
		return nil, &DecodeError{Type: '?', Msg: "empty message"}
	}
	r := reader{typ: data[0], buf: data[1:]}
	if streamed {
		if _, err := StreamedXid(data); err != nil {
			return nil, err
		}
		r.u32()
	}
	var m Message
	switch data[0] {
	case 'S':
		m = &StreamStart{Xid: r.u32(), First: r.u8() == 1}
	case 'E':
		m = &StreamStop{}
	case 'c':
		x := r.u32()
		r.u8()
		m = &StreamCommit{Xid: x, CommitLSN: pglogrepl.LSN(r.u64()), EndLSN: pglogrepl.LSN(r.u64()), CommitTime: pgTime(int64(r.u64()))}
	case 'A':
		m = &StreamAbort{Xid: r.u32(), SubXid: r.u32()}
	case 'B':
		m = &Begin{FinalLSN: pglogrepl.LSN(r.u64()), CommitTime: pgTime(int64(r.u64())), Xid: r.u32()}
	case 'C':
		r.u8()
		m = &Commit{CommitLSN: pglogrepl.LSN(r.u64()), EndLSN: pglogrepl.LSN(r.u64()), CommitTime: pgTime(int64(r.u64()))}
	case 'R':
		rel := &Relation{ID: r.u32(), Namespace: r.str(), Name: r.str(), ReplicaIdentity: r.u8()}
		n := int(r.u16())
		if n > len(r.buf) {
			r.fail("column count exceeds message")
		}
		for i := 0; i < n && r.err == ""; i++ {
			flags := r.u8()
			name := r.str()
			oid := r.u32()
			mod := int32(r.u32())
			rel.Columns = append(rel.Columns, mapping.SourceColumn{Name: name, TypeOID: oid, TypeMod: mod, Identity: flags&1 != 0})
		}
		if r.err == "" {
			d.relations[rel.ID] = rel
		}
		m = rel
	case 'I', 'U', 'D':
		m = d.decodeChange(&r)
	case 'T':
		n := int(r.u32())
		opts := r.u8()
		if n > len(r.buf)/4 {
			r.fail("relation count exceeds message")
		}
		t := &Truncate{Cascade: opts&1 != 0}
		for i := 0; i < n && r.err == ""; i++ {
			id := r.u32()
			rel, ok := d.relations[id]
			if !ok {
				r.fail(fmt.Sprintf("truncate of unknown relation %d", id))
				break
			}
			t.Relations = append(t.Relations, rel)
		}
		m = t
	case 'M':
		flags := r.u8()
		lsn := pglogrepl.LSN(r.u64())
		prefix := r.str()
		n := int(r.u32())
		m = &LogicalMessage{Transactional: flags&1 != 0, LSN: lsn, Prefix: prefix, Content: r.bytes(n)}
	case 'O', 'Y':
		return nil, nil
	default:
		return nil, &DecodeError{Type: data[0], Msg: "unknown message type"}
	}
	if r.err != "" {
		return nil, &DecodeError{Type: data[0], Msg: r.err}
	}
	return m, nil
}

func (d *Decoder) decodeChange(r *reader) Message {
	c := &d.change
	*c = Change{Op: Op(r.typ)}
	id := r.u32()
	rel, ok := d.relations[id]
	if !ok {
		r.fail(fmt.Sprintf("change of unknown relation %d (no Relation message before it)", id))
		return nil
	}
	c.Relation = rel
	var hasOld, hasNew bool
	for r.err == "" && len(r.buf) > 0 && !hasNew {
		kind := r.u8()
		switch {
		case kind == 'N':
			d.newBuf = r.tuple(d.newBuf[:0], len(rel.Columns))
			c.New, hasNew = d.newBuf, true
		case (kind == 'K' || kind == 'O') && c.Op != OpInsert && !hasOld:
			d.oldBuf = r.tuple(d.oldBuf[:0], len(rel.Columns))
			c.Old, c.OldFull, hasOld = d.oldBuf, kind == 'O', true
			if c.Op == OpDelete {
				hasNew = true // a delete ends with its old tuple
			}
		default:
			r.fail(fmt.Sprintf("unexpected tuple marker %q", kind))
		}
	}
	switch {
	case r.err != "":
	case c.Op == OpDelete && !hasOld:
		r.fail("delete without old tuple")
	case c.Op != OpDelete && !hasNew:
		r.fail("change without new tuple")
	case len(r.buf) != 0:
		r.fail("trailing bytes")
	}
	if c.Op == OpDelete {
		c.New = nil
	}
	return c
}

// reader reads big-endian fields and records the first error.
type reader struct {
	typ byte
	buf []byte
	err string
}

func (r *reader) fail(msg string) {
	if r.err == "" {
		r.err = msg
	}
	r.buf = nil
}

func (r *reader) need(n int) bool {
	if r.err != "" {
		return false
	}
	if len(r.buf) < n {
		r.fail("message too short")
		return false
	}
	return true
}

func (r *reader) u8() byte {
	if !r.need(1) {
		return 0
	}
	v := r.buf[0]
	r.buf = r.buf[1:]
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.buf)
	r.buf = r.buf[2:]
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.buf)
	r.buf = r.buf[4:]
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.buf)
	r.buf = r.buf[8:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || !r.need(n) {
		r.fail("message too short")
		return nil
	}
	v := r.buf[:n:n]
	r.buf = r.buf[n:]
	return v
}

func (r *reader) str() string {
	for i, b := range r.buf {
		if b == 0 {
			s := string(r.buf[:i])
			r.buf = r.buf[i+1:]
			return s
		}
	}
	r.fail("unterminated string")
	return ""
}

// tuple reads a TupleData into dst; want is the relation's column count.
func (r *reader) tuple(dst []mapping.Value, want int) []mapping.Value {
	if dst == nil {
		dst = make([]mapping.Value, 0, want) // non-nil even for zero columns
	}
	n := int(r.u16())
	if r.err != "" {
		return dst
	}
	if n != want {
		r.fail(fmt.Sprintf("tuple has %d columns, relation has %d", n, want))
		return dst
	}
	for i := 0; i < n; i++ {
		kind := r.u8()
		switch kind {
		case 'n':
			dst = append(dst, mapping.Value{Kind: mapping.ValueNull})
		case 'u':
			dst = append(dst, mapping.Value{Kind: mapping.ValueUnchanged})
		case 't':
			l := r.u32()
			if uint64(l) > uint64(len(r.buf)) {
				r.fail("column value exceeds message")
				return dst
			}
			dst = append(dst, mapping.Value{Kind: mapping.ValueText, Data: r.bytes(int(l))})
		case 'b':
			r.fail("binary tuple values are not supported")
			return dst
		default:
			if r.err == "" {
				r.fail(fmt.Sprintf("unknown tuple value kind %q", kind))
			}
			return dst
		}
	}
	return dst
}

// pgEpoch is the Postgres epoch, 2000-01-01 UTC, in Unix microseconds.
const pgEpoch = 946684800 * 1000000

func pgTime(micros int64) time.Time {
	return time.UnixMicro(micros + pgEpoch).UTC()
}

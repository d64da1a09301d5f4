package replication_test

import (
	"errors"
	"testing"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

// FuzzDecode decodes arbitrary bytes after a valid Relation message: the
// decoder must never panic, every error must be a *DecodeError with no
// message, and decoded changes must be consistent with their relation.
func FuzzDecode(f *testing.F) {
	for _, m := range validMessages() {
		f.Add(m)
	}
	f.Add([]byte{})
	f.Add([]byte{'I'})
	f.Add(relationMsg(eventsRel, "public", "events", 'd'))
	f.Add(insertMsg(eventsRel, tuple(txt("1"), tv{kind: 'b', data: "x"})))
	f.Add(truncateMsg(0))
	f.Add([]byte("O\x00\x00\x00\x00\x00\x00\x00\x01x\x00"))

	f.Fuzz(func(t *testing.T, data []byte) {
		d := replication.NewDecoder()
		if _, err := d.Decode(eventsRelation()); err != nil {
			t.Fatal(err)
		}
		checkFuzzDecode(t, d, data)
		// The decoder stays usable after any message.
		checkFuzzDecode(t, d, data)
		checkFuzzDecode(t, d, insertMsg(eventsRel, tuple(txt("1"), txt("a"))))
	})
}

func checkFuzzDecode(t *testing.T, d *replication.Decoder, data []byte) {
	m, err := d.Decode(data)
	if err != nil {
		var de *replication.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("Decode(%q): error %v is %T, want *replication.DecodeError", data, err, err)
		}
		if m != nil {
			t.Fatalf("Decode(%q): message %#v returned with error %v", data, m, err)
		}
		return
	}
	if len(data) == 0 {
		t.Fatalf("Decode of empty input succeeded")
	}
	switch m := m.(type) {
	case nil:
		if data[0] != 'O' && data[0] != 'Y' {
			t.Fatalf("Decode(%q) = nil, nil for message type %q", data, data[0])
		}
	case *replication.Change:
		if byte(m.Op) != data[0] {
			t.Fatalf("Op %q from message type %q", m.Op, data[0])
		}
		if m.Relation == nil {
			t.Fatalf("change without relation")
		}
		n := len(m.Relation.Columns)
		switch m.Op {
		case replication.OpInsert:
			if m.Old != nil || m.New == nil {
				t.Fatalf("insert with Old %v New %v", m.Old, m.New)
			}
		case replication.OpUpdate:
			if m.New == nil {
				t.Fatalf("update without New")
			}
		case replication.OpDelete:
			if m.Old == nil || m.New != nil {
				t.Fatalf("delete with Old %v New %v", m.Old, m.New)
			}
		default:
			t.Fatalf("unknown Op %q", m.Op)
		}
		for _, tup := range [][]mapping.Value{m.Old, m.New} {
			if tup == nil {
				continue
			}
			if len(tup) != n {
				t.Fatalf("tuple of %d values for a relation of %d columns", len(tup), n)
			}
			for _, v := range tup {
				switch v.Kind {
				case mapping.ValueNull, mapping.ValueUnchanged:
					if v.Data != nil {
						t.Fatalf("value of kind %q with data %q", v.Kind, v.Data)
					}
				case mapping.ValueText:
					if len(v.Data) > len(data) {
						t.Fatalf("value of %d bytes from a message of %d", len(v.Data), len(data))
					}
				default:
					t.Fatalf("value kind %q", v.Kind)
				}
			}
		}
	case *replication.Relation:
		if data[0] != 'R' {
			t.Fatalf("Relation from message type %q", data[0])
		}
	case *replication.Truncate:
		if data[0] != 'T' {
			t.Fatalf("Truncate from message type %q", data[0])
		}
		for _, r := range m.Relations {
			if r == nil {
				t.Fatalf("truncate of a nil relation")
			}
		}
	case *replication.LogicalMessage:
		if data[0] != 'M' || len(m.Content) > len(data) {
			t.Fatalf("LogicalMessage %+v from %q", m, data)
		}
	case *replication.Begin:
		if data[0] != 'B' {
			t.Fatalf("Begin from message type %q", data[0])
		}
	case *replication.Commit:
		if data[0] != 'C' {
			t.Fatalf("Commit from message type %q", data[0])
		}
	default:
		t.Fatalf("unexpected message type %T", m)
	}
}

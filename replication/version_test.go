package replication_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
)

func TestPluginArgs(t *testing.T) {
	for _, tc := range []struct {
		major     int
		streaming bool
		want      []string
	}{
		// 13: no `messages` option (pgoutput rejects it), protocol 1.
		{13, false, []string{"proto_version '1'", "publication_names 'pub'"}},
		{14, false, []string{"proto_version '1'", "publication_names 'pub'", "messages 'true'"}},
		{14, true, []string{"proto_version '2'", "streaming 'on'", "publication_names 'pub'", "messages 'true'"}},
		{15, true, []string{"proto_version '2'", "streaming 'on'", "publication_names 'pub'", "messages 'true'"}},
		{18, false, []string{"proto_version '1'", "publication_names 'pub'", "messages 'true'"}},
	} {
		t.Run(fmt.Sprintf("%d/%v", tc.major, tc.streaming), func(t *testing.T) {
			if got := replication.PluginArgs(tc.major, "pub", tc.streaming); !slices.Equal(got, tc.want) {
				t.Errorf("PluginArgs = %q, want %q", got, tc.want)
			}
		})
	}
	if got := replication.PluginArgs(15, "o'pub", false); !slices.Contains(got, "publication_names 'o''pub'") {
		t.Errorf("PluginArgs does not quote the publication: %q", got)
	}
}

func TestProtocolOfVersion(t *testing.T) {
	for _, tc := range []struct {
		major     int
		streaming bool
		want      string
	}{
		{13, true, "1 (PostgreSQL 13 sends a transaction after its commit; streaming needs 14 or later)"},
		{14, true, "2 (in-progress transactions streamed)"},
		{18, true, "2 (in-progress transactions streamed)"},
		{13, false, "1 (streaming turned off by stream.enabled)"},
	} {
		if got := replication.Protocol(tc.major, tc.streaming); got != tc.want {
			t.Errorf("Protocol(%d, %v) = %q, want %q", tc.major, tc.streaming, got, tc.want)
		}
	}
}

func TestParseMark(t *testing.T) {
	marks := &replication.Relation{ID: 9, Namespace: "public", Name: "replicator_marks", Columns: []mapping.SourceColumn{
		{Name: "slot", TypeOID: 25}, {Name: "source", TypeOID: 25}, {Name: "marked_at", TypeOID: 1184}}}
	other := &replication.Relation{ID: 10, Namespace: "app", Name: "replicator_marks", Columns: marks.Columns}
	text := func(s string) mapping.Value { return mapping.Value{Kind: mapping.ValueText, Data: []byte(s)} }
	row := []mapping.Value{text("slot_a"), text("public.events"), text("2026-01-01 00:00:00+00")}
	for _, tc := range []struct {
		name string
		c    replication.Change
		want replication.ResyncMessage
		ok   bool
	}{
		{"insert", replication.Change{Op: replication.OpInsert, Relation: marks, New: row},
			replication.ResyncMessage{Slot: "slot_a", Table: "public.events"}, true},
		{"update (a resync run again)", replication.Change{Op: replication.OpUpdate, Relation: marks, New: row},
			replication.ResyncMessage{Slot: "slot_a", Table: "public.events"}, true},
		{"delete", replication.Change{Op: replication.OpDelete, Relation: marks, Old: row}, replication.ResyncMessage{}, false},
		{"same name in another schema", replication.Change{Op: replication.OpInsert, Relation: other, New: row}, replication.ResyncMessage{}, false},
		{"no table", replication.Change{Op: replication.OpInsert, Relation: marks,
			New: []mapping.Value{text("slot_a"), {Kind: mapping.ValueNull}, text("x")}}, replication.ResyncMessage{}, false},
		{"short tuple", replication.Change{Op: replication.OpInsert, Relation: marks, New: row[:1]}, replication.ResyncMessage{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := replication.ParseMark(&tc.c)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParseMark = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// The mark reads as the message a newer server sends, at the commit.
	m := replication.MarkMessage(replication.ResyncMessage{Slot: "slot_a", Table: "public.events"}, pglogrepl.LSN(0x1000))
	got, ok := replication.ParseResync(m)
	if !ok || got.Table != "public.events" || got.Slot != "slot_a" || m.LSN != 0x1000 || !strings.HasPrefix(m.Prefix, "replicator") {
		t.Errorf("MarkMessage = %+v; ParseResync = %+v, %v", m, got, ok)
	}
}

func TestCreateSlotCommand(t *testing.T) {
	for _, tc := range []struct {
		major     int
		temporary bool
		want      string
	}{
		{13, false, "CREATE_REPLICATION_SLOT s LOGICAL pgoutput EXPORT_SNAPSHOT"},
		{16, false, "CREATE_REPLICATION_SLOT s LOGICAL pgoutput EXPORT_SNAPSHOT"},
		{16, true, "CREATE_REPLICATION_SLOT s TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"},
		// From 17 on the permanent slot fails over; a temporary one cannot.
		{17, false, "CREATE_REPLICATION_SLOT s LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)"},
		{18, false, "CREATE_REPLICATION_SLOT s LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)"},
		{17, true, "CREATE_REPLICATION_SLOT s TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"},
	} {
		t.Run(fmt.Sprintf("%d/%v", tc.major, tc.temporary), func(t *testing.T) {
			if got := replication.CreateSlotCommand(tc.major, "s", tc.temporary); got != tc.want {
				t.Errorf("createSlotCommand = %q, want %q", got, tc.want)
			}
		})
	}
}

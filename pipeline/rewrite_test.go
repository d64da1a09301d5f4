package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
)

func TestRewriteAction(t *testing.T) {
	tests := []struct {
		name   string
		diff   postgres.StorageDiff
		action int
		reason []string
	}{
		{name: "unchanged", action: rewriteNone},
		{name: "columns added or dropped", diff: postgres.StorageDiff{Other: true}, action: rewriteRecord},
		{name: "dropped and added again", diff: postgres.StorageDiff{Moved: []string{"note"}, Other: true},
			action: rewriteRecopy, reason: []string{"columns note were dropped and added again"}},
		{name: "may carry a dropped column's values", diff: postgres.StorageDiff{Reused: []string{"c"}, Other: true},
			action: rewriteRecopy, reason: []string{"columns c were added after a column"}},
		// smallint to integer USING v * 10, timestamp to timestamptz
		// under Europe/Berlin, char(n) to text.
		{name: "retyped with a rewrite", diff: postgres.StorageDiff{Retyped: []string{"v"}, Rewritten: []uint32{7}, Other: true},
			action: rewriteRecopy, reason: []string{"columns v changed type and the table was rewritten"}},
		// varchar(n) to text, timestamp to timestamptz under UTC.
		{name: "retyped without a rewrite", diff: postgres.StorageDiff{Retyped: []string{"note"}},
			action: rewriteRecord, reason: []string{"columns note changed type without a rewrite"}},
		// ALTER COLUMN g DROP EXPRESSION: a stream without generated
		// columns sends g from now on, and ClickHouse lacks its values.
		{name: "generated column made plain", diff: postgres.StorageDiff{Stored: []string{"g"}},
			action: rewriteRecopy, reason: []string{"generated columns g now store their values"}},
		// ALTER TYPE mood RENAME VALUE 'ok' TO 'fine': every row of 'ok'
		// reads 'fine' in Postgres, and the stream says nothing.
		{name: "enum label renamed", diff: postgres.StorageDiff{Relabeled: []string{"m"}},
			action: rewriteRecopy, reason: []string{"labels of the enums of columns m were renamed"}},
		// VACUUM FULL, CLUSTER, TRUNCATE, TYPE to the same type USING.
		{name: "files changed alone", diff: postgres.StorageDiff{Rewritten: []uint32{7, 8}, Other: true},
			action: rewriteVerify, reason: []string{"the files of relations 7, 8 changed"}},
		// ATTACH PARTITION brings rows, DETACH or DROP takes them away,
		// and the stream shows neither.
		{name: "partitions attached and detached", diff: postgres.StorageDiff{Joined: []uint32{9}, Left: []uint32{8}, Other: true},
			action: rewriteVerify, reason: []string{"partitions 9 were attached", "partitions 8 were detached"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			action, reason := rewriteAction(tc.diff)
			if action != tc.action {
				t.Errorf("action = %d, want %d (%s)", action, tc.action, reason)
			}
			for _, want := range tc.reason {
				if !strings.Contains(reason, want) {
					t.Errorf("reason %q lacks %q", reason, want)
				}
			}
		})
	}
}

// TestBindAsksForACheck: every Relation message of a configured table,
// the same one again too, asks for a check of the tables' storage; one of
// another table does not.
func TestBindAsksForACheck(t *testing.T) {
	reg := newRegistry(nil, nil, mapping.Caps{})
	reg.index["public.events"] = 0
	reg.specs = append(reg.specs, mapping.TableSpec{Source: "public.events"})
	pokes := 0
	reg.poke = func() { pokes++ }
	for _, rel := range []*replication.Relation{
		{ID: 7, Namespace: "public", Name: "events", Columns: eventsRel.Columns},
		{ID: 7, Namespace: "public", Name: "events", Columns: eventsRel.Columns},
		{ID: 8, Namespace: "public", Name: "other"},
	} {
		if err := reg.bind(context.Background(), rel); err != nil {
			t.Fatal(err)
		}
	}
	if pokes != 2 {
		t.Errorf("checks asked for = %d, want 2", pokes)
	}
}

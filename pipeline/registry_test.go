package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
)

// partitions is a catalog in which relation 70 is a partition of 7 and
// relation 71 a partition of 70.
type partitions map[uint32]uint32

func (p partitions) DescribeTypes(context.Context, []mapping.SourceColumn) error { return nil }

func (p partitions) AddedDefault(context.Context, uint32, string) (postgres.AddedDefault, error) {
	return postgres.AddedDefault{}, nil
}

func (p partitions) Storage(context.Context, string) (postgres.Storage, error) {
	return postgres.Storage{}, nil
}

func (p partitions) Ancestor(_ context.Context, relid uint32, of []uint32) (uint32, bool, error) {
	for parent, ok := p[relid]; ok; parent, ok = p[parent] {
		for _, o := range of {
			if o == parent {
				return parent, true, nil
			}
		}
	}
	return 0, false, nil
}

func TestBindMatchesRelationsByOID(t *testing.T) {
	rel := func(id uint32, name string) *replication.Relation {
		return &replication.Relation{ID: id, Namespace: "public", Name: name, Columns: eventsRel.Columns}
	}
	tests := []struct {
		name    string
		rel     *replication.Relation
		idx     int
		wantErr []string
	}{
		{"configured", rel(7, "events"), 0, nil},
		{"renamed", rel(7, "events_old"), 0, []string{"table public.events (relation 7) is now named public.events_old", `table "public.events_old"`}},
		{"created again", rel(8, "events"), 0, []string{"public.events arrived as relation 8", "was relation 7", "replicator setup"}},
		{"partition", rel(70, "events_2026"), 0, []string{"public.events_2026, a partition of table public.events", "publish_via_partition_root = true"}},
		{"sub-partition", rel(71, "events_2026_11"), 0, []string{"public.events_2026_11, a partition of table public.events"}},
		{"other table", rel(9, "users"), -1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, reg := eventsRegistry(10)
			reg.setOIDs(map[string]uint32{"public.events": 7}, partitions{70: 7, 71: 70})
			err := reg.bind(context.Background(), tc.rel)
			if err == nil {
				// A partition's Relation message is fine (Postgres sends it
				// beside its root's); a change under it is not.
				_, err = reg.lookup(tc.rel.ID)
			}
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("bind(%s) = nil, want an error", tc.rel.QualifiedName())
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if idx, err := reg.lookup(tc.rel.ID); err != nil || idx != tc.idx {
				t.Errorf("lookup = %d, %v; want %d", idx, err, tc.idx)
			}
		})
	}
}

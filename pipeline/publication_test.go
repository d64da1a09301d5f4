package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/postgres"
)

// fakePublication is a publication as Postgres reports it.
type fakePublication struct{ p postgres.Publication }

func (f *fakePublication) Publication(context.Context, string, []string) (postgres.Publication, error) {
	return f.p, nil
}

// TestCheckPublication: a configured table the publication stopped
// sending, or sends filtered, stops the daemon at the next check, unless a
// setup removed it or is adding it (no copy state while others have).
// Checks come every publicationCheck.
func TestCheckPublication(t *testing.T) {
	ctx := context.Background()
	done := []checkpoint.Chunk{{Source: "public.events", Relation: "public.events", LSN: 100}}
	for _, tc := range []struct {
		name   string
		pub    postgres.Publication
		chunks chunkState
		err    string
	}{
		{name: "published", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{"public.events": true}},
			chunks: chunkState{"public.events": done}},
		{name: "gone", pub: postgres.Publication{}, err: "publication pub does not exist"},
		{name: "dropped from it", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{"public.other": true}},
			chunks: chunkState{"public.events": done}, err: "no longer publishes table public.events"},
		{name: "dropped, legacy copy state", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{}},
			chunks: chunkState{}, err: "no longer publishes table public.events"},
		{name: "removed by setup", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{}},
			chunks: chunkState{"public.other": done}},
		{name: "being added", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{}},
			chunks: chunkState{"public.other": done, "public.events": {{Source: "public.events"}}}},
		{name: "deletes not published", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Truncate: true,
			Tables: map[string]bool{"public.events": true}}, chunks: chunkState{"public.events": done},
			err: "does not publish every insert, update, delete and truncate"},
		{name: "filtered", pub: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{"public.events": true},
			Filtered: map[string]string{"public.events": "rows WHERE (id > 1)"}},
			chunks: chunkState{"public.events": done}, err: "with a filter (rows WHERE (id > 1))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, reg := eventsRegistry(10)
			reg.chunks = tc.chunks
			fake := &fakePublication{p: postgres.Publication{Exists: true, Insert: true, Update: true, Delete: true, Truncate: true, Tables: map[string]bool{"public.events": true}}}
			reg.publication = &publicationWatch{pg: fake, name: "pub"}
			now := time.Now()
			if err := reg.checkPublication(ctx, now); err != nil {
				t.Fatalf("first check: %v", err)
			}
			fake.p = tc.pub
			if err := reg.checkPublication(ctx, now.Add(publicationCheck/2)); err != nil {
				t.Fatalf("a check before publicationCheck passed: %v", err)
			}
			err := reg.checkPublication(ctx, now.Add(publicationCheck))
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("check = %v, want nil", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("check = %v, want %q", err, tc.err)
			}
		})
	}
}

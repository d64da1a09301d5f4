package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
)

// publicationCheck is how often the daemon reads what its publication
// sends.
const publicationCheck = time.Minute

// publisher reads a publication (*postgres.Conn).
type publisher interface {
	Publication(ctx context.Context, pub string, tables []string) (postgres.Publication, error)
}

// publicationWatch tells the daemon when its publication stops sending a
// configured table whole. The stream shows neither: a table dropped from
// the publication (ALTER PUBLICATION ... DROP TABLE) sends nothing more,
// and a row filter or column list added later sends less, while the
// checkpoint would move on past changes never received.
type publicationWatch struct {
	pg   publisher
	name string
	// slot names the slot, for the command that starts over.
	slot string
	next time.Time
	// warned holds the tables whose absence was logged.
	warned map[string]bool
}

// checkPublication reads the publication at the session's start and every
// publicationCheck after. A configured table that it does not send is an
// error that names the command that fixes it, unless the table has no
// copy state while others do: a setup removed it from the replication (and
// this daemon runs on an older configuration) or is adding it (its mark
// in the stream holds the checkpoint, see applier.mark), which is logged.
func (r *registry) checkPublication(ctx context.Context, now time.Time) error {
	w := r.publication
	if w == nil || w.pg == nil || now.Before(w.next) {
		return nil
	}
	w.next = now.Add(publicationCheck)
	sources := make([]string, len(r.specs))
	truncates := false
	for i, s := range r.specs {
		sources[i] = s.Source
		truncates = truncates || !slices.Contains(s.Ignore, mapping.IgnoreTruncate)
	}
	p, err := w.pg.Publication(ctx, w.name, sources)
	if err != nil {
		return err
	}
	if !p.Exists {
		return fmt.Errorf("publication %s does not exist: Postgres decodes the slot's changes with the publication of their "+
			"time, so the stream cannot go on past its drop; drop the slot (SELECT pg_drop_replication_slot('%s')) and run "+
			"`replicator setup`, which creates both and copies every table again", w.name, w.slot)
	}
	if err := p.CheckActions(w.name, truncates); err != nil {
		return err
	}
	if err := p.CheckFilters(w.name, sources); err != nil {
		return err
	}
	for _, source := range sources {
		if p.Tables[source] {
			delete(w.warned, source)
			continue
		}
		being, err := r.beingAdded(ctx, source)
		if err != nil {
			return err
		}
		if !being {
			return fmt.Errorf("publication %s no longer publishes table %s (ALTER PUBLICATION ... DROP TABLE, or "+
				"publish_via_partition_root turned off for a partitioned table?): its "+
				"changes since are not in the stream and ClickHouse misses them; run `replicator setup`, which publishes "+
				"it again and copies it again", w.name, source)
		}
		if !w.warned[source] {
			if w.warned == nil {
				w.warned = map[string]bool{}
			}
			w.warned[source] = true
			r.log.Warn("a configured table is not in the publication and has no copy state: `replicator setup` removed "+
				"it from the replication, or has yet to add it; run setup with this configuration to replicate it",
				"table", source, "publication", w.name)
		}
	}
	return nil
}

// beingAdded reports whether a configured table has no copy state (or only
// the mark of a copy not begun) while other tables have.
func (r *registry) beingAdded(ctx context.Context, source string) (bool, error) {
	if r.chunks == nil {
		return false, nil
	}
	chunks, err := r.chunks.LoadChunks(ctx)
	if err != nil {
		return false, err
	}
	if cs := chunks[source]; len(cs) > 1 || len(cs) == 1 && cs[0].Relation != "" {
		return false, nil
	}
	for other, cs := range chunks {
		if other != source && len(cs) > 0 {
			return true, nil
		}
	}
	return false, nil
}

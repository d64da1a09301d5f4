package pipeline

import (
	"context"
	"errors"
	"fmt"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// registry knows the configured tables: it binds each Relation message of
// the stream to its table by relation id, resolves the mapping from the
// columns the message carries, checks it against the ClickHouse target,
// and keeps each table's newest truncation.
type registry struct {
	caps    mapping.Caps
	index   map[string]int // source name -> table index
	specs   []mapping.TableSpec
	tables  []*mapping.Table
	targets []sink.Schema
	rels    map[uint32]int                // relation id -> table index, -1 for unconfigured
	pending map[int]*replication.Relation // table index -> Relation not yet resolved
	cuts    map[int]checkpoint.Truncation // table index -> newest truncation
	// horizons holds, per table index, the position below which changes
	// write only their tombstones (see checkpoint.Horizon).
	horizons map[int]pglogrepl.LSN
	// oids maps the OID of each configured table, read when the daemon
	// starts, to its index, and oidOf the other way; empty when unknown.
	oids  map[uint32]int
	oidOf []uint32
	// catalog tells partitions of configured tables from other relations;
	// partitionOf holds those seen, by relation id.
	catalog     catalog
	partitionOf map[uint32]partition
}

// partition is a partition of a configured table.
type partition struct {
	name   string
	parent int // table index
}

// catalog answers what a Relation message alone cannot.
type catalog interface {
	// Ancestor returns the table among of (OIDs) that relation relid is a
	// partition of, at any depth.
	Ancestor(ctx context.Context, relid uint32, of []uint32) (ancestor uint32, found bool, err error)
}

// setOIDs records the OID of each configured table by name.
func (r *registry) setOIDs(oids map[string]uint32, cat catalog) {
	r.oids = make(map[uint32]int, len(oids))
	r.oidOf = make([]uint32, len(r.specs))
	for name, oid := range oids {
		if idx, ok := r.index[name]; ok {
			r.oids[oid] = idx
			r.oidOf[idx] = oid
		}
	}
	r.catalog = cat
	r.partitionOf = make(map[uint32]partition)
}

// loadRegistry reads the ClickHouse target of every configured table and
// the truncations that a replay must respect.
func loadRegistry(ctx context.Context, tables []config.Table, client *sink.Client, store *checkpoint.Store) (*registry, error) {
	targets := make([]sink.Schema, len(tables))
	for i, tc := range tables {
		schema, err := client.Schema(ctx, tc.Target)
		if err != nil {
			return nil, fmt.Errorf("read ClickHouse table %s: %w", tc.Target, err)
		}
		if !schema.Exists() {
			return nil, fmt.Errorf("ClickHouse table %s.%s does not exist: run `replicator setup`", client.DB().Name, tc.Target)
		}
		targets[i] = schema
	}
	r := newRegistry(tables, targets, client.Caps())
	cuts, err := store.LoadTruncations(ctx)
	if err != nil {
		return nil, err
	}
	for source, tr := range cuts {
		if idx, ok := r.index[source]; ok {
			r.cuts[idx] = tr
		}
	}
	chunks, err := store.LoadChunks(ctx)
	if err != nil {
		return nil, err
	}
	for source, cs := range chunks {
		if idx, ok := r.index[source]; ok {
			r.horizons[idx] = checkpoint.Horizon(cs)
		}
	}
	return r, nil
}

func newRegistry(tables []config.Table, targets []sink.Schema, caps mapping.Caps) *registry {
	r := &registry{caps: caps, index: map[string]int{}, targets: targets, rels: map[uint32]int{},
		pending: map[int]*replication.Relation{}, cuts: map[int]checkpoint.Truncation{},
		horizons: map[int]pglogrepl.LSN{}}
	for i, tc := range tables {
		r.index[tc.Name] = i
		r.specs = append(r.specs, tc.Spec())
		// Until the Relation message arrives, the table is known by its spec only.
		r.tables = append(r.tables, &mapping.Table{Source: tc.Name, Target: tc.Target, OrderBy: tc.OrderBy, PartitionBy: tc.PartitionBy})
	}
	return r
}

// bind records a Relation message. Its mapping is resolved and checked
// only when a change that is written needs it (table): a Relation sent in
// a transaction the checkpoint covers may describe a schema the target no
// longer has.
//
// Relations are matched by OID as well as by name: a configured table
// under another name (renamed), a table of a configured name with another
// OID (dropped and created again) and a partition of a configured table
// (a publication that does not publish via the root; an error at its
// first change) are errors that name the table, since their changes would
// otherwise be dropped or misplaced.
func (r *registry) bind(ctx context.Context, rel *replication.Relation) error {
	name := rel.QualifiedName()
	idx, byOID := r.oids[rel.ID]
	switch named, byName := r.index[name]; {
	case byOID && name != r.specs[idx].Source:
		return fmt.Errorf("table %s (relation %d) is now named %s: its changes cannot be placed under the configured name; "+
			"rename it back, or change `table %q` to `table %q` in the configuration (keep its target) and restart",
			r.specs[idx].Source, rel.ID, name, r.specs[idx].Source, name)
	case byOID:
	case byName && len(r.oidOf) > 0 && r.oidOf[named] != 0:
		return fmt.Errorf("table %s arrived as relation %d, but it was relation %d when the daemon started: it was dropped "+
			"and created again, and ClickHouse would keep the rows of the old table; drop the slot "+
			"(SELECT pg_drop_replication_slot(...)) and run `replicator setup` to copy it again", name, rel.ID, r.oidOf[named])
	case byName:
		idx = named
	default:
		if r.catalog != nil && len(r.oidOf) > 0 {
			anc, found, err := r.catalog.Ancestor(ctx, rel.ID, r.oidOf)
			if err != nil {
				return err
			}
			if found {
				// Postgres also announces the partition of a change it
				// publishes as the root: only a change under this
				// relation is an error (lookup).
				r.partitionOf[rel.ID] = partition{name: name, parent: r.oids[anc]}
			}
		}
		r.rels[rel.ID] = -1
		return nil
	}
	r.rels[rel.ID] = idx
	r.pending[idx] = rel
	return nil
}

// lookup returns the table index of a relation (-1: not configured); an
// error when no Relation message announced it.
func (r *registry) lookup(relID uint32) (int, error) {
	idx, ok := r.rels[relID]
	if !ok {
		return 0, fmt.Errorf("change of relation %d before its Relation message", relID)
	}
	if p, ok := r.partitionOf[relID]; ok {
		return 0, fmt.Errorf("changes of %s, a partition of table %s, arrive under the partition's name: the publication "+
			"does not publish via the partition root; run ALTER PUBLICATION ... SET (publish_via_partition_root = true), "+
			"then, since the slot holds changes it cannot place, drop the slot and run `replicator setup` again",
			p.name, r.specs[p.parent].Source)
	}
	return idx, nil
}

// table returns the index and mapping of the relation of a change that is
// written (-1: not configured), first resolving and checking a Relation
// message received since the last call; fresh reports that it did.
func (r *registry) table(relID uint32) (idx int, t *mapping.Table, fresh bool, err error) {
	idx, err = r.lookup(relID)
	if err != nil || idx < 0 {
		return idx, nil, false, err
	}
	rel, ok := r.pending[idx]
	if !ok {
		return idx, r.tables[idx], false, nil
	}
	t, err = mapping.Resolve(r.specs[idx], rel.Columns, r.caps)
	if err != nil {
		return 0, nil, false, fmt.Errorf("schema of %s changed: %w", rel.QualifiedName(), err)
	}
	if err := r.targets[idx].Check(t); errors.Is(err, sink.ErrNoSeq) {
		return 0, nil, false, err
	} else if err != nil {
		return 0, nil, false, fmt.Errorf("schema of %s changed: %w; alter the ClickHouse table to match, then restart", rel.QualifiedName(), err)
	}
	if err := t.CheckIdentity(); err != nil {
		return 0, nil, false, err
	}
	r.tables[idx] = t
	delete(r.pending, idx)
	return idx, t, true, nil
}

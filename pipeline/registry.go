package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/checkpoint"
	"github.com/replicator/replicator/config"
	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
	"github.com/replicator/replicator/replication"
	"github.com/replicator/replicator/sink"
)

// registry knows the configured tables: it binds each Relation message of
// the stream to its table by relation id, resolves the mapping from the
// columns the message carries, checks it against the ClickHouse target,
// and keeps each table's newest truncation.
type registry struct {
	caps mapping.Caps
	// slot is the slot whose checkpoints the committed views show.
	slot    string
	index   map[string]int // source name -> table index
	specs   []mapping.TableSpec
	tables  []*mapping.Table
	targets []sink.Schema
	rels    map[uint32]int                // relation id -> table index, -1 for unconfigured
	pending map[int]*replication.Relation // table index -> Relation not yet resolved
	// resolved holds the Relation each table's current mapping was
	// resolved from: the same Relation again (Postgres sends one in every
	// streamed transaction) changes nothing and flushes nothing.
	resolved map[int]*replication.Relation
	cuts     map[int]checkpoint.Truncation // table index -> newest truncation
	// horizons holds, per table index, the position below which changes
	// write only their tombstones (see checkpoint.Horizon).
	horizons map[int]pglogrepl.LSN
	// exact holds the tables whose copy was read whole in the snapshot
	// of their horizon: below it, a change writes nothing at all.
	exact map[int]bool
	// oids maps the OID of each configured table, read when the daemon
	// starts, to its index, and oidOf the other way; empty when unknown.
	oids  map[uint32]int
	oidOf []uint32
	// catalog tells partitions of configured tables from other relations;
	// partitionOf holds those seen, by relation id.
	catalog     catalog
	partitionOf map[uint32]partition
	// ch applies schema changes (nil: none are applied); policies holds
	// each table's schema_changes.
	ch       targets
	policies []string
	log      hclog.Logger
	// columns holds, per table index, the columns of the newest Relation
	// message rows were written with (nil: unknown), kept in ClickHouse by
	// saveColumns so that a rename is told from a drop after a restart.
	columns     [][]string
	saveColumns func(ctx context.Context, source string, columns []string) error
	// waiting holds the configured tables whose copy was not complete when
	// the daemon started (an added table, a resync): their changes wait
	// for it (see hold).
	waiting map[int]bool
	// chunks reads the copy state (nil: none is read).
	chunks chunkLoader
	// publication checks what the publication sends (nil: nothing is
	// checked).
	publication *publicationWatch
	// records reads the storage records (nil: none is read, as if no
	// table was rewritten since its record).
	records storageLoader
	// recopy asks for a table to be copied again online (see rewrites)
	// because the catalog cannot tell what its older rows read; nil: the
	// daemon stops with the command instead. poke asks for a check of
	// the tables' storage, at each Relation message of a configured
	// table (nil: none).
	recopy func(source, reason string)
	poke   func()
}

// storageLoader reads the storage records (*checkpoint.Store).
type storageLoader interface {
	LoadStorage(ctx context.Context) (map[string]postgres.Storage, error)
}

// chunkLoader reads the copy state (*checkpoint.Store).
type chunkLoader interface {
	LoadChunks(ctx context.Context) (map[string][]checkpoint.Chunk, error)
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
	// AddedDefault returns what the catalog says now about the rows older
	// than a column.
	AddedDefault(ctx context.Context, relid uint32, column string) (postgres.AddedDefault, error)
	// Storage returns the storage of a table now (see postgres.Storage).
	Storage(ctx context.Context, table string) (postgres.Storage, error)
	// DescribeTypes completes columns of types a user created (domains,
	// enums, arrays of them) from the catalog.
	DescribeTypes(ctx context.Context, cols []mapping.SourceColumn) error
}

// targets alters and describes the ClickHouse targets.
type targets interface {
	Exec(ctx context.Context, sql string, args ...any) error
	Schema(ctx context.Context, table string) (sink.Schema, error)
	DB() ddl.Database
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
func loadRegistry(ctx context.Context, tables []config.Table, client *sink.Client, store *checkpoint.Store, log hclog.Logger) (*registry, error) {
	chunks, err := store.LoadChunks(ctx)
	if err != nil {
		return nil, err
	}
	for _, tc := range tables {
		complete := func(ctx context.Context) (bool, error) {
			chunks, err := store.LoadChunks(ctx)
			return checkpoint.CopiedInto(chunks[tc.Name], ddl.ShadowName(tc.Target)), err
		}
		kept, why, err := swapIn(ctx, client, &mapping.Table{Target: tc.Target, OrderBy: tc.OrderBy}, complete)
		if err != nil {
			return nil, fmt.Errorf("swap in the new copy of %s: %w", tc.Name, err)
		}
		if kept != "" {
			// The new copy is in place: the previous one costs disk, not
			// exactness.
			log.Warn("the previous copy of the table could not be dropped: it is kept under a name of its own; drop it by hand "+
				"(the error names the server setting)", "table", tc.Name, "copy", client.DB().Table(kept), "error", why)
		}
	}
	targets := make([]sink.Schema, len(tables))
	for i, tc := range tables {
		schema, err := client.Schema(ctx, tc.Target)
		if err != nil {
			return nil, fmt.Errorf("read ClickHouse table %s: %w", tc.Target, err)
		}
		if !schema.Exists() {
			return nil, fmt.Errorf("ClickHouse table %s.%s does not exist: run `replicator setup`", client.DB().Name, tc.Target)
		}
		shadow := ddl.ShadowName(tc.Target)
		exists, err := client.Existing(ctx, shadow)
		if err != nil {
			return nil, err
		}
		if !checkpoint.Into(chunks[tc.Name], shadow) || !exists[shadow] {
			// (A new copy not yet in place has the configured keys.)
			if err := schema.CheckKeys(tc.Spec()); err != nil {
				return nil, err
			}
		}
		targets[i] = schema
	}
	r := newRegistry(tables, targets, client.Caps())
	r.ch, r.slot = client, store.Slot()
	for i, tc := range tables {
		// A daemon stopped between dropping a view and creating it again
		// (after adding a column) left none; a daemon of an earlier
		// version made no committed view. (The views of a history table
		// group by the replica identity, which its first Relation
		// message tells: see table.)
		if tc.Mode == mapping.ModeHistory {
			continue
		}
		if err := client.DropOutdatedView(ctx, ddl.CommittedOf(tc.Target), ddl.ChunkTable); err != nil {
			return nil, fmt.Errorf("make the committed view of %s again: %w", tc.Target, err)
		}
		if ddl.GroupsByPartition(tc.PartitionBy, tc.OrderBy, mappedNames(targets[i])) {
			// Views of an earlier version grouped a partitioned table by
			// its sorting key alone.
			for _, view := range []string{ddl.ViewOf(tc.Target), ddl.CommittedOf(tc.Target)} {
				if err := client.DropOutdatedView(ctx, view, ddl.PartitionColumn); err != nil {
					return nil, fmt.Errorf("make the view %s again: %w", view, err)
				}
			}
		}
		for _, stmt := range client.DB().CreateViewsOf(tc.Target, tc.PartitionBy, r.slot, tc.OrderBy, mappedNames(targets[i])) {
			if err := client.Exec(ctx, stmt); err != nil {
				return nil, fmt.Errorf("create the views of %s: %w", tc.Target, err)
			}
		}
	}
	cuts, err := store.LoadTruncations(ctx)
	if err != nil {
		return nil, err
	}
	for source, tr := range cuts {
		if idx, ok := r.index[source]; ok {
			r.cuts[idx] = tr
		}
	}
	columns, err := store.LoadColumns(ctx)
	if err != nil {
		return nil, err
	}
	for i := range r.columns {
		// A replication set up before the columns were kept stopped on any
		// column difference, so its target has the last Relation's columns.
		r.columns[i] = mappedNames(targets[i])
	}
	for source, cols := range columns {
		if idx, ok := r.index[source]; ok {
			r.columns[idx] = cols
		}
	}
	r.saveColumns = store.SaveColumns
	r.chunks = store
	r.records = store
	for source, cs := range chunks {
		idx, ok := r.index[source]
		if !ok {
			continue
		}
		r.exact[idx] = checkpoint.Exact(cs)
		if r.horizons[idx] = checkpoint.Horizon(cs); r.horizons[idx] == 0 {
			// Its copy runs, or stopped: changes wait for it.
			r.waiting[idx] = true
		}
	}
	return r, nil
}

func newRegistry(tables []config.Table, targets []sink.Schema, caps mapping.Caps) *registry {
	r := &registry{caps: caps, index: map[string]int{}, targets: targets, rels: map[uint32]int{},
		pending: map[int]*replication.Relation{}, resolved: map[int]*replication.Relation{}, cuts: map[int]checkpoint.Truncation{},
		horizons: map[int]pglogrepl.LSN{}, exact: map[int]bool{}, waiting: map[int]bool{}}
	r.log = hclog.NewNullLogger()
	for i, tc := range tables {
		r.index[tc.Name] = i
		r.specs = append(r.specs, tc.Spec())
		r.policies = append(r.policies, tc.SchemaChanges)
		r.columns = append(r.columns, nil)
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
		// (A table a setup adds holds the checkpoint at its mark in the
		// stream: see applier.mark.)
		r.rels[rel.ID] = -1
		return nil
	}
	r.rels[rel.ID] = idx
	if r.poke != nil {
		// Postgres sends a Relation message again after the relation
		// changed in its catalog, a rewrite too, which the message may
		// not show (invariant 11): the tables' storage is checked.
		r.poke()
	}
	if prev := r.resolved[idx]; prev != nil && sameRelation(prev, rel) {
		delete(r.pending, idx)
		return nil
	}
	r.pending[idx] = rel
	return nil
}

// refresh has the mapping of relation relID resolved again from its
// current Relation message and the catalog (an enum's labels, which change
// without a Relation message); false when nothing is to be read again.
func (r *registry) refresh(relID uint32) bool {
	idx, ok := r.rels[relID]
	if !ok || idx < 0 || r.catalog == nil {
		return false
	}
	rel, ok := r.resolved[idx]
	if !ok {
		return false
	}
	r.pending[idx] = rel
	return true
}

// quoted quotes each of labels.
func quoted(labels []string) []string {
	out := make([]string, len(labels))
	for i, l := range labels {
		out[i] = strconv.Quote(l)
	}
	return out
}

// current returns the mapping the table of relation relID writes now
// (nil: none).
func (r *registry) current(relID uint32) *mapping.Table {
	if idx, ok := r.rels[relID]; ok && idx >= 0 && idx < len(r.tables) {
		return r.tables[idx]
	}
	return nil
}

// source names the table of relation relID.
func (r *registry) source(relID uint32) string {
	if idx, ok := r.rels[relID]; ok && idx >= 0 && idx < len(r.specs) {
		return r.specs[idx].Source
	}
	return "?"
}

// sameRelation reports whether two Relation messages describe the same
// relation with the same columns.
func sameRelation(a, b *replication.Relation) bool {
	if a.ID != b.ID || a.Namespace != b.Namespace || a.Name != b.Name || a.ReplicaIdentity != b.ReplicaIdentity ||
		len(a.Columns) != len(b.Columns) {
		return false
	}
	for i, c := range a.Columns {
		d := b.Columns[i]
		if c.Name != d.Name || c.TypeOID != d.TypeOID || c.TypeMod != d.TypeMod || c.Identity != d.Identity {
			return false
		}
	}
	return true
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
// message received since the last call, and reconciling the ClickHouse
// target with it (see reconcile); fresh reports that it did.
func (r *registry) table(ctx context.Context, relID uint32) (idx int, t *mapping.Table, fresh bool, err error) {
	idx, err = r.lookup(relID)
	if err != nil || idx < 0 {
		return idx, nil, false, err
	}
	rel, ok := r.pending[idx]
	if !ok {
		return idx, r.tables[idx], false, nil
	}
	if r.catalog != nil {
		if err := r.catalog.DescribeTypes(ctx, rel.Columns); err != nil {
			return 0, nil, false, fmt.Errorf("table %s: %w", rel.QualifiedName(), err)
		}
	}
	t, err = mapping.Resolve(r.specs[idx], rel.Columns, r.caps)
	if err != nil {
		return 0, nil, false, fmt.Errorf("schema of %s changed: %w", rel.QualifiedName(), err)
	}
	if err := r.reconcile(ctx, idx, rel.ID, t); err != nil {
		return 0, nil, false, err
	}
	if err := t.CheckIdentity(); err != nil {
		return 0, nil, false, err
	}
	if t.History && r.ch != nil {
		for _, stmt := range r.ch.DB().CreateViews(t, r.slot) {
			if err := r.ch.Exec(ctx, stmt); err != nil {
				return 0, nil, false, fmt.Errorf("create the views of %s: %w", t.Target, err)
			}
		}
	}
	if names := t.MappedNames(); !slices.Equal(names, r.columns[idx]) {
		if r.saveColumns != nil {
			if err := r.saveColumns(ctx, r.specs[idx].Source, names); err != nil {
				return 0, nil, false, err
			}
		}
		r.columns[idx] = names
	}
	r.tables[idx] = t
	r.resolved[idx] = rel
	delete(r.pending, idx)
	return idx, t, true, nil
}

// goneSince returns the columns of prev (the previous Relation message's)
// that t lacks.
func goneSince(prev []string, t *mapping.Table) []string {
	var gone []string
	for _, name := range prev {
		if t.ColumnIndex(name) < 0 {
			gone = append(gone, name)
		}
	}
	return gone
}

// pendingFor reports whether a change of relation relID will switch its
// table to a new mapping.
func (r *registry) pendingFor(relID uint32) bool {
	idx, ok := r.rels[relID]
	if !ok || idx < 0 {
		return false
	}
	_, ok = r.pending[idx]
	return ok
}

// reconcile brings the ClickHouse target of table idx in line with the
// mapping t of its newest Relation message, before the first row that needs
// it is written. Columns the target has and t lacks (dropped in Postgres,
// or added after a transaction being replayed) are left to their
// ClickHouse defaults. A column added in Postgres is added, with the value
// the older rows read in Postgres as its default; a widened type is
// widened. Anything else, or any change under schema_changes = "stop",
// stops the daemon with the statements that fix it.
func (r *registry) reconcile(ctx context.Context, idx int, relID uint32, t *mapping.Table) error {
	r.targets[idx].Adopt(t, r.caps)
	d := r.targets[idx].Diff(t)
	source := r.specs[idx].Source
	// A transaction older than a widening (replayed after a restart)
	// writes its values in the wider type.
	retyped := d.Retyped[:0]
	for _, rt := range d.Retyped {
		have, err := mapping.ParseType(rt.Have)
		if i := t.ColumnIndex(rt.Column.Name); err == nil && i >= 0 && have != rt.Column.Type && have.Widens(rt.Column.Type) {
			if err := t.Retype(i, have); err != nil {
				return err
			}
			continue
		}
		retyped = append(retyped, rt)
	}
	d.Retyped = retyped
	switch {
	case d.NoSeq:
		return fmt.Errorf("ClickHouse table %s: %w; run `replicator setup`, which adds it", t.Target, sink.ErrNoSeq)
	}
	if err := r.unpublished(ctx, idx, relID, t); err != nil {
		return err
	}
	if len(d.Added) == 0 && len(d.Retyped) == 0 {
		return nil
	}
	if gone := goneSince(r.columns[idx], t); len(d.Added) > 0 && len(gone) > 0 {
		return fmt.Errorf("table %s: columns %s are gone and %s appeared in one change (a rename?): ClickHouse would keep "+
			"the old values apart from the new column; copy the table again with `replicator resync --config FILE --table %s`",
			source, strings.Join(gone, ", "), columnNames(d.Added), source)
	}
	if r.ch == nil {
		return fmt.Errorf("table %s changed in Postgres: columns %s added, %d retyped", source, columnNames(d.Added), len(d.Retyped))
	}
	db := r.ch.DB()
	var stmts, keysWidened, renames []string
	for _, rt := range d.Retyped {
		have, err := mapping.ParseType(rt.Have)
		i := t.ColumnIndex(rt.Column.Name)
		if err == nil && i >= 0 {
			if renamed := t.EnumRenamed(i, have); len(renamed) > 0 {
				// The new names are added to the Enum below; the rows
				// that carry the old ones are copied again.
				renames = append(renames, fmt.Sprintf("the labels %s of the enum of column %s were renamed (ALTER TYPE ... "+
					"RENAME VALUE), and the rows ClickHouse holds with them read differently in Postgres",
					strings.Join(quoted(renamed), ", "), rt.Column.Name))
			}
		}
		// Labels added to an Enum change only its metadata, which
		// ClickHouse allows on sorting key columns (a partition key
		// column's ALTER is refused by 18.16 and is copied again).
		grows := err == nil && rt.Column.Type.AddsLabels(have) &&
			!ddl.Mentions(r.targets[idx].PartitionKey, rt.Column.Name)
		if err == nil && i >= 0 && rt.Column.Type.Widens(have) && !grows &&
			r.targets[idx].KeyColumn(rt.Column.Name) && r.recopy != nil && r.policies[idx] != "stop" {
			// ClickHouse refuses an ALTER of a sorting or partition key
			// column: the table is copied again online in the wider type
			// (the stream holds its checkpoint for the copy and writes the
			// table again from there), and until then the stream writes
			// the old type, as a value too wide for it stops the daemon
			// with the row named.
			if err := t.Narrow(i, have); err != nil {
				return err
			}
			keysWidened = append(keysWidened, fmt.Sprintf("key column %s widened from %s to %s, which ClickHouse cannot ALTER",
				rt.Column.Name, rt.Have, rt.Column.Type))
			continue
		}
		if err == nil && rt.Column.Type.Widens(have) && !grows && r.targets[idx].KeyColumn(rt.Column.Name) {
			return fmt.Errorf("table %s column %s: a sorting or partition key column widened from %s to %s, which ClickHouse "+
				"cannot ALTER: copy the table again with `replicator resync --config FILE --table %s`",
				source, rt.Column.Name, rt.Have, rt.Column.Type, source)
		}
		if rt.Column.Type.Kind == mapping.KindInvalid || err != nil || !rt.Column.Type.Widens(have) {
			return fmt.Errorf("table %s column %s: ClickHouse has %s, the changed Postgres column maps to %s, which is not "+
				"a widening; if every value fits, run %s and restart, else copy the table again with "+
				"`replicator resync --config FILE --table %s`",
				source, rt.Column.Name, rt.Have, rt.Column.Type, strings.Join(db.ModifyColumn(t.Target, rt.Column), "; "), source)
		}
		stmts = append(stmts, db.ModifyColumn(t.Target, rt.Column)...)
	}
	after := lastMapped(r.targets[idx])
	view := mappedNames(r.targets[idx])
	var doubts []string // why the older rows' values of added columns are unknown
	for _, c := range d.Added {
		def, doubt, err := r.addedDefault(ctx, relID, source, c)
		if err != nil {
			return err
		}
		if doubt != "" {
			doubts = append(doubts, doubt)
		}
		stmts = append(stmts, db.AddColumn(t.Target, c, def, after)...)
		after = c.Name
		view = append(view, c.Name)
	}
	stmts = append(stmts, db.RecreateDistributed(t.Target, t.OrderBy)...)
	if len(d.Added) > 0 {
		stmts = append(stmts, db.ReplaceView(t, view, r.slot)...)
	}
	if r.policies[idx] == "stop" {
		return fmt.Errorf("table %s changed in Postgres and schema_changes is \"stop\": run %s in ClickHouse, then restart",
			source, strings.Join(stmts, "; "))
	}
	if len(renames) > 0 && (r.recopy == nil || r.policies[idx] == "stop") {
		return fmt.Errorf("table %s: %s: copy the table again with `replicator resync --config FILE --table %s`",
			source, strings.Join(renames, "; "), source)
	}
	if len(doubts) > 0 && r.recopy == nil {
		return fmt.Errorf("table %s: %s: copy the table again with `replicator resync --config FILE --table %s`",
			source, strings.Join(doubts, "; "), source)
	}
	for _, stmt := range stmts {
		if err := r.ch.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("apply the schema change of %s: %s: %w", source, stmt, err)
		}
		r.log.Info("applied schema change", "table", source, "statement", stmt)
	}
	schema, err := r.ch.Schema(ctx, t.Target)
	if err != nil {
		return fmt.Errorf("read ClickHouse table %s: %w", t.Target, err)
	}
	r.targets[idx] = schema
	for _, doubt := range doubts {
		r.log.Warn("the older rows' value of an added column is unknown: the table is copied again", "table", source, "reason", doubt)
		r.recopy(source, doubt)
	}
	for _, why := range renames {
		r.log.Warn("an enum label was renamed: the table is copied again online", "table", source, "reason", why)
		r.recopy(source, why)
	}
	for _, why := range keysWidened {
		r.log.Warn("a key column was widened: the table is copied again online in the new type", "table", source, "reason", why)
		r.recopy(source, why)
	}
	return nil
}

// unpublished has table idx copied again when a column of its previous
// mapping is missing from t though Postgres still has it as a generated
// column: the publication stopped sending it (publish_generated_columns
// set to none), and ClickHouse would keep the old rows' values in it
// beside the defaults of the new ones. The copy makes a target without
// it. Without a way to copy, the daemon stops with the command.
func (r *registry) unpublished(ctx context.Context, idx int, relID uint32, t *mapping.Table) error {
	if r.catalog == nil {
		return nil
	}
	source := r.specs[idx].Source
	// The Postgres names of the gone columns: from the previous mapping
	// (a configured name may differ), else the recorded names.
	var gone, pgNames []string
	if prev := r.tables[idx]; prev != nil {
		for _, c := range prev.Columns {
			if t.ColumnIndex(c.Name) < 0 {
				gone, pgNames = append(gone, c.Name), append(pgNames, c.Source)
			}
		}
	} else {
		gone = goneSince(r.columns[idx], t)
		pgNames = gone
	}
	for i, name := range gone {
		d, err := r.catalog.AddedDefault(ctx, relID, pgNames[i])
		if err != nil {
			return err
		}
		if d.Gone || !d.Generated {
			continue
		}
		why := fmt.Sprintf("generated column %s is no longer sent by the stream (publish_generated_columns is no longer stored), "+
			"so ClickHouse would hold Postgres' values in old rows and defaults in new ones", name)
		if r.recopy == nil {
			return fmt.Errorf("table %s: %s: copy the table again with `replicator resync --config FILE --table %s`, "+
				"which leaves the column out, or publish it again", source, why, source)
		}
		r.log.Warn("a generated column is no longer published: the table is copied again without it", "table", source, "column", name)
		r.recopy(source, why)
	}
	return nil
}

// addedDefault returns the ClickHouse default of a column added to source:
// the value that the rows older than the column read in Postgres, as a
// literal, or "" when they read NULL (the type's default under the
// mapping). The catalog is read now, after the Relation message: when it
// cannot tell that value (the table was rewritten since its storage
// record, which stores each row's value and clears the one Postgres kept
// for all), doubt says so, and the table is copied again instead of
// guessed (a later SET DEFAULT makes the current default a wrong guess).
func (r *registry) addedDefault(ctx context.Context, relID uint32, source string, c mapping.Column) (def, doubt string, err error) {
	if r.catalog == nil {
		return "", "", nil
	}
	d, err := r.catalog.AddedDefault(ctx, relID, c.Source)
	if err != nil {
		return "", "", err
	}
	switch {
	case !d.Gone && d.Generated:
		// Postgres computed the older rows' values: only a copy has them.
		return "", fmt.Sprintf("column %s is a stored generated column that the stream sends from now on "+
			"(publish_generated_columns = stored was set, or the column was added), and only Postgres has its older rows' values",
			c.Name), nil
	case d.Gone:
		// Dropped (or renamed) since: no later Relation message carries
		// it, so the rows that carry it carry its values, and no reader
		// compares the older rows' (a rename stops at the next Relation
		// message without it, see reconcile).
		r.log.Info("an added column is gone from the catalog (dropped or renamed since): its older rows read the type's default",
			"table", source, "column", c.Name)
		return "", "", nil
	case d.Missing && d.Value == nil:
		return "", "", nil
	case d.Missing:
		v, err := c.DefaultOf([]byte(*d.Value))
		if err != nil {
			return "", "", fmt.Errorf("table %s column %s: default %q: %w", source, c.Name, *d.Value, err)
		}
		return ddl.Literal(v, c.Type), "", nil
	}
	if was, err := r.generatedInRecord(ctx, source, c.Source); err != nil || was {
		return "", fmt.Sprintf("column %s was a generated column that the stream did not send, and holds its values as any "+
			"column now (ALTER COLUMN ... DROP EXPRESSION): only Postgres has its older rows' values", c.Name), err
	}
	rewritten, err := r.rewrittenSinceRecord(ctx, source)
	if err != nil || !rewritten {
		// Not rewritten since the column was added (after the record,
		// as ClickHouse lacks it): Postgres kept no value for the older
		// rows, so they read NULL.
		return "", "", err
	}
	return "", fmt.Sprintf("column %s was added before a rewrite of the table (or with a volatile default), so the catalog "+
		"no longer says what the older rows read in it", c.Name), nil
}

// generatedInRecord reports whether the storage record of source has
// column as a stored generated column; false without a record.
func (r *registry) generatedInRecord(ctx context.Context, source, column string) (bool, error) {
	if r.records == nil {
		return false, nil
	}
	records, err := r.records.LoadStorage(ctx)
	if err != nil {
		return false, err
	}
	col, ok := records[source].Column(column)
	return ok && col.Generated, nil
}

// rewrittenSinceRecord reports whether a relation of source has another
// file now than in its storage record; false without a record.
func (r *registry) rewrittenSinceRecord(ctx context.Context, source string) (bool, error) {
	if r.records == nil {
		return false, nil
	}
	records, err := r.records.LoadStorage(ctx)
	if err != nil {
		return false, err
	}
	rec, ok := records[source]
	if !ok {
		return false, nil
	}
	now, err := r.catalog.Storage(ctx, source)
	if err != nil {
		return false, err
	}
	return !now.SameFiles(rec), nil
}

// lastMapped returns the last column of a target before the meta columns.
func lastMapped(s sink.Schema) string {
	names := mappedNames(s)
	if len(names) == 0 {
		return ""
	}
	return names[len(names)-1]
}

// mappedNames returns the columns of a target other than the meta columns.
func mappedNames(s sink.Schema) []string {
	var names []string
	for _, n := range s.Names {
		if !slices.Contains(mapping.MetaColumns, n) && n != mapping.OpColumn {
			names = append(names, n)
		}
	}
	return names
}

func columnNames(cols []mapping.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

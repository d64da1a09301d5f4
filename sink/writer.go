package sink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/ddl"
	"github.com/replicator/replicator/mapping"
)

// Writer buffers mapped rows per target table and writes them with one
// INSERT per table per flush (Take), sent in blocks of at most 4 MiB. It
// keeps only the latest row per buffer key:
// a later Put of the same key replaces the earlier row. A row may wait for
// values from an earlier image of its key (unchanged TOAST values): a flush
// looks those images up in ClickHouse in bulk before it writes. Writer never
// writes checkpoints; the caller writes one after a flush returns.
type Writer struct {
	client  *Client
	tables  []*tableBuffer
	rows    int
	bytes   int
	waiting int // rows whose fill is pending
	imaging int // of which take values from an image (not Place tombstones)
	// imageBytes estimates the size of an image a fill reads, from the
	// last lookup (a cautious guess before the first one). A write under
	// way sets it while rows are Put.
	imageBytes atomic.Int64
	// spare holds the emptied buffers of the last finished write (see
	// spareBuffers); mu guards it and windows.
	mu    sync.Mutex
	spare []*tableBuffer
	// windows holds per table the replay window that its first write
	// read (see supersede).
	windows []window
	// serverFillOff is set once ClickHouse refused a fill on the server
	// (see fillOnServer), and OnServerFillOff, when set, is told why.
	serverFillOff   atomic.Bool
	OnServerFillOff func(error)
	// serverRowBytes estimates the size of a stored row a fill on the
	// server reads, from its last read.
	serverRowBytes atomic.Int64
}

// window is the replay window of a table: the highest _version stored in
// its target before the writer first wrote to it. Rows at or below it may
// be a replay's, whose first attempt may have stored rows of the same
// transactions already.
type window struct {
	read bool
	upTo uint64
}

type tableBuffer struct {
	table  *mapping.Table
	insert string
	rows   [][]any
	fills  []*Fill // per row: values still to look up, or nil
	index  map[string]int
	// latest maps the identity (mapping.Table.IdentString) of a Placed
	// table's row to its newest buffered image.
	latest map[string]int
}

// Fill names the columns of a buffered row whose values come from the
// newest stored image of a key strictly older than a change: the image a
// replay of later changes wrote never qualifies.
type Fill struct {
	// Cols are the indexes of the columns to fill.
	Cols []int
	// Key identifies the image's row (mapping.Table.IdentString; the old
	// key for a key move) and KeyRow is a row that holds its values at the
	// table's identifying indexes (mapping.Table.Ident).
	Key    string
	KeyRow []any
	// Version and Seq identify the change (its tombstone's seq): the image
	// is the newest row with (_version, _seq) below them. A buffered row
	// that takes the columns from the buffered row of an earlier change,
	// itself waiting for them, waits for that change's image.
	Version, Seq uint64
	// Own lists where the rows of the change that looked the image up, and
	// of each later change whose buffered row took the values from it, are
	// stored, oldest first: a span per identity the row held (more than one
	// when a change moved it to another key). A replay finds the values in
	// the rows its first attempt stored there, which a merge may have kept
	// instead of the image (see valuesFor). Empty for a Place tombstone.
	Own []Span
	// Place marks the tombstone of a change of a Placed table whose old
	// place (its sorting and partition key values outside the replica
	// identity) comes from the image: Cols are those columns. It is
	// dropped when the image is at Moved (the place of the update's new
	// row; "" for a delete), when a buffered row of a later change is at
	// that place, when this is a replay (only rows at or after the change
	// are stored: its first attempt wrote the tombstone) and, when
	// Lenient (a change below the table's copy horizon, whose copy holds
	// the row's later state or none), when there is no image.
	Place   bool
	Moved   string
	Lenient bool
	// onServer marks a fill that ClickHouse will do (see fillOnServer),
	// decided when the row is buffered: its image never reaches the
	// daemon's memory.
	onServer bool
}

// Span is where a row was stored while it held one identity: the rows of
// Key with (_version, _seq) from From on, below To when the row then moved
// to another identity (To is the tombstone of that change; zero: the row
// is still there). Every row of Key in [From, To) is a row of the same
// changes of the same source row.
type Span struct {
	// Key is the identity (mapping.Table.IdentString) and KeyRow a row
	// that holds its values at the table's identifying indexes.
	Key    string
	KeyRow []any
	// From is the (_version, _seq) of the row the change that put the row
	// at Key wrote there.
	FromVersion, FromSeq uint64
	// To is the (_version, _seq) of the tombstone the change that moved
	// the row away wrote at Key; zero while the row is at Key.
	ToVersion, ToSeq uint64
}

// Closed reports whether the row moved away from the span's identity.
func (s Span) Closed() bool { return s.ToVersion != 0 || s.ToSeq != 0 }

// PendingKey is the buffer key of a Place tombstone, whose place is not
// known before the flush: one per change (seq), so it never replaces a row.
func PendingKey(ident string, seq uint64) string {
	return "\x00" + strconv.FormatUint(seq, 10) + "\x00" + ident
}

// NewWriter returns a writer for the given tables; Put addresses them by
// their index in tables.
func NewWriter(client *Client, tables []*mapping.Table) *Writer {
	w := &Writer{client: client}
	w.imageBytes.Store(64 << 10)
	w.serverRowBytes.Store(64 << 10)
	for i, t := range tables {
		w.tables = append(w.tables, &tableBuffer{index: make(map[string]int)})
		w.SetTable(i, t)
	}
	w.windows = make([]window, len(tables))
	return w
}

// SetTable replaces the mapping of a table, e.g. after a Relation message.
// The new mapping must write the same columns as the rows already buffered.
func (w *Writer) SetTable(i int, t *mapping.Table) {
	b := w.tables[i]
	b.table = t
	b.insert = w.client.DB().Insert(t.Target, t.WriteNames())
	if !t.Placed() && !t.History {
		b.latest = nil
	} else if b.latest == nil {
		b.latest = make(map[string]int)
	}
}

// Put buffers row (the mapped columns followed by the meta columns) under
// key, its place (mapping.Table.Placement), replacing any buffered row with
// the same key. fill, when not nil, names the columns the flush must fill from
// an earlier image. The writer keeps row and fill; the caller must not
// reuse them. For a Placed table the row becomes the latest image of its
// identity, unless it is a Lenient Place tombstone; so does a history
// table's.
func (w *Writer) Put(table int, key string, row []any, fill *Fill) {
	b := w.tables[table]
	w.bytes += rowBytes(row)
	if fill != nil {
		fill.onServer = w.onServer(table, fill)
	}
	w.count(fill, 1)
	i, ok := b.index[key]
	if ok {
		w.bytes -= rowBytes(b.rows[i])
		w.count(b.fills[i], -1)
		b.rows[i], b.fills[i] = row, fill
	} else {
		i = len(b.rows)
		b.index[key] = i
		b.rows = append(b.rows, row)
		b.fills = append(b.fills, fill)
		w.rows++
	}
	if b.latest != nil && (fill == nil || !fill.Lenient) {
		b.latest[b.table.IdentString(row)] = i
	}
}

// Latest returns the buffered row for key, if any, with the columns it
// still waits for (nil: none). For a Placed or history table, key is the
// row's identity (mapping.Table.IdentString) and the row its latest image.
func (w *Writer) Latest(table int, key string) (row []any, fill *Fill, ok bool) {
	b := w.tables[table]
	index := b.index
	if b.latest != nil {
		index = b.latest
	}
	i, ok := index[key]
	if !ok {
		return nil, nil, false
	}
	return b.rows[i], b.fills[i], true
}

// Size returns the number of buffered rows, an estimate of the memory they
// hold once the flush has read the images they wait for, and how many of them
// wait: flush when FillBatch rows wait, so that one lookup reads each
// ClickHouse granule once.
func (w *Writer) Size() (rows, bytes, waiting int) {
	return w.rows, w.bytes + w.imaging*int(w.imageBytes.Load()), w.waiting
}

// count adds n to the counts of rows that wait for a fill.
func (w *Writer) count(f *Fill, n int) {
	if f == nil {
		return
	}
	w.waiting += n
	if !f.Place && !f.onServer {
		w.imaging += n
	}
}

// rowBytes estimates the memory of a row: its values and their headers.
func rowBytes(row []any) int {
	n := 24 + 16*len(row)
	for _, v := range row {
		switch v := v.(type) {
		case string:
			n += 16 + len(v)
		case []byte:
			n += 24 + len(v)
		case time.Time:
			n += 24
		case map[string]string: // Map: an hstore's pairs
			n += 48
			for k, e := range v {
				n += 32 + len(k) + len(e)
			}
		case map[string]*string:
			n += 48
			for k, e := range v {
				n += 40 + len(k)
				if e != nil {
					n += len(*e)
				}
			}
		case nil:
		default:
			n += 8
		}
	}
	return n
}

// Take detaches the buffered rows and empties the buffer: the writer
// buffers the next rows while the returned write stores these. write looks
// up the images the rows wait for and writes them, one INSERT per table;
// it returns only after ClickHouse acknowledged every INSERT, and on error
// nothing may be considered stored. A row whose image does not exist is a
// *mapping.RowError. In a table's replay window write first drops the rows
// that a stored row of their transaction supersedes (see supersede).
// write touches only the detached rows (and, under mu or atomically, the
// replay windows and the image size estimate), so it may run while rows
// are Put.
func (w *Writer) Take() (rows int, write func(ctx context.Context) error) {
	taken := w.tables
	rows = w.rows
	w.tables = w.spareBuffers(len(taken))
	for i, b := range taken {
		nb := w.tables[i]
		nb.table, nb.insert = b.table, b.insert
		switch {
		case b.latest == nil:
			nb.latest = nil
		case nb.latest == nil:
			nb.latest = make(map[string]int)
		}
	}
	w.rows, w.bytes, w.waiting, w.imaging = 0, 0, 0, 0
	return rows, func(ctx context.Context) error {
		if rows == 0 {
			w.recycle(taken)
			return nil
		}
		if w.client == nil {
			return fmt.Errorf("flush: writer has no ClickHouse client")
		}
		for i, b := range taken {
			placed, stored, err := w.supersede(ctx, i, b)
			if err != nil {
				return err
			}
			if err := w.fillOnServer(ctx, i, b); err != nil {
				return err
			}
			if err := w.fill(ctx, b); err != nil {
				return err
			}
			// A Place tombstone's place is known once it is filled.
			for _, j := range placed {
				if b.rows[j] != nil && Superseded(b.table, b.rows[j], stored[b.table.IdentString(b.rows[j])]) {
					b.rows[j] = nil
				}
			}
		}
		for _, b := range taken {
			if err := w.client.insert(ctx, b); err != nil {
				return err
			}
		}
		w.recycle(taken)
		return nil
	}
}

// spareBuffers returns n empty table buffers: those of the last write
// that finished, whose slices and maps keep their capacity (growing the
// maps again for every flush took 0.22 s of a 3.5 s profile of a 1M-row
// transaction), or new ones.
func (w *Writer) spareBuffers(n int) []*tableBuffer {
	w.mu.Lock()
	bufs := w.spare
	w.spare = nil
	w.mu.Unlock()
	for len(bufs) < n {
		bufs = append(bufs, &tableBuffer{index: make(map[string]int)})
	}
	return bufs[:n]
}

// recycle empties the buffers of a finished write and keeps them for a
// later Take.
func (w *Writer) recycle(bufs []*tableBuffer) {
	for _, b := range bufs {
		b.reset()
	}
	w.mu.Lock()
	w.spare = bufs
	w.mu.Unlock()
}

// blockBytes bounds one block of an INSERT: a flush of more rows sends
// several blocks in one INSERT, so that the driver's copy of a block and
// its compressed form stay small next to the buffer. ClickHouse squashes
// the blocks of one INSERT into parts of min_insert_block_size_rows or
// _bytes, so smaller blocks do not make more parts.
const blockBytes = 4 << 20

// insert writes the rows of b with one INSERT and returns after ClickHouse
// acknowledged them.
func (c *Client) insert(ctx context.Context, b *tableBuffer) error {
	batch, err := c.conn.PrepareBatch(targetInsert(ctx), b.insert)
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", b.table.Target, classify(err))
	}
	n, size := 0, 0
	for _, row := range b.rows {
		if row == nil {
			continue // superseded (see Client.fill)
		}
		if size >= blockBytes {
			if err := batch.Flush(); err != nil {
				batch.Abort()
				return fmt.Errorf("insert %d rows into %s: %w", n, b.table.Target, classify(err))
			}
			size = 0
		}
		if err := batch.Append(row...); err != nil {
			batch.Abort()
			return fmt.Errorf("append row %s to %s: %w", b.table.KeyString(row), b.table.Target, err)
		}
		size += rowBytes(row)
		n++
	}
	if n == 0 {
		batch.Abort()
		return nil
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", n, b.table.Target, classify(err))
	}
	return nil
}

// Truncate drops the table's buffered rows, which the truncation
// supersedes, and empties its ClickHouse target.
func (w *Writer) Truncate(ctx context.Context, table int) error {
	b := w.tables[table]
	for i, row := range b.rows {
		w.bytes -= rowBytes(row)
		w.count(b.fills[i], -1)
	}
	w.rows -= len(b.rows)
	b.reset()
	if err := w.client.Exec(ctx, w.client.DB().Truncate(b.table.Target)); err != nil {
		return fmt.Errorf("truncate %s: %w", b.table.Target, err)
	}
	return nil
}

// reset empties the buffer and drops its references, so that the rows can
// be collected.
func (b *tableBuffer) reset() {
	clear(b.rows)
	clear(b.fills)
	b.rows, b.fills = b.rows[:0], b.fills[:0]
	clear(b.index)
	clear(b.latest)
}

// imageBlockRows bounds the rows of a block of an image lookup's result
// (ClickHouse's max_block_size).
const imageBlockRows = 256

// keysTable names the external table of a lookup's keys.
const keysTable = "_replicator_keys"

// FillBatch is how many keys one image lookup asks for. ClickHouse reads
// whole granules (8,192 rows by default): a lookup of that many keys reads
// each granule of a key range about once.
const FillBatch = 8192

// fill completes the rows of b that wait for earlier images, with one query
// per FillBatch keys. The size read per image sets the next estimate of
// Size. A fill is done once its columns are set, so a
// failed flush that is retried does not look it up again. A row that a
// stored tombstone of a later change supersedes (see imageFor) is dropped.
func (w *Writer) fill(ctx context.Context, b *tableBuffer) error {
	var pending []int
	for i, f := range b.fills {
		if f != nil {
			pending = append(pending, i)
		}
	}
	t := b.table
	for len(pending) > 0 {
		n := min(len(pending), FillBatch)
		images, size, err := w.client.images(ctx, t, b.fills, pending[:n])
		if err != nil {
			return err
		}
		returned := 0
		for _, rows := range images {
			returned += len(rows)
		}
		for _, i := range pending[:n] {
			f, row := b.fills[i], b.rows[i]
			if f.Place {
				image, later := imageFor(t, images[f.Key], f.Version, f.Seq)
				if err := b.place(i, image, later); err != nil {
					return err
				}
				b.fills[i] = nil
				continue
			}
			keep, err := f.Complete(t, row, images)
			if err != nil {
				return err
			}
			if !keep {
				b.rows[i] = nil
			}
			b.fills[i] = nil
		}
		if returned > 0 {
			// A filled row holds one image's values: the size of a row
			// read, not of all the versions read per fill (a key changed
			// often has many until ClickHouse merges them).
			w.imageBytes.Store(int64(max(size/returned, 256)))
		}
		pending = pending[n:]
	}
	return nil
}

// place completes the Place tombstone at i from image, the newest stored
// row of its identity before its change (later: only rows at or after it
// are stored), or drops it (see Fill.Place).
func (b *tableBuffer) place(i int, image []any, later bool) error {
	t, f, tomb := b.table, b.fills[i], b.rows[i]
	if image == nil || later || t.IsTombstone(image) {
		if later || f.Lenient {
			b.rows[i] = nil
			return nil
		}
		return &mapping.RowError{Table: t.Source, Column: t.Columns[f.Cols[0]].Name, Key: t.IdentText(f.KeyRow),
			LSN: pglogrepl.LSN(f.Version), Err: ErrNoPlace}
	}
	t.TakePlacement(tomb, image)
	p := t.Placement(tomb)
	if _, newer := b.index[p]; newer || p == f.Moved {
		b.rows[i] = nil
	}
	return nil
}

// ErrNoPlace is a delete, or an update, of a row whose sorting or
// partition key values the change does not carry and whose earlier image
// exists neither in the buffer nor in ClickHouse.
var ErrNoPlace = errors.New("the change carries only the replica identity, and no earlier image of the row in the buffer or in ClickHouse " +
	"holds its sorting and partition key values; resync the table")

// ErrNoImage is a row with unchanged TOAST values whose earlier image
// exists neither in the buffer nor in ClickHouse.
var ErrNoImage = errors.New("unchanged TOAST value and no earlier image of the row in the buffer or in ClickHouse; resync the table")

// supersede drops from b, in the table's replay window, the rows that a
// stored row of their transaction supersedes (see Superseded), before
// their images are looked up: a replay's first attempt may have stored
// rows of the same transaction with a higher _seq at the same place, and a
// row stored after them would win merges over them (among equal versions
// ReplacingMergeTree keeps the last inserted), losing the values that a
// later change of the replay takes from them (unchanged TOAST values, the
// place of a row). Outside the window (rows above the highest _version
// stored when the writer first wrote to the table) it reads nothing. It
// returns the Place tombstones in the window, whose place is known only
// once filled, and the stored rows read, by identity, to check them then.
func (w *Writer) supersede(ctx context.Context, table int, b *tableBuffer) (placed []int, stored map[string][][]any, err error) {
	t := b.table
	if t.History {
		return nil, nil, nil // the sorting key holds _version and _seq: rows never collapse with another change's
	}
	upTo, err := w.window(ctx, table, t)
	if err != nil || upTo == 0 {
		return nil, nil, err
	}
	var idx []int
	lo, hi := uint64(0), uint64(0)
	for i, row := range b.rows {
		if row == nil {
			continue
		}
		v, _, _ := t.Meta(row)
		if v > upTo {
			continue
		}
		if len(idx) == 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
		idx = append(idx, i)
	}
	for len(idx) > 0 {
		n := min(len(idx), FillBatch)
		keys := make([]keyRow, 0, n)
		for _, i := range idx[:n] {
			keys = append(keys, keyRow{t.IdentString(b.rows[i]), b.rows[i]})
		}
		need := make([]bool, len(t.Columns))
		for _, k := range t.PlacementColumns() {
			need[k] = true
		}
		got, _, err := w.client.storedRows(ctx, t, need, keys, fmt.Sprintf("_version >= %d AND _version <= %d", lo, hi))
		if err != nil {
			return nil, nil, fmt.Errorf("read the stored rows of a replay: %w", err)
		}
		if stored == nil {
			stored = got
		} else {
			for k, rows := range got {
				stored[k] = rows
			}
		}
		for _, i := range idx[:n] {
			if f := b.fills[i]; f != nil && f.Place {
				placed = append(placed, i)
				continue
			}
			if Superseded(t, b.rows[i], got[t.IdentString(b.rows[i])]) {
				b.rows[i], b.fills[i] = nil, nil
			}
		}
		idx = idx[n:]
	}
	return placed, stored, nil
}

// window returns the table's replay window (see window), read from its
// target at the first call.
func (w *Writer) window(ctx context.Context, table int, t *mapping.Table) (uint64, error) {
	w.mu.Lock()
	win := w.windows[table]
	w.mu.Unlock()
	if win.read {
		return win.upTo, nil
	}
	rows, err := w.client.Query(ctx, fmt.Sprintf("SELECT max(_version) FROM %s", w.client.DB().Table(t.Target)))
	if err != nil {
		return 0, fmt.Errorf("read the newest version stored in %s: %w", t.Target, err)
	}
	var ok bool
	if len(rows) == 1 && len(rows[0]) == 1 {
		win.upTo, ok = rows[0][0].(uint64)
	}
	if !ok {
		// (A settings profile changed the aggregate's result: sink.Open
		// pins the settings that would.)
		return 0, fmt.Errorf("read the newest version stored in %s: %d rows of %v, want one number", t.Target, len(rows), rows)
	}
	win.read = true
	w.mu.Lock()
	w.windows[table] = win
	w.mu.Unlock()
	return win.upTo, nil
}

// Superseded reports whether a replay must not store row: a stored row
// (stored: rows of its identity as a lookup reads them) at its place has
// its _version and a higher _seq, the row of a later change of its
// transaction that a first attempt wrote. The replay writes that change
// again, so the row has no effect on what FINAL reads; stored after it, it
// would win merges over it. Superseded is pure.
func Superseded(t *mapping.Table, row []any, stored [][]any) bool {
	v, _, s := t.Meta(row)
	place := ""
	for _, r := range stored {
		if rv, _, rs := t.Meta(r); rv != v || rs <= s {
			continue
		}
		if place == "" {
			place = t.Placement(row)
		}
		if t.Placement(r) == place {
			return true
		}
	}
	return false
}

// images reads every stored row of the keys that the fills at idx wait for,
// by key, and their total size. One plain read per lookup is the cheapest
// on the server (picking the newest row per key there, by argMax or LIMIT
// BY, costs more than sending the few versions merges leave), and it also
// returns the rows a replay's first attempt wrote (see imageFor).
func (c *Client) images(ctx context.Context, t *mapping.Table, fills []*Fill, idx []int) (map[string][][]any, int, error) {
	// Read only the columns the fills need: the identity, the columns to
	// fill (a Place tombstone's are its key values) and the meta columns.
	need := make([]bool, len(t.Columns))
	var keys []keyRow
	for _, i := range idx {
		f := fills[i]
		for _, col := range f.Cols {
			need[col] = true
		}
		keys = append(keys, keyRow{f.Key, f.KeyRow})
		for _, o := range f.Own {
			keys = append(keys, keyRow{o.Key, o.KeyRow})
		}
	}
	out, size, err := c.storedRows(ctx, t, need, keys, "")
	if err != nil {
		return nil, 0, fmt.Errorf("read earlier images: %w", err)
	}
	return out, size, nil
}

// keyRow is an identity (mapping.Table.IdentString) and a row that holds
// its values at the table's identifying indexes.
type keyRow struct {
	key string
	row []any
}

// storedRows reads every stored row of the identities keys (with the
// columns need marks, the identity's and the meta columns; where, when not
// empty, a condition on them), by identity, and their total size. The
// other columns of the rows are nil.
func (c *Client) storedRows(ctx context.Context, t *mapping.Table, need []bool, keys []keyRow, where string) (map[string][][]any, int, error) {
	ident := t.Ident()
	quoted := make([]string, len(ident))
	for i, k := range ident {
		quoted[i] = ddl.Quote(t.Columns[k].Name)
		need[k] = true
	}
	// The keys travel as a table of their own (external data): ClickHouse
	// reads a block of them faster than it parses as many literals (8,192
	// keys: 30 ms against 140 ms for the whole lookup).
	kcols := make([]func(*ext.Table) error, len(ident))
	knames := make([]string, len(ident))
	for j, k := range ident {
		typ := t.Columns[k].Type
		typ.LowCardinality = false
		knames[j] = "k" + strconv.Itoa(j)
		kcols[j] = ext.Column(knames[j], column.Type(typ.String()))
	}
	keyTable, err := ext.NewTable(keysTable, kcols...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", t.Target, err)
	}
	seen := make(map[string]bool, len(keys))
	vals := make([]any, len(ident))
	for _, k := range keys {
		if seen[k.key] {
			continue
		}
		seen[k.key] = true
		for j, i := range ident {
			vals[j] = k.row[i]
		}
		if err := keyTable.Append(vals...); err != nil {
			return nil, 0, fmt.Errorf("%s: key %s: %w", t.Target, k.key, err)
		}
	}
	cols, at := imageColumns(t, need)
	if where != "" {
		where = " AND " + where
	}
	// Small blocks: the driver grows a String column's buffer value by
	// value, which copies it over and over; decoding 8,192 values of 4 KB
	// in one block took 40 times as long as 1,024 of them.
	// GLOBAL: on a cluster the initiator sends the keys to every shard.
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_block_size": imageBlockRows}),
		clickhouse.WithExternalTable(keyTable))
	rows, err := c.Query(qctx, fmt.Sprintf("SELECT %s FROM %s WHERE (%s) GLOBAL IN (SELECT %s FROM %s)%s", strings.Join(cols, ", "),
		c.DB().Table(t.Target), strings.Join(quoted, ", "), strings.Join(knames, ", "), keysTable, where))
	if err != nil {
		return nil, 0, fmt.Errorf("%d keys of %s: %w", len(seen), t.Target, err)
	}
	out := make(map[string][][]any, len(seen))
	size := 0
	for _, r := range rows {
		full := make([]any, len(t.Columns)+len(mapping.MetaColumns))
		for j, v := range r {
			full[at[j]] = v
		}
		k := t.IdentString(full)
		out[k] = append(out[k], full)
		size += rowBytes(r)
	}
	return out, size, nil
}

// imageColumns returns the SELECT list of the columns of t that need
// marks and of the meta columns, and the row index of each. A JSON column
// is read as its text, the value a streamed row holds: clickhouse-go sends
// a block of a JSON column as text or as objects, not both.
func imageColumns(t *mapping.Table, need []bool) (cols []string, at []int) {
	for i, c := range t.Columns {
		if need[i] {
			col := ddl.Quote(c.Name)
			if c.Type.Kind == mapping.KindJSON {
				col = "toString(" + col + ")"
			}
			cols, at = append(cols, col), append(at, i)
		}
	}
	for i, m := range mapping.MetaColumns {
		cols, at = append(cols, ddl.Quote(m)), append(at, len(t.Columns)+i)
	}
	return cols, at
}

// Complete sets the columns f names in row, a buffered row waiting for
// them, from images: every stored row of the fill's keys (Key and those of
// Own), by identity, as a flush reads them. It returns false when the row
// is not to be written: on a replay, a later change's tombstone supersedes
// it. An image that does not exist is a *mapping.RowError (ErrNoImage).
// Complete is pure: the flush's lookup is its only I/O.
func (f *Fill) Complete(t *mapping.Table, row []any, images map[string][][]any) (keep bool, err error) {
	image, later := valuesFor(t, f, images)
	switch {
	case image == nil || t.IsTombstone(image) && !later:
		return false, &mapping.RowError{Table: t.Source, Column: t.Columns[f.Cols[0]].Name, Key: f.Key,
			LSN: pglogrepl.LSN(f.Version), Err: ErrNoImage}
	case t.IsTombstone(image):
		return false, nil
	}
	for _, col := range f.Cols {
		row[col] = image[col]
	}
	return true, nil
}

// valuesFor returns the image whose values the row waiting for fill f
// takes, from the stored rows of the fill's keys (by identity); later
// reports a row at or after the change, which is a replay's.
//
// On a replay, rows of the first attempt at or after the change may be
// stored, and a merge may have folded the image into them: at the image's
// key into the change's own tombstone (a key move) or own row, leaving
// nothing older or a stale older row there. The rows of the spans of f.Own
// come first: at the row's current identity the oldest at or after its
// span's start, which is the row of one of the changes whose values it
// carries (exactly those values) or the row of a later change of the same
// row, which supersedes it (a later tombstone: the caller drops the row);
// at an identity the row moved away from, any row of the span. Rows of the
// image's key at or after the change are never the values: its own
// tombstone holds none, and after a key move the old key's later rows are
// another source row's. Else the image is the newest row of the key
// strictly older than the change; a tombstone there, or none, is no image.
// Rows are ordered by (_version, _seq), as the argMax readers order them.
func valuesFor(t *mapping.Table, f *Fill, images map[string][][]any) (image []any, later bool) {
	for i := len(f.Own) - 1; i >= 0; i-- {
		o := f.Own[i]
		var found []any
		var fv, fs uint64
		for _, r := range images[o.Key] {
			v, deleted, s := t.Meta(r)
			if less(v, s, o.FromVersion, o.FromSeq) {
				continue
			}
			if o.Closed() && (deleted || !less(v, s, o.ToVersion, o.ToSeq)) {
				continue
			}
			if found == nil || less(v, s, fv, fs) {
				found, fv, fs = r, v, s
			}
		}
		if found != nil {
			return found, true
		}
	}
	older, _ := around(t, images[f.Key], f.Version, f.Seq, true)
	return older, false
}

// less reports whether (v1, s1) sorts before (v2, s2).
func less(v1, s1, v2, s2 uint64) bool { return v1 < v2 || v1 == v2 && s1 < s2 }

// around returns the newest row strictly older than (version, seq) and
// the oldest at or after it; skipOwn passes over the change's own
// tombstone, the row at exactly (version, seq).
func around(t *mapping.Table, rows [][]any, version, seq uint64, skipOwn bool) (older, newer []any) {
	var ov, os, nv, ns uint64
	for _, r := range rows {
		v, deleted, s := t.Meta(r)
		switch {
		case skipOwn && v == version && s == seq && deleted:
		case v < version || v == version && s < seq:
			if older == nil || v > ov || v == ov && s > os {
				older, ov, os = r, v, s
			}
		case newer == nil || v < nv || v == nv && s < ns:
			newer, nv, ns = r, v, s
		}
	}
	return older, newer
}

// imageFor returns the image that a change at (version, seq) takes its
// unchanged values from: the newest row strictly older than the change.
// When no such row is stored but rows at or after the change are, this is
// a replay whose first attempt wrote them and a merge folded the older
// rows into them: imageFor then returns the oldest of them, with later set.
// That is the change's own row from the first attempt (exactly the values
// it needs) or a later change's row, which the replay writes again after
// this one and which supersedes it (a later tombstone: the caller drops
// the row). The same holds when the newest older row is a tombstone but
// rows at or after the change are stored: a row that moved to another
// sorting key leaves its tombstones at its old places, and a merge folded
// its image into the first attempt's rows at the image's place.
func imageFor(t *mapping.Table, rows [][]any, version, seq uint64) (image []any, later bool) {
	older, newer := around(t, rows, version, seq, false)
	if older != nil && (newer == nil || !t.IsTombstone(older)) {
		return older, false
	}
	return newer, newer != nil
}

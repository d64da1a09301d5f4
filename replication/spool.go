package replication

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/jackc/pglogrepl"
)

// Spool keeps the messages of streamed transactions from their first block
// to their commit or abort. Each transaction's messages stay in memory
// until all of them together exceed the memory bound; then the largest
// transaction moves to a file in the spill directory, where it grows until
// it ends. A spool belongs to one session: Postgres sends every
// transaction that commits after the acknowledged position again, from its
// start, so the files of an earlier run are of no use and NewSpool removes
// them.
type Spool struct {
	dir, prefix string
	memory      int64
	diskLimit   int64

	txns map[uint32]*spooled
	mem  int64 // bytes of records held in memory
	disk int64 // bytes of records in files
	rec  []byte
}

// spooled is the record sequence of one streamed transaction. A record is
// the message's WAL position (8 bytes), its length (4 bytes) and the
// message as pgoutput sent it.
type spooled struct {
	xid uint32
	// chunks hold the records while in memory; a record never spans two
	// chunks, so that growing never copies what is held.
	chunks [][]byte
	file   *os.File
	w      *bufio.Writer
	size   int64
	// first holds the offset of each subtransaction's first record: a
	// subtransaction's abort discards everything from there, as its
	// changes and those of the subtransactions it started follow it.
	first map[uint32]int64
}

// SpoolOptions configures a Spool.
type SpoolOptions struct {
	// Dir is the spill directory, Prefix names this spool's files in it
	// (the slot: daemons of other slots may share the directory).
	Dir, Prefix string
	// Memory bounds the records held in memory; Limit bounds those in
	// files (0: no bound).
	Memory, Limit int64
}

// ErrSpillFull is returned when the streamed transactions need more disk
// than the spill limit allows, or than the disk has.
var ErrSpillFull = errors.New("stream spill directory full")

const recordHeader = 12

// spillSuffix ends the names of spill files.
const spillSuffix = ".spill"

// NewSpool returns an empty spool and removes the spill files an earlier
// run with the same prefix left behind.
func NewSpool(opt SpoolOptions) (*Spool, error) {
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("stream.spill_dir: %w", err)
	}
	old, err := filepath.Glob(filepath.Join(opt.Dir, globEscape(opt.Prefix)+"-*"+spillSuffix))
	if err != nil {
		return nil, err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("remove spill file of an earlier run: %w", err)
		}
	}
	return &Spool{dir: opt.Dir, prefix: opt.Prefix, memory: opt.Memory, diskLimit: opt.Limit, txns: make(map[uint32]*spooled)}, nil
}

// CheckSpillDir makes sure that the spill directory exists, or can be
// created, and that files can be written in it: the daemon checks it when
// it starts, so that a read-only or missing directory is reported at once
// rather than when the first large transaction arrives. The error names
// the key and the fix.
func CheckSpillDir(dir string) error {
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".write-check-*"); err == nil {
			f.Close()
			err = os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("stream.spill_dir: %s is not a writable directory: %w; set stream.spill_dir to a directory the daemon "+
			"can write (systemd: StateDirectory=replicator and \"/var/lib/replicator/spill\"; Kubernetes or a read-only root: "+
			"a mounted volume such as an emptyDir), or stream.enabled = false (Postgres then sends a transaction only after "+
			"it commits, and nothing spills)", dir, err)
	}
	return nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// Start opens the next block of transaction xid. The first block of a
// transaction starts its record sequence; a later block of a transaction
// the spool does not hold means that its earlier blocks were lost.
func (s *Spool) Start(xid uint32, first bool) error {
	_, ok := s.txns[xid]
	switch {
	case first && ok:
		return fmt.Errorf("streamed transaction %d started twice", xid)
	case !first && !ok:
		return fmt.Errorf("block of streamed transaction %d whose first block was not received", xid)
	case first:
		s.txns[xid] = &spooled{xid: xid, first: make(map[uint32]int64)}
	}
	return nil
}

// Add appends a message of a block of transaction xid.
func (s *Spool) Add(xid uint32, lsn pglogrepl.LSN, data []byte) error {
	t, ok := s.txns[xid]
	if !ok {
		return fmt.Errorf("message of streamed transaction %d outside its blocks", xid)
	}
	sub, err := StreamedXid(data)
	if err != nil {
		return err
	}
	if _, ok := t.first[sub]; !ok {
		t.first[sub] = t.size
	}
	var h [recordHeader]byte
	binary.BigEndian.PutUint64(h[:8], uint64(lsn))
	binary.BigEndian.PutUint32(h[8:], uint32(len(data)))
	n := int64(recordHeader + len(data))
	t.size += n
	if t.file == nil {
		t.put(h[:], data)
		s.mem += n
		for s.mem > s.memory {
			if err := s.spill(); err != nil {
				return err
			}
		}
		return nil
	}
	s.disk += n
	if s.diskLimit > 0 && s.disk > s.diskLimit {
		return fmt.Errorf("%w: streamed transactions need more than stream.spill_limit (%d bytes) in %s; "+
			"raise stream.spill_limit or give the directory more room", ErrSpillFull, s.diskLimit, s.dir)
	}
	if _, err := t.w.Write(h[:]); err != nil {
		return s.writeError(err)
	}
	if _, err := t.w.Write(data); err != nil {
		return s.writeError(err)
	}
	return nil
}

func (s *Spool) writeError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %s: %v; free space there or set stream.spill_dir to a larger disk", ErrSpillFull, s.dir, err)
	}
	return fmt.Errorf("write stream spill file in %s: %w", s.dir, err)
}

// spill moves the largest transaction held in memory to a file.
func (s *Spool) spill() error {
	var big *spooled
	for _, t := range s.txns {
		if t.file == nil && (big == nil || t.size > big.size) {
			big = t
		}
	}
	if big == nil {
		return nil
	}
	f, err := os.OpenFile(s.path(big.xid), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create stream spill file: %w", err)
	}
	big.file, big.w = f, bufio.NewWriterSize(f, 256<<10)
	s.mem -= big.size
	s.disk += big.size
	if s.diskLimit > 0 && s.disk > s.diskLimit {
		return fmt.Errorf("%w: streamed transactions need more than stream.spill_limit (%d bytes) in %s; "+
			"raise stream.spill_limit or give the directory more room", ErrSpillFull, s.diskLimit, s.dir)
	}
	for _, c := range big.chunks {
		if _, err := big.w.Write(c); err != nil {
			return s.writeError(err)
		}
	}
	big.chunks = nil
	return nil
}

func (s *Spool) path(xid uint32) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%d%s", s.prefix, xid, spillSuffix))
}

// Abort discards transaction xid when sub is xid, else the records of its
// subtransaction sub and of everything after sub's first record.
func (s *Spool) Abort(xid, sub uint32) error {
	t, ok := s.txns[xid]
	if !ok {
		return nil // nothing of it was streamed in this session
	}
	if sub == xid {
		return s.discard(t)
	}
	off, ok := t.first[sub]
	if !ok {
		return nil
	}
	// Relation messages in the discarded range stay: pgoutput sends a
	// relation's schema once per streamed transaction, so the changes that
	// follow the rollback may need it.
	keep, err := s.relations(t, off)
	if err != nil {
		return err
	}
	for x, o := range t.first {
		if o >= off {
			delete(t.first, x)
		}
	}
	cut := t.size - off
	t.size = off
	if t.file == nil {
		t.truncate(off)
		s.mem -= cut
		return s.append(t, keep)
	}
	s.disk -= cut
	if err := t.w.Flush(); err != nil {
		return s.writeError(err)
	}
	if err := t.file.Truncate(off); err != nil {
		return fmt.Errorf("truncate stream spill file: %w", err)
	}
	if _, err := t.file.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek stream spill file: %w", err)
	}
	return s.append(t, keep)
}

// relations returns the Relation records of t from offset off on.
func (s *Spool) relations(t *spooled, off int64) ([]byte, error) {
	var keep []byte
	collect := func(rec []byte) error {
		if rec[recordHeader] == 'R' {
			keep = append(keep, rec...)
		}
		return nil
	}
	if t.file == nil {
		return keep, t.records(off, collect)
	}
	if err := t.w.Flush(); err != nil {
		return nil, s.writeError(err)
	}
	tail := make([]byte, t.size-off)
	if _, err := t.file.ReadAt(tail, off); err != nil {
		return nil, fmt.Errorf("read stream spill file: %w", err)
	}
	for b := tail; len(b) > 0; {
		n := recordHeader + int(binary.BigEndian.Uint32(b[8:12]))
		collect(b[:n])
		b = b[n:]
	}
	return keep, nil
}

// chunkSize is the size of a chunk of records held in memory.
const chunkSize = 1 << 20

// put appends one record, given in parts, to t's chunks.
func (t *spooled) put(parts ...[]byte) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if len(t.chunks) == 0 || cap(t.chunks[len(t.chunks)-1])-len(t.chunks[len(t.chunks)-1]) < n {
		t.chunks = append(t.chunks, make([]byte, 0, max(chunkSize, n)))
	}
	last := &t.chunks[len(t.chunks)-1]
	for _, p := range parts {
		*last = append(*last, p...)
	}
}

// records passes the records held in memory from offset off on to fn.
func (t *spooled) records(off int64, fn func(rec []byte) error) error {
	var at int64
	for _, c := range t.chunks {
		if at+int64(len(c)) <= off {
			at += int64(len(c))
			continue
		}
		b := c
		if off > at {
			b = c[off-at:]
		}
		at += int64(len(c))
		for len(b) > 0 {
			n := recordHeader + int(binary.BigEndian.Uint32(b[8:12]))
			if err := fn(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
	}
	return nil
}

// truncate drops the records held in memory from offset off on.
func (t *spooled) truncate(off int64) {
	var at int64
	for i, c := range t.chunks {
		if at+int64(len(c)) >= off {
			t.chunks[i] = c[:off-at]
			t.chunks = t.chunks[:i+1]
			return
		}
		at += int64(len(c))
	}
}

// append adds whole records to t without marking any subtransaction's
// start.
func (s *Spool) append(t *spooled, recs []byte) error {
	if len(recs) == 0 {
		return nil
	}
	n := int64(len(recs))
	t.size += n
	if t.file == nil {
		for b := recs; len(b) > 0; {
			n := recordHeader + int(binary.BigEndian.Uint32(b[8:12]))
			t.put(b[:n])
			b = b[n:]
		}
		s.mem += n
		return nil
	}
	s.disk += n
	if _, err := t.w.Write(recs); err != nil {
		return s.writeError(err)
	}
	return nil
}

// Subtransactions returns the subtransactions of xid that have messages
// in the spool.
func (s *Spool) Subtransactions(xid uint32) []uint32 {
	t, ok := s.txns[xid]
	if !ok {
		return nil
	}
	var subs []uint32
	for x := range t.first {
		if x != xid {
			subs = append(subs, x)
		}
	}
	return subs
}

// Replay passes the records of transaction xid to fn in order, except the
// changes of the subtransactions in skip, then discards the transaction.
// The data passed to fn is valid only until fn returns.
func (s *Spool) Replay(xid uint32, skip map[uint32]bool, fn func(lsn pglogrepl.LSN, data []byte) error) error {
	t, ok := s.txns[xid]
	if !ok {
		return fmt.Errorf("commit of streamed transaction %d whose blocks were not received", xid)
	}
	defer s.discard(t)
	pass := func(lsn pglogrepl.LSN, data []byte) error {
		if len(skip) > 0 && data[0] != 'R' && skip[binary.BigEndian.Uint32(data[1:5])] {
			return nil
		}
		return fn(lsn, data)
	}
	if t.file == nil {
		return t.records(0, func(rec []byte) error {
			return pass(pglogrepl.LSN(binary.BigEndian.Uint64(rec[:8])), rec[recordHeader:])
		})
	}
	if err := t.w.Flush(); err != nil {
		return s.writeError(err)
	}
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read stream spill file: %w", err)
	}
	r := bufio.NewReaderSize(io.LimitReader(t.file, t.size), 1<<20)
	var h [recordHeader]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("read stream spill file: %w", err)
		}
		n := int(binary.BigEndian.Uint32(h[8:]))
		if cap(s.rec) < n {
			s.rec = make([]byte, n)
		}
		data := s.rec[:n]
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("read stream spill file: %w", err)
		}
		if err := pass(pglogrepl.LSN(binary.BigEndian.Uint64(h[:8])), data); err != nil {
			return err
		}
	}
}

func (s *Spool) discard(t *spooled) error {
	delete(s.txns, t.xid)
	if t.file == nil {
		s.mem -= t.size
		return nil
	}
	s.disk -= t.size
	t.file.Close()
	if err := os.Remove(t.file.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stream spill file: %w", err)
	}
	return nil
}

// Close discards every transaction and removes their files.
func (s *Spool) Close() error {
	var first error
	for _, t := range s.txns {
		if err := s.discard(t); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Open returns the number of streamed transactions held and the bytes
// they hold in memory and in files.
func (s *Spool) Open() (txns int, memory, disk int64) { return len(s.txns), s.mem, s.disk }

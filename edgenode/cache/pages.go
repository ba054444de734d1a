package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

// bbolt's on-disk page layout (go.etcd.io/bbolt/internal/common), which
// checkPages reads without bbolt.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos, ksize u32, child u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // root u64, sequence u64; an inline bucket's page follows
	branchPage       = 0x01
	leafPage         = 0x02
	freelistPage     = 0x10
	bucketElement    = 0x01
	noFreelist       = ^uint64(0)
	// Offsets in a meta page (page header, then magic, version, page size,
	// flags as u32, then root bucket, sequence, freelist, high-water mark,
	// txid as u64).
	metaRoot     = pageHeaderSize + 16
	metaFreelist = pageHeaderSize + 32
	metaPgid     = pageHeaderSize + 40
	metaTxid     = pageHeaderSize + 48
	metaEnd      = metaTxid + 8
)

var le = binary.LittleEndian

// geometry is what checkPages needs from the meta page bbolt chose.
type geometry struct {
	pageSize uint64
	hwm      uint64 // pages [0, hwm) are in use or free
	root     uint64 // root bucket's page
	freelist uint64 // noFreelist when the freelist is not synced
}

// readGeometry opens path read-only, which reads and validates its meta
// pages but no other page (no freelist is loaded), and returns the chosen
// meta's geometry. bbolt does not export the freelist page id; it is taken
// from whichever of the two raw meta pages describes the same transaction.
func readGeometry(path string, f io.ReaderAt) (geometry, error) {
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return geometry{}, err
	}
	defer db.Close()
	var g geometry
	err = db.View(func(tx *bolt.Tx) error {
		g.pageSize = uint64(db.Info().PageSize)
		g.hwm = uint64(tx.Size()) / g.pageSize
		g.root = uint64(tx.Cursor().Bucket().Root())
		for _, off := range []uint64{0, g.pageSize} {
			var m [metaEnd]byte
			if _, err := f.ReadAt(m[:], int64(off)); err != nil {
				continue
			}
			if le.Uint64(m[metaTxid:]) == uint64(tx.ID()) && le.Uint64(m[metaRoot:]) == g.root && le.Uint64(m[metaPgid:]) == g.hwm {
				g.freelist = le.Uint64(m[metaFreelist:])
				return nil
			}
		}
		return errors.New("no meta page matches the transaction bbolt chose")
	})
	return g, err
}

// checkPages walks every page bbolt would follow from the meta page (the
// B+tree of every bucket, inline buckets, the freelist) with bounds-checked
// reads of the file, and fails on the first page bbolt would misread: a page
// outside the used pages, one that names another id or has a wrong type, an
// element whose key or value lies outside its page, keys out of order, a
// page referenced twice, a freelist that does not fit its page or frees a
// page in use. It is at least as strict as the walk bbolt makes when it
// rebuilds a freelist (which panics in a goroutine of its own on any of
// these) and as tx.Check (which runs in a goroutine where a bad address is
// a fatal fault, not a panic), so a file it accepts can be opened and
// checked by bbolt without crashing the process. It never panics.
func checkPages(f io.ReaderAt, g geometry) error {
	c := &pageChecker{f: f, g: g, seen: map[uint64]bool{}}
	if err := c.tree(g.root, nil, nil); err != nil {
		return err
	}
	if g.freelist != noFreelist {
		return c.freelist(g.freelist)
	}
	return nil
}

type pageChecker struct {
	f    io.ReaderAt
	g    geometry
	seen map[uint64]bool // pages reached so far, overflow pages included
}

// page reads page id with its overflow pages and marks them reached.
func (c *pageChecker) page(id uint64) ([]byte, error) {
	ps := c.g.pageSize
	if id < 2 || id >= c.g.hwm {
		return nil, fmt.Errorf("page %d is outside the used pages 2..%d", id, c.g.hwm-1)
	}
	buf := make([]byte, ps)
	if _, err := c.f.ReadAt(buf, int64(id*ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := le.Uint64(buf); got != id {
		return nil, fmt.Errorf("page %d identifies itself as page %d", id, got)
	}
	overflow := uint64(le.Uint32(buf[12:]))
	if overflow >= c.g.hwm-id {
		return nil, fmt.Errorf("page %d: its %d overflow pages run past the used pages", id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if c.seen[i] {
			return nil, fmt.Errorf("page %d is referenced twice", i)
		}
		c.seen[i] = true
	}
	if overflow > 0 {
		buf = append(buf, make([]byte, overflow*ps)...)
		if _, err := c.f.ReadAt(buf[ps:], int64((id+1)*ps)); err != nil {
			return nil, fmt.Errorf("page %d: overflow: %w", id, err)
		}
	}
	return buf, nil
}

// tree checks the branch or leaf page id and everything below it; every key
// must lie in [lo, hi) (nil: unbounded).
func (c *pageChecker) tree(id uint64, lo, hi []byte) error {
	p, err := c.page(id)
	if err != nil {
		return err
	}
	typ, es, err := elements(p, lo, hi)
	if err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	if typ == leafPage {
		return c.buckets(es)
	}
	if len(es) == 0 {
		return fmt.Errorf("page %d: a branch page without elements", id)
	}
	for i, e := range es {
		next := hi
		if i+1 < len(es) {
			next = es[i+1].key
		}
		if err := c.tree(e.child, e.key, next); err != nil {
			return err
		}
	}
	return nil
}

// buckets checks the nested buckets among a leaf's elements.
func (c *pageChecker) buckets(es []element) error {
	for _, e := range es {
		if !e.bucket {
			continue
		}
		if len(e.value) < bucketHeaderSize {
			return fmt.Errorf("bucket %q: its header is cut short", e.key)
		}
		if root := le.Uint64(e.value); root != 0 {
			if err := c.tree(root, nil, nil); err != nil {
				return fmt.Errorf("bucket %q: %w", e.key, err)
			}
			continue
		}
		// An inline bucket: its leaf page is the rest of the value.
		typ, inner, err := elements(e.value[bucketHeaderSize:], nil, nil)
		if err == nil && typ != leafPage {
			err = fmt.Errorf("an inline page of type %#x", typ)
		}
		if err == nil {
			err = c.buckets(inner)
		}
		if err != nil {
			return fmt.Errorf("inline bucket %q: %w", e.key, err)
		}
	}
	return nil
}

// freelist checks the freelist page: its ids fit the page, lie in the used
// pages, are not reachable, and are not listed twice.
func (c *pageChecker) freelist(id uint64) error {
	p, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if typ := le.Uint16(p[8:]); typ != freelistPage {
		return fmt.Errorf("freelist page %d has type %#x", id, typ)
	}
	slots := uint64(len(p)-pageHeaderSize) / 8
	first, n := uint64(0), uint64(le.Uint16(p[10:]))
	if n == 0xFFFF { // the real count is the first slot
		first, n = 1, le.Uint64(p[pageHeaderSize:])
	}
	if n > slots-first {
		return fmt.Errorf("freelist page %d: %d ids do not fit in it", id, n)
	}
	freed := make(map[uint64]bool, n)
	for i := first; i < first+n; i++ {
		f := le.Uint64(p[pageHeaderSize+8*i:])
		switch {
		case f < 2 || f >= c.g.hwm:
			return fmt.Errorf("freelist page %d frees page %d, outside the used pages", id, f)
		case c.seen[f]:
			return fmt.Errorf("freelist page %d frees page %d, which is in use", id, f)
		case freed[f]:
			return fmt.Errorf("freelist page %d frees page %d twice", id, f)
		}
		freed[f] = true
	}
	return nil
}

type element struct {
	key, value []byte
	child      uint64 // a branch element's page
	bucket     bool   // a leaf element holding a bucket
}

// elements decodes the branch or leaf page p (header first) whose keys and
// values must all lie within p, in strictly increasing order, in [lo, hi).
func elements(p []byte, lo, hi []byte) (typ uint16, es []element, err error) {
	if len(p) < pageHeaderSize {
		return 0, nil, errors.New("shorter than a page header")
	}
	typ = le.Uint16(p[8:])
	if typ != branchPage && typ != leafPage {
		return typ, nil, fmt.Errorf("type %#x where a branch or leaf page belongs", typ)
	}
	n := int(le.Uint16(p[10:]))
	if pageHeaderSize+n*elementSize > len(p) {
		return typ, nil, fmt.Errorf("%d elements do not fit in the page", n)
	}
	es = make([]element, n)
	for i := range es {
		off := pageHeaderSize + i*elementSize
		raw := p[off : off+elementSize]
		var pos, ksize, vsize uint64
		if typ == branchPage {
			pos, ksize = uint64(le.Uint32(raw)), uint64(le.Uint32(raw[4:]))
			es[i].child = le.Uint64(raw[8:])
		} else {
			es[i].bucket = le.Uint32(raw)&bucketElement != 0
			pos, ksize, vsize = uint64(le.Uint32(raw[4:])), uint64(le.Uint32(raw[8:])), uint64(le.Uint32(raw[12:]))
		}
		start := uint64(off) + pos
		if start+ksize+vsize > uint64(len(p)) {
			return typ, nil, fmt.Errorf("element %d lies outside its page", i)
		}
		k := p[start : start+ksize]
		es[i].key, es[i].value = k, p[start+ksize:start+ksize+vsize]
		if i > 0 && bytes.Compare(es[i-1].key, k) >= 0 || lo != nil && bytes.Compare(k, lo) < 0 || hi != nil && bytes.Compare(k, hi) >= 0 {
			return typ, nil, fmt.Errorf("key %d (%x) out of order", i, k)
		}
	}
	return typ, es, nil
}

// checkFile checks the file at path before bbolt opens it for writing: its
// meta pages (by a read-only bbolt open, which reads nothing else), that the
// file holds every page the meta page counts, then every page. A missing or
// empty file is fine: bbolt initialises it.
//
// internal/boltfile.Validate is not used: it refuses every file whose
// freelist is not synced (the meta page's freelist id is then the sentinel
// 2^64-1, which it reads as a page past the end), and edges wrote their
// cache that way until the freelist was synced.
func checkFile(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	g, err := readGeometry(path, f)
	if err != nil {
		return err
	}
	if used := g.hwm * g.pageSize; used > uint64(fi.Size()) {
		return fmt.Errorf("truncated: %d bytes, but its last transaction uses %d pages of %d bytes", fi.Size(), g.hwm, g.pageSize)
	}
	return checkPages(f, g)
}

// Package boltfile checks a bbolt file's header before bbolt opens it.
//
// bbolt trusts the page ids in its meta page: a file cut short (a copy that
// stopped, a full disk, a truncating tool) opens fine and then panics on the
// first read past the end, in a goroutine no caller can recover, so a
// process restarted on it crash-loops. Validate reads the two meta pages the
// way bbolt does (magic, version, FNV-64a checksum, the one with the highest
// transaction id wins) and refuses a file whose chosen meta points beyond the
// file's end, with an error that says what is wrong. It never panics and
// reads at most two pages.
//
// It does not walk the B+tree: damage inside a page of a file of the right
// size is bbolt's to find (a torn write cannot cause it: bbolt commits by
// writing new pages, fsyncing, then switching meta pages).
package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// ErrDamaged is returned for a file bbolt would misread.
var ErrDamaged = errors.New("not a usable bbolt file")

const (
	magic          = 0xED0CDAED
	version        = 2
	pageHeaderSize = 16
	// Layout of bbolt's Meta after the page header: magic, version,
	// pageSize, flags (4 bytes each), root {pgid, sequence}, freelist pgid,
	// high-water pgid, txid (8 bytes each), checksum.
	metaChecksumOff = 4*4 + 16 + 8 + 8 + 8
	metaSize        = metaChecksumOff + 8
	minPageSize     = 1024
	maxPageSize     = 1 << 24
)

type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// parseMeta decodes a meta page starting at buf[0]; ok is false when it is
// not a valid meta (bad magic, version or checksum).
func parseMeta(buf []byte) (meta, bool) {
	if len(buf) < pageHeaderSize+metaSize {
		return meta{}, false
	}
	m := buf[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != magic || le.Uint32(m[4:]) != version {
		return meta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaChecksumOff])
	if h.Sum64() != le.Uint64(m[metaChecksumOff:]) {
		return meta{}, false
	}
	return meta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, true
}

// Validate checks the file at path. A missing or empty file is fine (bbolt
// creates one); anything else must have a valid meta page whose high-water
// mark, root and freelist lie within the file.
func Validate(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	read := func(off int64) []byte {
		buf := make([]byte, pageHeaderSize+metaSize)
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		return buf[:n]
	}
	m0, ok0 := parseMeta(read(0))
	// bbolt finds the second meta at one page size in: the first meta's
	// page size, or, when that meta is damaged, each candidate size.
	var m1 meta
	ok1 := false
	if ok0 {
		m1, ok1 = parseMeta(read(int64(m0.pageSize)))
	} else {
		for ps := int64(minPageSize); ps <= maxPageSize && ps < size; ps <<= 1 {
			if m1, ok1 = parseMeta(read(ps)); ok1 {
				break
			}
		}
	}
	var m meta
	switch {
	case ok0 && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	case ok1:
		m = m1
	default:
		return fmt.Errorf("%w: neither meta page is valid (garbage, zeroed, or not a bbolt file)", ErrDamaged)
	}
	ps := int64(m.pageSize)
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return fmt.Errorf("%w: page size %d in the meta page", ErrDamaged, ps)
	}
	// A file written with NoFreelistSync names no freelist page (all ones).
	const noFreelist = ^uint64(0)
	if m.pgid < 4 || m.root >= m.pgid || (m.freelist != noFreelist && m.freelist >= m.pgid) {
		return fmt.Errorf("%w: meta page (txid %d) names pages outside its own high-water mark %d", ErrDamaged, m.txid, m.pgid)
	}
	if m.pgid > uint64(size/ps) {
		return fmt.Errorf("%w: truncated: %d bytes, but its last transaction (txid %d) uses %d pages of %d bytes", ErrDamaged, size, m.txid, m.pgid, ps)
	}
	return nil
}

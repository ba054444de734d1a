package cache

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	// lockTimeout is how long Open waits for another process's lock.
	lockTimeout = time.Second
	// keepAside is how many damaged files (path.corrupt-*) are kept, the
	// newest first, so an edge crash-looping on a bad disk cannot fill it.
	keepAside = 3
	dirMode   = 0o700
	fileMode  = 0o600 // the file holds API key secrets
)

// Open opens or creates the cache file at path, creating its directory
// (0700; the file is 0600). It waits up to a second for the file lock and
// then fails with ErrLocked.
//
// A cache must never keep an edge down, so a file that is damaged in any
// way is moved aside and a fresh one is created: bbolt cannot open it
// (garbage, truncated, another version, not a regular file), a page is not
// what bbolt would read it as, bbolt's consistency check fails, a record
// does not decode, or bbolt panics reading it. The damaged file is renamed
// to path.corrupt-<unix time> (with -N appended when that name is taken),
// an error naming both is logged, and only the newest three such files are
// kept. Other errors (the directory cannot be created, the file cannot be
// moved aside or created) are returned, naming the file.
func Open(path string, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("cache %s: creating its directory: %w", path, err)
	}
	if err := narrowDir(filepath.Dir(path), log); err != nil {
		return nil, fmt.Errorf("cache %s: %w", path, err)
	}
	db, err := openChecked(path)
	if errors.Is(err, ErrLocked) {
		return nil, err
	}
	if err != nil {
		aside, merr := moveAside(path)
		if merr != nil {
			return nil, fmt.Errorf("%w: %s (%v) and moving it aside failed: %v; remove it and start the edge again", ErrCorrupt, path, err, merr)
		}
		log.Error("routing cache file damaged: moved it aside, starting without it; the coordinators send the state",
			"path", path, "aside", aside, "err", err)
		if db, err = openChecked(path); err != nil {
			return nil, fmt.Errorf("cache %s: creating a fresh file after moving the damaged one to %s: %w", path, aside, err)
		}
	}
	return &Store{db: db, path: path}, nil
}

// narrowDir makes dir 0700 if others could read it (an older version, or
// an operator's mkdir, left it so). A shared directory such as /tmp is
// refused rather than narrowed.
func narrowDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		return fmt.Errorf("%s is a shared directory (sticky bit, like /tmp); give the edge a data directory of its own inside it", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("directory %s is mode %v and cannot be narrowed to %v: %w", dir, perm, fs.FileMode(dirMode), err)
		}
		log.Warn("cache directory was readable by others; narrowed it", "path", dir, "was", perm.String(), "now", fs.FileMode(dirMode).String())
	}
	return nil
}

// openChecked opens path and proves that bbolt can read all of it. Any
// error but ErrLocked means the file is damaged.
func openChecked(path string) (db *bolt.DB, err error) {
	err = guard(func() error {
		if err := checkFile(path); err != nil {
			return err
		}
		if db, err = openBolt(path, &bolt.Options{Timeout: lockTimeout}); err != nil {
			return err
		}
		if err := os.Chmod(path, fileMode); err != nil {
			return err
		}
		return verify(db)
	})
	if err != nil && db != nil {
		db.Close()
		db = nil
	}
	return db, err
}

// openBolt opens path with bbolt, mapping its lock timeout to ErrLocked.
// The freelist is synced (bbolt's default): with NoFreelistSync bbolt
// rebuilds it at every open by walking every page, in a goroutine that
// panics on the first bad one.
func openBolt(path string, opts *bolt.Options) (*bolt.DB, error) {
	db, err := bolt.Open(path, fileMode, opts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (is another edge running on this data directory?)", ErrLocked, path)
	}
	return db, err
}

// verify runs bbolt's consistency check and decodes every record.
func verify(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		// Drain the channel: the checker goroutine reads the transaction
		// until it closes it, and must not outlive it.
		for err := range tx.Check() {
			if len(errs) < 3 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("consistency check: %w", errors.Join(errs...))
		}
		_, err := loadTx(tx, discardLoader{})
		return err
	})
}

// guard runs f with memory faults turned into panics, and returns any panic
// as an error. bbolt reads its file through mmap and trusts what it reads:
// a damaged page can make it index out of range, follow a garbage offset or
// touch memory past the end of the file. Only panics in the calling
// goroutine are caught; checkFile keeps bbolt's own goroutines off bad pages.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked reading it: %v", r)
		}
	}()
	return f()
}

// moveAside renames path to a fresh path.corrupt-* name, 0600 whatever
// the damaged file's mode was (it may hold key secrets), and prunes the old
// ones; it returns the new name.
func moveAside(path string) (string, error) {
	aside := asideName(path)
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	if err := os.Chmod(aside, fileMode); err != nil {
		return "", err
	}
	pruneAside(path)
	return aside, nil
}

// asideName is path.corrupt-<unix time>, or path.corrupt-<unix time>-N for
// the first N from 2 that is not taken.
func asideName(path string) string {
	base := path + ".corrupt-" + strconv.FormatInt(time.Now().Unix(), 10)
	name := base
	for n := 2; ; n++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name
		}
		name = base + "-" + strconv.Itoa(n)
	}
}

// pruneAside removes all but the newest keepAside path.corrupt-* files,
// ordered by the time and number in their names. Files of other names are
// left alone; errors are ignored (the next move aside prunes again).
func pruneAside(path string) {
	names, _ := filepath.Glob(path + ".corrupt-*")
	type aside struct {
		name      string
		unix, seq int64
	}
	var found []aside
	for _, n := range names {
		ts, seq, _ := strings.Cut(strings.TrimPrefix(n, path+".corrupt-"), "-")
		a := aside{name: n, seq: 1}
		var err error
		if a.unix, err = strconv.ParseInt(ts, 10, 64); err != nil {
			continue
		}
		if seq != "" {
			if a.seq, err = strconv.ParseInt(seq, 10, 64); err != nil {
				continue
			}
		}
		found = append(found, a)
	}
	slices.SortFunc(found, func(a, b aside) int { return cmp.Or(cmp.Compare(b.unix, a.unix), cmp.Compare(b.seq, a.seq)) })
	for _, a := range found[min(keepAside, len(found)):] {
		os.RemoveAll(a.name)
	}
}

// discardLoader decodes nothing further: verify uses it to decode every
// record without building a table.
type discardLoader struct{}

func (discardLoader) SetClusterID(string)                {}
func (discardLoader) SetTopology(*pb.Topology)           {}
func (discardLoader) PutCell(*pb.Cell) error             { return nil }
func (discardLoader) PutPlacement(string, string) error  { return nil }
func (discardLoader) PutMember(*pb.Member) error         { return nil }
func (discardLoader) PutBreaker(*pb.BreakerStatus) error { return nil }
func (discardLoader) PutHealth(*pb.HealthStatus) error   { return nil }
func (discardLoader) PutKey(*pb.ApiKey) error            { return nil }

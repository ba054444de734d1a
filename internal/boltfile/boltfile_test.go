package boltfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// writeDB makes a real bbolt file with a few hundred transactions, so both
// meta pages have been written and the file spans many pages.
func writeDB(t *testing.T, noFreelistSync bool) (path string, pageSize int, used int64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: noFreelistSync})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put([]byte(fmt.Sprintf("k%05d", i)), make([]byte, 512))
		}); err != nil {
			t.Fatal(err)
		}
	}
	ps := db.Info().PageSize
	db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() < used {
		t.Fatalf("file smaller than its used pages: %v", err)
	}
	return path, ps, used
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string, pageSize int, used int64)
		damaged bool
	}{
		{"intact", func(*testing.T, string, int, int64) {}, false},
		{"missing", func(t *testing.T, path string, _ int, _ int64) { os.Remove(path) }, false},
		{"empty", func(t *testing.T, path string, _ int, _ int64) { os.Truncate(path, 0) }, false},
		// A torn meta write: bbolt falls back to the other meta page, whose
		// transaction is older but complete.
		{"first meta page torn", func(t *testing.T, path string, _ int, _ int64) { scribble(t, path, 20, 64) }, false},
		{"second meta page torn", func(t *testing.T, path string, ps int, _ int64) { scribble(t, path, int64(ps)+20, 64) }, false},
		{"both meta pages garbage", func(t *testing.T, path string, ps int, _ int64) {
			scribble(t, path, 20, 64)
			scribble(t, path, int64(ps)+20, 64)
		}, true},
		{"truncated to three pages", func(t *testing.T, path string, ps int, _ int64) { os.Truncate(path, int64(3*ps)) }, true},
		{"truncated into its last used page", func(t *testing.T, path string, _ int, used int64) { os.Truncate(path, used-1) }, true},
		{"unused tail cut off", func(t *testing.T, path string, _ int, used int64) { os.Truncate(path, used) }, false},
		{"shorter than a meta", func(t *testing.T, path string, _ int, _ int64) { os.Truncate(path, 40) }, true},
	}
	for _, c := range cases {
		for _, nfs := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/no-freelist-sync=%v", c.name, nfs), func(t *testing.T) {
				path, ps, used := writeDB(t, nfs)
				c.damage(t, path, ps, used)
				err := Validate(path)
				if c.damaged != errors.Is(err, ErrDamaged) {
					t.Fatalf("Validate = %v, want damaged=%v", err, c.damaged)
				}
				if c.damaged || c.name == "missing" {
					return
				}
				// What Validate accepts, bbolt opens and reads.
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatalf("bbolt refuses a file Validate accepted: %v", err)
				}
				defer db.Close()
				if err := db.View(func(tx *bolt.Tx) error {
					if b := tx.Bucket([]byte("b")); b != nil {
						return b.ForEach(func(k, v []byte) error { return nil })
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func scribble(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i*7 + 3)
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

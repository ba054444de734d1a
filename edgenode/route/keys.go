package route

import (
	"fmt"
	"maps"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Key is an API key as an edge checks it: immutable, shared between tables.
type Key struct {
	ID      string
	Revoked bool
	// cells the key may reach; nil: every cell.
	cells map[string]struct{}
	// Secrets are the HMAC keys valid now or until their NotAfter, newest first.
	Secrets []Secret
}

// Secret is one HMAC key of an API key.
type Secret struct {
	Value []byte
	// NotAfterUnixMs: refused from this time on; 0: no end.
	NotAfterUnixMs int64
}

// Allows reports whether the key may reach cell.
func (k *Key) Allows(cell string) bool {
	if k.cells == nil {
		return true
	}
	_, ok := k.cells[cell]
	return ok
}

// ValidAt reports whether s may sign a request at nowUnixMs.
func (s Secret) ValidAt(nowUnixMs int64) bool {
	return s.NotAfterUnixMs == 0 || nowUnixMs < s.NotAfterUnixMs
}

func newKey(k *pb.ApiKey) *Key {
	out := &Key{ID: k.GetId(), Revoked: k.GetRevoked()}
	if len(k.GetCells()) > 0 {
		out.cells = make(map[string]struct{}, len(k.GetCells()))
		for _, c := range k.GetCells() {
			out.cells[c] = struct{}{}
		}
	}
	for _, s := range k.GetSecrets() {
		out.Secrets = append(out.Secrets, Secret{Value: []byte(s.GetSecret()), NotAfterUnixMs: s.GetNotAfterUnixMs()})
	}
	return out
}

// Key returns API key id, or nil when the table has no such key.
func (t *Table) Key(id string) *Key { return t.keys[id] }

// KeySource returns the key as received (with secrets), for the cache.
func (t *Table) KeySource(id string) *pb.ApiKey { return t.keySources[id] }

// Keys is how many API keys the table holds, revoked ones included.
func (t *Table) Keys() int { return len(t.keys) }

// PutKey creates or replaces an API key (a revoked key stays, without secrets).
func (b *Builder) PutKey(k *pb.ApiKey) error {
	if k.GetId() == "" {
		return fmt.Errorf("%w: put_key without id", ErrInvalidEvent)
	}
	if !b.ownKeys {
		b.t.keys, b.t.keySources = maps.Clone(b.t.keys), maps.Clone(b.t.keySources)
		if b.t.keys == nil {
			b.t.keys, b.t.keySources = map[string]*Key{}, map[string]*pb.ApiKey{}
		}
		b.ownKeys = true
	}
	b.t.keys[k.GetId()] = newKey(k)
	b.t.keySources[k.GetId()] = k
	return nil
}

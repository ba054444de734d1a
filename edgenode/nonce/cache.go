package nonce

import (
	"sync"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// cache remembers the (key, nonce) pairs this edge got an answer for, each
// until its expiry, at most size of them: when full, the oldest entry is
// forgotten (insertion order is about expiry order: every nonce of a cell
// lives for its timestamp window). Forgetting only costs an RPC, whose
// answer is the same. Looking up allocates nothing.
type cache struct {
	mu   sync.Mutex
	keys map[string]map[string]int64 // key id -> nonce -> expiry, unix ms
	ring []entry                     // the entries in insertion order, oldest at next once full
	next int
	size int
}

type entry struct{ key, nonce string }

func newCache(size int) cache {
	return cache{keys: map[string]map[string]int64{}, size: size}
}

// seen reports whether nonce was answered for key and has not expired at nowMs.
func (c *cache) seen(key string, nonce []byte, nowMs int64) bool {
	c.mu.Lock()
	exp, ok := c.keys[key][string(nonce)]
	c.mu.Unlock()
	return ok && exp > nowMs
}

// addAll remembers the nonces of checks that have not expired at nowMs.
func (c *cache) addAll(checks []*pb.NonceCheck, nowMs int64) {
	if c.size == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range checks {
		if ch.GetExpiresUnixMs() > nowMs {
			c.add(ch.GetKeyId(), ch.GetNonce(), ch.GetExpiresUnixMs())
		}
	}
}

func (c *cache) add(key, nonce string, expires int64) {
	m := c.keys[key]
	if m == nil {
		m = map[string]int64{}
		c.keys[key] = m
	}
	if exp, ok := m[nonce]; ok {
		// Answered twice (two requests raced with it): one entry, the later expiry.
		m[nonce] = max(exp, expires)
		return
	}
	if len(c.ring) < c.size {
		c.ring = append(c.ring, entry{key, nonce})
	} else {
		old := c.ring[c.next]
		if om := c.keys[old.key]; om != nil {
			delete(om, old.nonce)
			if len(om) == 0 && old.key != key {
				delete(c.keys, old.key)
			}
		}
		c.ring[c.next] = entry{key, nonce}
		c.next = (c.next + 1) % c.size
	}
	m[nonce] = expires
}

// len is how many pairs are remembered, for tests.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.keys {
		n += len(m)
	}
	return n
}

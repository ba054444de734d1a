// Package clusterid owns the format of a cluster id: the name of one raft
// history, which coordinators bootstrap into the replicated state and which
// edges and members compare before they trust a revision (revisions are raft
// indexes, so two clusters, or a cluster and its rebuild, reuse them).
package clusterid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// MaxLen bounds a cluster id.
const MaxLen = 64

// New returns a fresh random cluster id (128 bits, hex).
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Validate says what is wrong with id as a cluster id: it must be 1 to
// MaxLen characters of [0-9a-z-].
func Validate(id string) error {
	if id == "" {
		return fmt.Errorf("cluster id is empty")
	}
	if len(id) > MaxLen {
		return fmt.Errorf("cluster id is %d bytes long; at most %d are allowed", len(id), MaxLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return fmt.Errorf("cluster id %q has %q at byte %d; only 0-9, a-z and - are allowed", id, id[i:i+1], i)
		}
	}
	return nil
}

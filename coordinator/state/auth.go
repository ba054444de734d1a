package state

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/btree"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
	"github.com/edgecell/edgecell/internal/policy"
)

// API keys and the nonce store.
//
// Keys are ordinary replicated objects: stamped, published to watchers
// (with their secrets: edges verify signatures), listed without secrets.
// Nonces are not published: a check is answered to its caller only, and
// does not move the revision. Each nonce is kept past its expiry for the
// clock skew allowed (see nonceKeepUntil), then reaped by the leader's Tick.
//
// Only nonces of existing, non-revoked keys are stored: a check naming
// another key is answered "not fresh" and stores nothing, whatever the
// leader's server checked before proposing it (the key may have been
// revoked since).

const (
	// NonceExpiryMargin is the clock skew allowed between any edge and the
	// coordinator that leads when a nonce is stored or reaped. An edge
	// behind by up to this much still accepts a request after its expiry
	// has passed on the leader's clock; one ahead by up to this much may
	// ask for an expiry this much further out.
	NonceExpiryMargin = time.Minute
	// MaxNonceLifetime caps how far past the leader's clock a check's
	// expiry may be. An edge accepts a timestamp up to the cell's window
	// ahead of its clock and asks for the nonce to be kept until the
	// timestamp plus the window, so the furthest expiry an edge within
	// NonceExpiryMargin of the leader asks for is twice the largest
	// window plus the margin; the cap never shortens that one.
	MaxNonceLifetime = 2*policy.MaxTimestampWindow + NonceExpiryMargin
	// MaxReapPerTick bounds the nonces one Tick deletes, so that a tick's
	// apply stays short; the next tick takes the rest.
	MaxReapPerTick = 50_000
	// MaxKeyNameLen bounds a key's name.
	MaxKeyNameLen = 128
	// MaxKeyIDLen bounds the key id a nonce check names (the coordinator
	// draws 18-character ids).
	MaxKeyIDLen = 128
	// MaxCheckIDLen bounds a nonce check's check_id, which is stored with
	// the nonce (an edge's ids are "<edge>/<boot id>/<counter>").
	MaxCheckIDLen = 256
	// MaxRotationGrace bounds how long rotated-out secrets stay valid.
	MaxRotationGrace = 7 * 24 * time.Hour
)

// wholeSecond is the part of a second after an expiry during which an edge
// still accepts the request: it compares timestamps in whole seconds
// (hmacsig.CheckTimestamp), so a request whose window ends at second s,
// the expiry the edge sends, is accepted until s+1.
const wholeSecond = time.Second

// nonceKeepUntil is the expiry stored for a check asking for expires (unix
// ms) on a leader whose clock reads now: expires as the edge asked, at
// least now and at most now+MaxNonceLifetime, plus the second the edge
// still accepts it and NonceExpiryMargin for edges whose clocks run behind
// the leader's. So while any edge within the margin of the leader's clock
// could accept the request, its nonce is stored.
func nonceKeepUntil(expires int64, now time.Time) int64 {
	capped := min(max(expires, now.UnixMilli()), now.Add(MaxNonceLifetime).UnixMilli())
	return capped + (wholeSecond + NonceExpiryMargin).Milliseconds()
}

// nonceEntry is a stored nonce: who stored it, until when.
type nonceEntry struct {
	expires int64 // unix ms, margin included
	checkID string
}

func nonceKey(keyID, nonce string) string { return keyID + "\x00" + nonce }

// expiryKey orders nonces by expiry for reaping: 16 hex digits of the
// expiry, then the nonce key.
func expiryKey(expires int64, nk string) string {
	return fmt.Sprintf("%016x\x00%s", uint64(expires), nk)
}

// expiryOf reads the expiry back from an expiryKey.
func expiryOf(k string) uint64 {
	exp, _ := strconv.ParseUint(k[:16], 16, 64)
	return exp
}

func (tx *txn) createKey(op *pb.CreateKeyOp) ([]*pb.Event, *pb.CommandError) {
	switch {
	case op.GetId() == "":
		return nil, invalid("id", "the key id is required (the coordinator draws it)")
	case op.GetName() == "":
		return nil, invalid("name", "a key needs a name, for operators")
	case len(op.GetName()) > MaxKeyNameLen:
		return nil, invalid("name", "name is %d characters; at most %d", len(op.GetName()), MaxKeyNameLen)
	case op.GetSecret() == "":
		return nil, invalid("secret", "the secret is required (the coordinator draws it)")
	}
	if _, ok := tx.t.keys.Get(op.GetId()); ok {
		return nil, commandError(pb.CommandError_CODE_FAILED_PRECONDITION, "id", "key %q exists", op.GetId())
	}
	seen := map[string]bool{}
	for i, c := range op.GetCells() {
		if _, ok := tx.t.cells.Get(c); !ok {
			return nil, notFound(fmt.Sprintf("cells[%d]", i), "no cell %q", c)
		}
		if seen[c] {
			return nil, invalid(fmt.Sprintf("cells[%d]", i), "cell %q is listed twice", c)
		}
		seen[c] = true
	}
	now := tx.now.UnixMilli()
	k := &pb.ApiKey{
		Id: op.GetId(), Name: op.GetName(), Cells: append([]string(nil), op.GetCells()...),
		Secrets:        []*pb.KeySecret{{Secret: op.GetSecret(), CreatedUnixMs: now}},
		CreatedUnixMs:  now,
		CreateRevision: tx.index, ModRevision: tx.index,
	}
	tx.t.keys.Set(k.GetId(), k)
	return []*pb.Event{{Kind: &pb.Event_PutKey{PutKey: cloneKey(k)}}}, nil
}

func (tx *txn) liveKey(id string) (*pb.ApiKey, *pb.CommandError) {
	if id == "" {
		return nil, invalid("id", "a key id is required")
	}
	k, ok := tx.t.keys.Get(id)
	if !ok {
		return nil, notFound("id", "no key %q", id)
	}
	if k.GetRevoked() {
		return nil, commandError(pb.CommandError_CODE_FAILED_PRECONDITION, "id", "key %q is revoked", id)
	}
	return k, nil
}

func (tx *txn) revokeKey(op *pb.RevokeKeyOp) ([]*pb.Event, *pb.CommandError) {
	k, e := tx.liveKey(op.GetId())
	if e != nil {
		return nil, e
	}
	k = cloneKey(k)
	k.Secrets, k.Revoked, k.RevokedUnixMs, k.ModRevision = nil, true, tx.now.UnixMilli(), tx.index
	tx.t.keys.Set(k.GetId(), k)
	return []*pb.Event{{Kind: &pb.Event_PutKey{PutKey: cloneKey(k)}}}, nil
}

func (tx *txn) rotateKey(op *pb.RotateKeyOp) ([]*pb.Event, *pb.CommandError) {
	k, e := tx.liveKey(op.GetId())
	if e != nil {
		return nil, e
	}
	if op.GetSecret() == "" {
		return nil, invalid("secret", "the new secret is required (the coordinator draws it)")
	}
	grace := time.Duration(op.GetGraceMs()) * time.Millisecond
	if grace > MaxRotationGrace {
		return nil, invalid("grace", "grace %s is over %s", grace, MaxRotationGrace)
	}
	now := tx.now.UnixMilli()
	end := tx.now.Add(grace).UnixMilli()
	k = cloneKey(k)
	secrets := []*pb.KeySecret{{Secret: op.GetSecret(), CreatedUnixMs: now}}
	for _, s := range k.GetSecrets() {
		if s.GetNotAfterUnixMs() != 0 && s.GetNotAfterUnixMs() <= now || grace == 0 {
			continue // already over, or cut at once
		}
		if s.GetNotAfterUnixMs() == 0 || s.GetNotAfterUnixMs() > end {
			s.NotAfterUnixMs = end
		}
		secrets = append(secrets, s)
	}
	k.Secrets, k.ModRevision = secrets, tx.index
	tx.t.keys.Set(k.GetId(), k)
	return []*pb.Event{{Kind: &pb.Event_PutKey{PutKey: cloneKey(k)}}}, nil
}

// ValidateNonceChecks checks the syntax of nonce checks: each names a key id
// of at most MaxKeyIDLen bytes, a nonce the edge would accept
// (hmacsig.ValidNonce: 1 to hmacsig.MaxNonceLen characters of A-Z a-z 0-9
// . _ -) and a check id of at most MaxCheckIDLen bytes. The refusal is
// INVALID_ARGUMENT naming checks[i] and the field. An edge never sends a
// check that fails it, so the leader refuses a whole call that does, and
// apply refuses a whole CheckNoncesOp.
func ValidateNonceChecks(checks []*pb.NonceCheck) *pb.CommandError {
	for i, c := range checks {
		switch {
		case c.GetKeyId() == "":
			return invalid(fmt.Sprintf("checks[%d].key_id", i), "key_id is required")
		case len(c.GetKeyId()) > MaxKeyIDLen:
			return invalid(fmt.Sprintf("checks[%d].key_id", i), "key_id is %d bytes; at most %d", len(c.GetKeyId()), MaxKeyIDLen)
		case c.GetNonce() == "":
			return invalid(fmt.Sprintf("checks[%d].nonce", i), "nonce is required")
		case !hmacsig.ValidNonce([]byte(c.GetNonce())):
			return invalid(fmt.Sprintf("checks[%d].nonce", i), "nonce %q is not a valid %s: want 1 to %d characters of A-Z a-z 0-9 . _ -",
				clipped(c.GetNonce()), hmacsig.HeaderNonce, hmacsig.MaxNonceLen)
		case c.GetCheckId() == "":
			return invalid(fmt.Sprintf("checks[%d].check_id", i), "check_id is required: it makes retries safe")
		case len(c.GetCheckId()) > MaxCheckIDLen:
			return invalid(fmt.Sprintf("checks[%d].check_id", i), "check_id is %d bytes; at most %d", len(c.GetCheckId()), MaxCheckIDLen)
		}
	}
	return nil
}

// clipped shortens a value quoted in a refusal: it came from the caller.
func clipped(v string) string {
	const max = 40
	if len(v) > max {
		return v[:max] + "..."
	}
	return v
}

// checkNonces answers each check in order; it changes no revision and emits
// nothing. A check is refused as a whole only for malformed input
// (ValidateNonceChecks). A check naming an unknown or revoked key is
// answered "not fresh" and stores nothing: the batch holds other edges'
// checks, which must not fail with it.
func (tx *txn) checkNonces(op *pb.CheckNoncesOp) ([]*pb.Event, *pb.CommandError) {
	if e := ValidateNonceChecks(op.GetChecks()); e != nil {
		return nil, e
	}
	tx.fresh = make([]bool, len(op.GetChecks()))
	for i, c := range op.GetChecks() {
		if k, ok := tx.t.keys.Get(c.GetKeyId()); !ok || k.GetRevoked() {
			continue
		}
		nk := nonceKey(c.GetKeyId(), c.GetNonce())
		if cur, ok := tx.t.nonces.Get(nk); ok {
			// Stored before: fresh only for the check that stored it.
			tx.fresh[i] = cur.checkID == c.GetCheckId()
			continue
		}
		exp := nonceKeepUntil(c.GetExpiresUnixMs(), tx.now)
		tx.t.nonces.Set(nk, nonceEntry{expires: exp, checkID: c.GetCheckId()})
		tx.t.nonceExpiry.Set(expiryKey(exp, nk), struct{}{})
		tx.fresh[i] = true
		tx.dirty = true
	}
	return nil, nil
}

// reapNonces deletes up to MaxReapPerTick nonces whose expiry has passed.
func (tx *txn) reapNonces() {
	tx.reapExpired(tx.t.nonceExpiry, func(nk string) { tx.t.nonces.Delete(nk) })
}

// reapExpired deletes, up to MaxReapPerTick, the entries of an expiry
// index whose expiry is at or before tx.now, calling drop with the key
// each indexed.
func (tx *txn) reapExpired(index *btree.Map[string, struct{}], drop func(key string)) {
	now := uint64(tx.now.UnixMilli())
	var due []string
	index.Scan(func(k string, _ struct{}) bool {
		if expiryOf(k) > now || len(due) == MaxReapPerTick {
			return false
		}
		due = append(due, k)
		return true
	})
	for _, k := range due {
		index.Delete(k)
		drop(k[17:])
		tx.dirty = true
	}
}

// nonceDeadline is when the next nonce expires, for NextDeadline.
func (v *version) nonceDeadline() (time.Time, bool) { return earliestExpiry(v.t.nonceExpiry) }

// earliestExpiry is the first expiry of an expiry index.
func earliestExpiry(index *btree.Map[string, struct{}]) (time.Time, bool) {
	k, _, ok := index.Min()
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(expiryOf(k))), true
}

// The reads below let the leader admit nonce checks before it proposes
// them, all from one revision.

// Nonces is how many nonces are stored.
func (v View) Nonces() int { return v.t.nonces.Len() }

// KeyNonces is how many nonces are stored for the key keyID. It is derived
// from the nonce index itself (a counted B-tree ordered by key id first),
// so it cannot drift from it through apply, reaping or a snapshot restore;
// it costs O(log² n) for n nonces stored.
func (v View) KeyNonces(keyID string) int { return v.t.keyNonces(keyID) }

// NonceStored reports whether (keyID, nonce) is stored.
func (v View) NonceStored(keyID, nonce string) bool {
	_, ok := v.t.nonces.Get(nonceKey(keyID, nonce))
	return ok
}

// KeyStatus reports whether the key id exists and whether it is revoked.
func (v View) KeyStatus(id string) (exists, revoked bool) {
	k, ok := v.t.keys.Get(id)
	return ok, ok && k.GetRevoked()
}

// keyNonces counts the nonce keys keyID+"\x00"+nonce: the distance between
// the ranks of keyID+"\x00" and keyID+"\x01". A key id of a stored nonce
// has no NUL (ids are drawn by the coordinator), so no other key's nonces
// fall in between.
func (t tables) keyNonces(keyID string) int {
	return rank(t.nonces, keyID+"\x01") - rank(t.nonces, keyID+"\x00")
}

// rank is the number of keys of m below k, by binary search over GetAt
// (which the counted nodes answer in O(log n)).
func rank[V any](m *btree.Map[string, V], k string) int {
	lo, hi := 0, m.Len()
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if key, _, _ := m.GetAt(mid); key < k {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Keys returns every API key, by id, with secrets; the caller owns them.
func (v View) Keys() []*pb.ApiKey { return v.keys() }

func (v *version) keys() []*pb.ApiKey {
	var out []*pb.ApiKey
	v.t.keys.Scan(func(_ string, k *pb.ApiKey) bool {
		out = append(out, cloneKey(k))
		return true
	})
	return out
}

// nonceRecords lists the stored nonces for a raft snapshot.
func (v *version) nonceRecords() []*pb.NonceRecord {
	out := make([]*pb.NonceRecord, 0, v.t.nonces.Len())
	v.t.nonces.Scan(func(nk string, e nonceEntry) bool {
		keyID, nonce, _ := strings.Cut(nk, "\x00")
		out = append(out, &pb.NonceRecord{KeyId: keyID, Nonce: nonce, ExpiresUnixMs: e.expires, CheckId: e.checkID})
		return true
	})
	return out
}

// restoreAuth loads keys and nonces from a snapshot into t.
func (t tables) restoreAuth(keys []*pb.ApiKey, nonces []*pb.NonceRecord, rev uint64) error {
	for i, k := range keys {
		if k.GetId() == "" {
			return fmt.Errorf("%w: keys[%d].id is empty", ErrInvalidSnapshot, i)
		}
		if err := checkStamps(fmt.Sprintf("keys[%d]", i), k.GetCreateRevision(), k.GetModRevision(), rev); err != nil {
			return err
		}
		if _, dup := t.keys.Get(k.GetId()); dup {
			return fmt.Errorf("%w: keys[%d].id: duplicate key %q", ErrInvalidSnapshot, i, k.GetId())
		}
		t.keys.Set(k.GetId(), cloneKey(k))
	}
	for i, n := range nonces {
		if n.GetKeyId() == "" || n.GetNonce() == "" {
			return fmt.Errorf("%w: nonces[%d]: key_id and nonce are required", ErrInvalidSnapshot, i)
		}
		nk := nonceKey(n.GetKeyId(), n.GetNonce())
		t.nonces.Set(nk, nonceEntry{expires: n.GetExpiresUnixMs(), checkID: n.GetCheckId()})
		t.nonceExpiry.Set(expiryKey(n.GetExpiresUnixMs(), nk), struct{}{})
	}
	return nil
}

func cloneKey(k *pb.ApiKey) *pb.ApiKey {
	out := &pb.ApiKey{
		Id: k.GetId(), Name: k.GetName(), Revoked: k.GetRevoked(),
		CreatedUnixMs: k.GetCreatedUnixMs(), RevokedUnixMs: k.GetRevokedUnixMs(),
		CreateRevision: k.GetCreateRevision(), ModRevision: k.GetModRevision(),
	}
	if len(k.GetCells()) > 0 {
		out.Cells = append([]string(nil), k.GetCells()...)
	}
	for _, s := range k.GetSecrets() {
		out.Secrets = append(out.Secrets, &pb.KeySecret{Secret: s.GetSecret(), CreatedUnixMs: s.GetCreatedUnixMs(), NotAfterUnixMs: s.GetNotAfterUnixMs()})
	}
	return out
}

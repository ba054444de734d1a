package state

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
	"github.com/edgecell/edgecell/internal/policy"
)

func createKeyCmd(id, name, secret string, cells ...string) *pb.Command {
	return &pb.Command{Op: &pb.Command_CreateKey{CreateKey: &pb.CreateKeyOp{Id: id, Name: name, Secret: secret, Cells: cells}}}
}

func revokeKeyCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_RevokeKey{RevokeKey: &pb.RevokeKeyOp{Id: id}}}
}

func rotateKeyCmd(id, secret string, grace time.Duration) *pb.Command {
	return &pb.Command{Op: &pb.Command_RotateKey{RotateKey: &pb.RotateKeyOp{Id: id, Secret: secret, GraceMs: uint32(grace.Milliseconds())}}}
}

func nonceCmd(checks ...*pb.NonceCheck) *pb.Command {
	return &pb.Command{Op: &pb.Command_CheckNonces{CheckNonces: &pb.CheckNoncesOp{Checks: checks}}}
}

func check(key, nonce, id string, expires time.Duration) *pb.NonceCheck {
	return &pb.NonceCheck{KeyId: key, Nonce: nonce, CheckId: id, ExpiresUnixMs: t0.Add(expires).UnixMilli()}
}

// withKeys returns a store holding baseConfig (revision 1) and the keys
// ids, created at revisions 2, 3, ...: the next free index is 2+len(ids).
func withKeys(t testing.TB, ids ...string) *Store {
	t.Helper()
	s := New()
	mustChange(t, s, 1, applyConfigCmd(baseConfig()))
	for i, id := range ids {
		mustChange(t, s, uint64(2+i), at(0, createKeyCmd(id, "key "+id, "secret-"+id)))
	}
	return s
}

func keyOf(t *testing.T, s *Store, id string) *pb.ApiKey {
	t.Helper()
	keys := s.Freeze().Keys()
	for _, k := range keys {
		if k.GetId() == id {
			return k
		}
	}
	t.Fatalf("no key %q", id)
	return nil
}

func TestKeyLifecycle(t *testing.T) {
	s := New()
	mustChange(t, s, 1, applyConfigCmd(baseConfig()))
	ch := mustChange(t, s, 2, at(0, createKeyCmd("k_1", "billing", "s1", "c1")))
	want := &pb.ApiKey{Id: "k_1", Name: "billing", Cells: []string{"c1"}, CreatedUnixMs: t0.UnixMilli(),
		Secrets: []*pb.KeySecret{{Secret: "s1", CreatedUnixMs: t0.UnixMilli()}}, CreateRevision: 2, ModRevision: 2}
	if got := ch.GetEvents()[0].GetPutKey(); !proto.Equal(got, want) {
		t.Fatalf("create event %v, want %v", got, want)
	}

	// Rotation with a grace period: the new secret first, the old one until
	// the grace ends; a second rotation keeps that end.
	mustChange(t, s, 3, at(time.Minute, rotateKeyCmd("k_1", "s2", time.Hour)))
	end := t0.Add(time.Minute + time.Hour).UnixMilli()
	if got := keyOf(t, s, "k_1").GetSecrets(); len(got) != 2 || got[0].GetSecret() != "s2" || got[0].GetNotAfterUnixMs() != 0 ||
		got[1].GetSecret() != "s1" || got[1].GetNotAfterUnixMs() != end {
		t.Fatalf("after rotation: %v", got)
	}
	mustChange(t, s, 4, at(2*time.Minute, rotateKeyCmd("k_1", "s3", 2*time.Hour)))
	if got := keyOf(t, s, "k_1").GetSecrets(); len(got) != 3 || got[0].GetSecret() != "s3" ||
		got[1].GetNotAfterUnixMs() != t0.Add(2*time.Minute+2*time.Hour).UnixMilli() || got[2].GetNotAfterUnixMs() != end {
		t.Fatalf("after a second rotation: %v", got)
	}
	// Without grace the old secrets stop at once.
	mustChange(t, s, 5, at(3*time.Minute, rotateKeyCmd("k_1", "s4", 0)))
	if got := keyOf(t, s, "k_1").GetSecrets(); len(got) != 1 || got[0].GetSecret() != "s4" {
		t.Fatalf("after a rotation without grace: %v", got)
	}

	ch = mustChange(t, s, 6, at(4*time.Minute, revokeKeyCmd("k_1")))
	k := ch.GetEvents()[0].GetPutKey()
	if !k.GetRevoked() || len(k.GetSecrets()) != 0 || k.GetRevokedUnixMs() != t0.Add(4*time.Minute).UnixMilli() || k.GetModRevision() != 6 {
		t.Fatalf("revoke event %v", k)
	}
	if !proto.Equal(keyOf(t, s, "k_1"), k) {
		t.Fatal("the store and the event disagree on the revoked key")
	}
}

func TestKeyRefusals(t *testing.T) {
	s := New()
	mustChange(t, s, 1, applyConfigCmd(baseConfig()))
	mustChange(t, s, 2, at(0, createKeyCmd("k_1", "a", "s1")))
	mustChange(t, s, 3, at(0, createKeyCmd("k_2", "b", "s2")))
	mustChange(t, s, 4, at(0, revokeKeyCmd("k_2")))
	inv, nf, fp := pb.CommandError_CODE_INVALID_ARGUMENT, pb.CommandError_CODE_NOT_FOUND, pb.CommandError_CODE_FAILED_PRECONDITION
	long := string(make([]byte, MaxKeyNameLen+1))
	for _, tc := range []struct {
		name  string
		cmd   *pb.Command
		code  pb.CommandError_Code
		field string
	}{
		{"no name", createKeyCmd("k_3", "", "s"), inv, "name"},
		{"long name", createKeyCmd("k_3", long, "s"), inv, "name"},
		{"no secret", createKeyCmd("k_3", "n", ""), inv, "secret"},
		{"unknown cell", createKeyCmd("k_3", "n", "s", "c1", "nope"), nf, "cells[1]"},
		{"cell twice", createKeyCmd("k_3", "n", "s", "c1", "c1"), inv, "cells[1]"},
		{"existing id", createKeyCmd("k_1", "n", "s"), fp, "id"},
		{"revoke unknown", revokeKeyCmd("k_9"), nf, "id"},
		{"revoke twice", revokeKeyCmd("k_2"), fp, "id"},
		{"rotate revoked", rotateKeyCmd("k_2", "s", 0), fp, "id"},
		{"rotate without secret", rotateKeyCmd("k_1", "", 0), inv, "secret"},
		{"rotate with a long grace", rotateKeyCmd("k_1", "s", MaxRotationGrace+time.Second), inv, "grace"},
		{"nonce without check id", nonceCmd(check("k_1", "n", "", time.Minute)), inv, "checks[0].check_id"},
		{"nonce without nonce", nonceCmd(check("k_1", "n", "c", time.Minute), check("k_1", "", "c2", time.Minute)), inv, "checks[1].nonce"},
		{"nonce without key", nonceCmd(check("", "n", "c", time.Minute)), inv, "checks[0].key_id"},
		{"nonce with a space", nonceCmd(check("k_1", "n 1", "c", time.Minute)), inv, "checks[0].nonce"},
		{"nonce with a NUL", nonceCmd(check("k_1", "n\x00x", "c", time.Minute)), inv, "checks[0].nonce"},
		{"nonce too long", nonceCmd(check("k_1", strings.Repeat("n", hmacsig.MaxNonceLen+1), "c", time.Minute)), inv, "checks[0].nonce"},
		{"key id too long", nonceCmd(check(strings.Repeat("k", MaxKeyIDLen+1), "n", "c", time.Minute)), inv, "checks[0].key_id"},
		{"check id too long", nonceCmd(check("k_1", "n", strings.Repeat("c", MaxCheckIDLen+1), time.Minute)), inv, "checks[0].check_id"},
	} {
		t.Run(tc.name, func(t *testing.T) { mustRefuse(t, s, 5, at(0, tc.cmd), tc.code, tc.field) })
	}
	if s.Freeze().Nonces() != 0 {
		t.Fatal("a refused nonce batch stored nonces")
	}
}

// A nonce is fresh exactly once per (key, nonce), and for every retry of
// the check that stored it; checks move no revision and emit nothing.
func TestNonceCheckAndStore(t *testing.T) {
	s := withKeys(t, "k_1", "k_2")
	res := mustQuiet(t, s, 4, at(0, nonceCmd(
		check("k_1", "n1", "e1/1", 5*time.Minute),
		check("k_1", "n1", "e2/1", 5*time.Minute), // same nonce, other check: a replay
		check("k_2", "n1", "e1/2", 5*time.Minute), // same nonce, other key: fresh
	)))
	if want := []bool{true, false, true}; !slices.Equal(res.GetFresh(), want) {
		t.Fatalf("fresh %v, want %v", res.GetFresh(), want)
	}
	res = mustQuiet(t, s, 5, at(time.Second, nonceCmd(
		check("k_1", "n1", "e1/1", 5*time.Minute), // the first check retried: same answer
		check("k_1", "n1", "e3/1", 5*time.Minute),
		check("k_2", "n1", "e1/2", 5*time.Minute),
	)))
	if want := []bool{true, false, true}; !slices.Equal(res.GetFresh(), want) {
		t.Fatalf("retries: fresh %v, want %v", res.GetFresh(), want)
	}
	if s.Freeze().Nonces() != 2 {
		t.Fatalf("%d nonces stored, want 2", s.Freeze().Nonces())
	}

	// Kept through the expiry's second plus the margin, then reaped by a tick.
	d, ok := s.Freeze().NextDeadline()
	if want := t0.Add(5*time.Minute + time.Second + NonceExpiryMargin); !ok || !d.Equal(want) {
		t.Fatalf("next deadline %v %v, want %v", d, ok, want)
	}
	mustQuiet(t, s, 6, at(5*time.Minute+NonceExpiryMargin, tickCmd()))
	if s.Freeze().Nonces() != 2 {
		t.Fatal("reaped before the margin passed")
	}
	mustQuiet(t, s, 7, at(5*time.Minute+time.Second+NonceExpiryMargin, tickCmd()))
	if s.Freeze().Nonces() != 0 {
		t.Fatalf("%d nonces left after their expiry", s.Freeze().Nonces())
	}
	if _, ok := s.Freeze().NextDeadline(); ok {
		t.Fatal("a deadline with nothing left to reap")
	}
}

// An expiry far in the future is capped; one in the past is kept for the margin.
func TestNonceExpiryBounds(t *testing.T) {
	s := withKeys(t, "k")
	mustQuiet(t, s, 4, at(0, nonceCmd(check("k", "far", "1", 48*time.Hour), check("k", "past", "2", -time.Hour))))
	keep := time.Second + NonceExpiryMargin
	if got := s.Freeze().nonceRecords(); len(got) != 2 ||
		got[0].GetExpiresUnixMs() != t0.Add(MaxNonceLifetime+keep).UnixMilli() ||
		got[1].GetExpiresUnixMs() != t0.Add(keep).UnixMilli() {
		t.Fatalf("records %v", got)
	}
}

// Keys and nonces survive a snapshot, and the restored store answers alike.
func TestSnapshotCarriesKeysAndNonces(t *testing.T) {
	s := New()
	mustChange(t, s, 1, applyConfigCmd(baseConfig()))
	mustChange(t, s, 2, at(0, createKeyCmd("k_1", "a", "s1", "c2")))
	mustQuiet(t, s, 3, at(0, nonceCmd(check("k_1", "n1", "e1/1", time.Minute))))
	snap, err := s.Freeze().Snapshot(3)
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(keyOf(t, r, "k_1"), keyOf(t, s, "k_1")) {
		t.Fatal("key changed through the snapshot")
	}
	res := mustQuiet(t, r, 4, at(time.Second, nonceCmd(check("k_1", "n1", "e1/1", time.Minute), check("k_1", "n1", "e2/1", time.Minute))))
	if want := []bool{true, false}; !slices.Equal(res.GetFresh(), want) {
		t.Fatalf("after restore: fresh %v, want %v", res.GetFresh(), want)
	}
	if d, _ := r.Freeze().NextDeadline(); !d.Equal(t0.Add(time.Minute + time.Second + NonceExpiryMargin)) {
		t.Fatalf("restored deadline %v", d)
	}
}

func TestAuthPolicyValidation(t *testing.T) {
	hmac, jwt := pb.AuthMode_AUTH_MODE_HMAC, pb.AuthMode_AUTH_MODE_JWT
	okJWT := &pb.JwtPolicy{Issuer: "https://id.example", Audience: "api", JwksUrl: "https://id.example/jwks.json"}
	for _, tc := range []struct {
		name  string
		auth  *pb.AuthPolicy
		field string // "" for valid
	}{
		{"hmac defaults", &pb.AuthPolicy{Mode: hmac}, ""},
		{"jwt", &pb.AuthPolicy{Mode: jwt, Jwt: okJWT}, ""},
		{"unknown mode", &pb.AuthPolicy{Mode: 9}, "cells[0].auth.mode"},
		{"long window", &pb.AuthPolicy{Mode: hmac, TimestampWindowS: 3601}, "cells[0].auth.timestamp_window_s"},
		{"huge body", &pb.AuthPolicy{Mode: hmac, MaxBodyBytes: 64<<20 + 1}, "cells[0].auth.max_body_bytes"},
		{"jwt without policy", &pb.AuthPolicy{Mode: jwt}, "cells[0].auth.jwt.issuer"},
		{"jwt without audience", &pb.AuthPolicy{Mode: jwt, Jwt: &pb.JwtPolicy{Issuer: "i", JwksUrl: "https://x/j"}}, "cells[0].auth.jwt.audience"},
		{"relative jwks url", &pb.AuthPolicy{Mode: jwt, Jwt: &pb.JwtPolicy{Issuer: "i", Audience: "a", JwksUrl: "/jwks"}}, "cells[0].auth.jwt.jwks_url"},
		{"jwt policy under hmac", &pb.AuthPolicy{Mode: hmac, Jwt: okJWT}, "cells[0].auth.jwt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Cells[0].Auth = tc.auth
			s := New()
			if tc.field == "" {
				mustChange(t, s, 1, applyConfigCmd(cfg))
				return
			}
			mustRefuse(t, s, 1, applyConfigCmd(cfg), pb.CommandError_CODE_INVALID_ARGUMENT, tc.field)
		})
	}
}

// BenchmarkCheckNonces is the apply cost of one nonce check inside a batch
// of 256, on a store already holding a million nonces.
func BenchmarkCheckNonces(b *testing.B) {
	s := New()
	s.Apply(1, at(0, createKeyCmd("k_0123456789abcdef", "bench", "s")))
	idx := uint64(2)
	batch := func(from int) *pb.Command {
		op := &pb.CheckNoncesOp{}
		for i := from; i < from+256; i++ {
			op.Checks = append(op.Checks, &pb.NonceCheck{KeyId: "k_0123456789abcdef", Nonce: fmt.Sprintf("nonce-%012d", i), CheckId: fmt.Sprintf("edge-1/boot/%d", i), ExpiresUnixMs: t0.Add(5 * time.Minute).UnixMilli()})
		}
		return at(0, &pb.Command{Op: &pb.Command_CheckNonces{CheckNonces: op}})
	}
	n := 0
	for n < 1_000_000 {
		s.Apply(idx, batch(n))
		idx++
		n += 256
	}
	cmds := make([]*pb.Command, b.N/256+1)
	for i := range cmds {
		cmds[i] = batch(n + i*256)
	}
	b.ResetTimer()
	for i := range cmds {
		s.Apply(idx, cmds[i])
		idx++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(cmds)*256), "ns/check")
}

// A nonce is kept while any edge whose clock is within NonceExpiryMargin of
// the leader's would still accept its request, with the largest window
// (3,600 s) and a request stamped as far ahead as an edge accepts: the edge
// asks for the nonce until the stamp plus the window, two windows away.
// The old cap, an hour past the leader's clock plus the margin, reaped such
// a nonce an hour early, and any nonce a second early for an edge behind by
// the margin. Replays are sent to every edge that would accept them.
func TestNonceOutlivesEveryEdgeThatAcceptsItsRequest(t *testing.T) {
	const window = policy.MaxTimestampWindow
	margin := NonceExpiryMargin
	offsets := []time.Duration{-margin, 0, margin} // edges' clocks, relative to the leader's
	accepts := func(ts int64, leader time.Time, offset time.Duration) bool {
		return hmacsig.CheckTimestamp(ts, leader.Add(offset), window) == nil
	}
	for _, tc := range []struct {
		name    string
		checker time.Duration // clock of the edge that checks first, relative to the leader's
		ahead   time.Duration // how far ahead of that edge's clock the request is stamped
	}{
		{"stamped a window ahead by an edge ahead by the margin", margin, window},
		{"stamped a window ahead", 0, window},
		{"stamped now", 0, 0},
		{"stamped a window behind by an edge behind by the margin", -margin, -window},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := withKeys(t, "k_1")
			idx := uint64(3)
			next := func() uint64 { idx++; return idx }
			ts := t0.Add(tc.checker + tc.ahead).Unix()
			if !accepts(ts, t0, tc.checker) {
				t.Fatalf("the first edge refuses the timestamp %d at %v", ts, t0)
			}
			expires := (ts + int64(window/time.Second)) * 1000 // what edgenode/proxy asks for
			first := &pb.NonceCheck{KeyId: "k_1", Nonce: "n1", CheckId: "edge-a/1", ExpiresUnixMs: expires}
			if res := mustQuiet(t, s, next(), at(0, nonceCmd(first))); !res.GetFresh()[0] {
				t.Fatal("the first use was not fresh")
			}
			// The last instant any edge accepts the request: an edge behind by
			// the margin reads its clock in whole seconds.
			last := time.Unix(ts+int64(window/time.Second)+1, 0).Add(margin - time.Millisecond)
			oldReap := t0.Add(time.Hour + margin)
			for _, when := range []time.Time{oldReap, time.UnixMilli(expires), last} {
				if when.Before(t0) || when.After(last) {
					continue
				}
				mustQuiet(t, s, next(), at(when.Sub(t0), tickCmd()))
				replayed := 0
				for i, o := range offsets {
					if !accepts(ts, when, o) {
						continue
					}
					replayed++
					replay := &pb.NonceCheck{KeyId: "k_1", Nonce: "n1", CheckId: fmt.Sprintf("edge-%d/1", i), ExpiresUnixMs: expires}
					if res := mustQuiet(t, s, next(), at(when.Sub(t0), nonceCmd(replay))); res.GetFresh()[0] {
						t.Fatalf("replayed %v after the first use (%v after the old reap time) to an edge %v off the leader's clock: fresh",
							when.Sub(t0), when.Sub(oldReap), o)
					}
				}
				if when.Equal(last) && replayed == 0 {
					t.Fatal("no edge accepts the request at the last instant: the test checks nothing there")
				}
			}
			// Once no edge accepts the request, the nonce goes (but never
			// before the margin past its check: the edge may be behind).
			after := last.Add(time.Millisecond)
			for _, o := range offsets {
				if accepts(ts, after, o) {
					t.Fatalf("an edge %v off still accepts the request %v after the first use", o, after.Sub(t0))
				}
			}
			after = later(after, t0.Add(time.Second+margin))
			mustQuiet(t, s, next(), at(after.Sub(t0), tickCmd()))
			if s.Freeze().Nonces() != 0 {
				t.Fatalf("%d nonces kept after every edge stopped accepting the request", s.Freeze().Nonces())
			}
		})
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Only existing, non-revoked keys store nonces; a check naming another key
// is answered "not fresh" without failing the other checks of its batch.
func TestNonceChecksNeedALiveKey(t *testing.T) {
	s := withKeys(t, "k_1", "k_2", "k_3")
	mustChange(t, s, 5, at(0, revokeKeyCmd("k_2")))
	res := mustQuiet(t, s, 6, at(0, nonceCmd(
		check("k_9", "n1", "e/1", time.Minute), // unknown
		check("k_2", "n1", "e/2", time.Minute), // revoked
		check("k_1", "n1", "e/3", time.Minute),
		check("k_3", "n1", "e/4", time.Minute),
	)))
	if want := []bool{false, false, true, true}; !slices.Equal(res.GetFresh(), want) {
		t.Fatalf("fresh %v, want %v", res.GetFresh(), want)
	}
	if s.Freeze().Nonces() != 2 || s.Freeze().KeyNonces("k_9") != 0 || s.Freeze().KeyNonces("k_2") != 0 {
		t.Fatalf("stored %d nonces (k_9: %d, k_2: %d); want only those of k_1 and k_3", s.Freeze().Nonces(), s.Freeze().KeyNonces("k_9"), s.Freeze().KeyNonces("k_2"))
	}
	// Revoked after its nonce was stored: neither a retry of the check that
	// stored it nor a new nonce is fresh.
	mustChange(t, s, 7, at(time.Second, revokeKeyCmd("k_1")))
	res = mustQuiet(t, s, 8, at(time.Second, nonceCmd(check("k_1", "n1", "e/3", time.Minute), check("k_1", "n2", "e/5", time.Minute))))
	if want := []bool{false, false}; !slices.Equal(res.GetFresh(), want) {
		t.Fatalf("after the revocation: fresh %v, want %v", res.GetFresh(), want)
	}
	if s.Freeze().KeyNonces("k_1") != 1 {
		t.Fatalf("k_1 holds %d nonces after its revocation, want the 1 it had", s.Freeze().KeyNonces("k_1"))
	}
}

// KeyNonces follows what is stored through checks, reaping and a snapshot
// restore, and a key id that prefixes another counts only its own.
func TestKeyNoncesFollowsTheStore(t *testing.T) {
	s := withKeys(t, "k_1", "k_10", "k_2")
	var checks []*pb.NonceCheck
	for i := range 3 {
		checks = append(checks, check("k_1", fmt.Sprintf("a%d", i), fmt.Sprintf("e/1/%d", i), time.Minute))
	}
	checks = append(checks, check("k_10", "a0", "e/10/0", 2*time.Minute), check("k_10", "a1", "e/10/1", 2*time.Minute),
		check("k_2", "a0", "e/2/0", time.Minute), check("k_1", "a0", "e/again", time.Minute)) // the last one is a replay
	mustQuiet(t, s, 5, at(0, nonceCmd(checks...)))
	restored := func() *Store {
		snap, err := s.Freeze().Snapshot(s.Freeze().Revision())
		if err != nil {
			t.Fatal(err)
		}
		r, err := FromSnapshot(snap)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	want := func(stage string, st *Store, counts map[string]int) {
		t.Helper()
		total := 0
		for id, n := range counts {
			total += n
			if got := st.Freeze().KeyNonces(id); got != n {
				t.Errorf("%s: key %q holds %d nonces, want %d", stage, id, got, n)
			}
			if got := st.Freeze().KeyNonces(id); got != n {
				t.Errorf("%s: frozen: key %q holds %d nonces, want %d", stage, id, got, n)
			}
		}
		if st.Freeze().Nonces() != total {
			t.Errorf("%s: %d nonces in all, want %d", stage, st.Freeze().Nonces(), total)
		}
	}
	want("after the checks", s, map[string]int{"k_1": 3, "k_10": 2, "k_2": 1, "k_": 0, "k_9": 0})
	want("restored", restored(), map[string]int{"k_1": 3, "k_10": 2, "k_2": 1, "k_": 0})
	mustQuiet(t, s, 6, at(time.Minute+time.Second+NonceExpiryMargin, tickCmd()))
	want("after the first expiry", s, map[string]int{"k_1": 0, "k_10": 2, "k_2": 0})
	want("restored after the first expiry", restored(), map[string]int{"k_1": 0, "k_10": 2, "k_2": 0})
}

// BenchmarkKeyNonces is the cost of counting one key's nonces among 2,000,000
// stored for 1,000 keys.
func BenchmarkKeyNonces(b *testing.B) {
	s := New()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("k_%016x", i)
		s.Apply(uint64(i+1), at(0, createKeyCmd(ids[i], "bench", "s")))
	}
	idx := uint64(len(ids))
	for n := 0; n < 2_000_000; n += 4096 {
		op := &pb.CheckNoncesOp{}
		for i := n; i < n+4096; i++ {
			op.Checks = append(op.Checks, &pb.NonceCheck{KeyId: ids[i%len(ids)], Nonce: fmt.Sprintf("nonce-%012d", i), CheckId: fmt.Sprintf("e/%d", i), ExpiresUnixMs: t0.Add(5 * time.Minute).UnixMilli()})
		}
		idx++
		s.Apply(idx, at(0, &pb.Command{Op: &pb.Command_CheckNonces{CheckNonces: op}}))
	}
	f := s.Freeze()
	b.ResetTimer()
	for i := range b.N {
		if f.KeyNonces(ids[i%len(ids)]) == 0 {
			b.Fatal("no nonces counted")
		}
	}
}

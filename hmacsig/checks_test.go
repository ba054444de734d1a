package hmacsig

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestValidNonce(t *testing.T) {
	tests := []struct {
		name  string
		nonce string
		want  bool
	}{
		{"empty", "", false},
		{"one character", "a", true},
		{"128 characters", strings.Repeat("x", 128), true},
		{"129 characters", strings.Repeat("x", 129), false},
		{"every allowed character", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", true},
		{"NewNonce", NewNonce(), true},
		{"space", "ab cd", false},
		{"slash", "ab/cd", false},
		{"plus (standard base64)", "ab+cd", false},
		{"padding", "abcd==", false},
		{"tilde", "ab~cd", false},
		{"newline", "ab\ncd", false},
		{"NUL", "ab\x00", false},
		{"non-ASCII", "abé", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidNonce([]byte(tt.nonce)); got != tt.want {
				t.Errorf("ValidNonce(%q) = %v, want %v", tt.nonce, got, tt.want)
			}
		})
	}
}

func TestNewNonceIsFreshAndURLSafe(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n := NewNonce()
		if len(n) != 22 || !ValidNonce([]byte(n)) {
			t.Fatalf("NewNonce() = %q: want 22 characters of the nonce alphabet", n)
		}
		if seen[n] {
			t.Fatalf("NewNonce() returned %q twice", n)
		}
		seen[n] = true
	}
}

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr error
	}{
		{"1700000000", 1700000000, nil},
		{"0", 0, nil},
		{"9223372036854775807", math.MaxInt64, nil},
		{"", 0, ErrMissingHeader},
		{"9223372036854775808", 0, ErrBadTimestamp},
		{"99999999999999999999", 0, ErrBadTimestamp},
		{"01700000000", 0, ErrBadTimestamp},
		{"-1700000000", 0, ErrBadTimestamp},
		{"+1700000000", 0, ErrBadTimestamp},
		{" 1700000000", 0, ErrBadTimestamp},
		{"1700000000.5", 0, ErrBadTimestamp},
		{"1700000000000", 1700000000000, nil}, // milliseconds parse, then fail the window
		{"1e9", 0, ErrBadTimestamp},
		{"0x65", 0, ErrBadTimestamp},
		{"2023-11-14T22:13:20Z", 0, ErrBadTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTimestamp([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("ParseTimestamp(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), HeaderTimestamp+": ") {
				t.Errorf("error %q does not name %s", err, HeaderTimestamp)
			}
			if got != tt.want {
				t.Errorf("ParseTimestamp(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckTimestamp(t *testing.T) {
	now := time.Unix(1700000000, 900e6) // .9 s: the window counts whole seconds
	const n = 1700000000
	tests := []struct {
		name    string
		ts      int64
		window  time.Duration
		wantErr string // "" = accepted
	}{
		{"now", n, 0, ""},
		{"default window, oldest accepted", n - 300, 0, ""},
		{"default window, one second too old", n - 301, 0, "301s behind the verifier's clock (window 5m0s)"},
		{"default window, furthest ahead accepted", n + 300, 0, ""},
		{"default window, one second too far ahead", n + 301, 0, "301s ahead of the verifier's clock (window 5m0s)"},
		{"negative window is the default", n - 300, -time.Second, ""},
		{"custom window, past", n - 31, 30 * time.Second, "31s behind"},
		{"custom window, future", n + 31, 30 * time.Second, "31s ahead"},
		{"custom window, edge", n + 30, 30 * time.Second, ""},
		{"milliseconds by mistake", n * 1000, 0, "ahead"},
		{"zero", 0, 0, "behind"},
		{"far future", math.MaxInt64, 0, "ahead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTimestamp(tt.ts, now, tt.window)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckTimestamp(%d) = %v, want accepted", tt.ts, err)
				}
				return
			}
			if !errors.Is(err, ErrStaleTimestamp) || !strings.Contains(err.Error(), tt.wantErr) ||
				!strings.HasPrefix(err.Error(), HeaderTimestamp+": ") {
				t.Fatalf("CheckTimestamp(%d) = %v, want ErrStaleTimestamp naming %s and saying %q", tt.ts, err, HeaderTimestamp, tt.wantErr)
			}
		})
	}
}

// TestCheckRefusals checks that Check refuses each broken header with the
// sentinel and the header's name, in the documented order.
func TestCheckRefusals(t *testing.T) {
	v := vectors[0]
	secret := []byte(v.secret)
	now := time.Unix(v.ts, 0)
	tests := []struct {
		name    string
		change  func(r *Request)
		wantErr error
		header  string
		detail  string
	}{
		{"no key id", func(r *Request) { r.KeyID = nil }, ErrMissingHeader, HeaderKeyID, ""},
		{"no timestamp", func(r *Request) { r.Timestamp = nil }, ErrMissingHeader, HeaderTimestamp, ""},
		{"no nonce", func(r *Request) { r.Nonce = []byte{} }, ErrMissingHeader, HeaderNonce, ""},
		{"no signature", func(r *Request) { r.Signature = nil }, ErrMissingHeader, HeaderSignature, ""},
		{"malformed timestamp", func(r *Request) { r.Timestamp = []byte("17e8") }, ErrBadTimestamp, HeaderTimestamp, `"17e8"`},
		{"stale timestamp", func(r *Request) { r.Timestamp = []byte(strconv.FormatInt(v.ts-301, 10)) }, ErrStaleTimestamp, HeaderTimestamp, "301s behind"},
		{"stale before bad signature", func(r *Request) {
			r.Timestamp = []byte(strconv.FormatInt(v.ts+301, 10))
			r.Signature = []byte(strings.Repeat("0", SignatureLen))
		}, ErrStaleTimestamp, HeaderTimestamp, "301s ahead"},
		{"nonce with a bad character", func(r *Request) { r.Nonce = []byte("a/b") }, ErrBadNonce, HeaderNonce, `"a/b"`},
		{"nonce too long", func(r *Request) { r.Nonce = []byte(strings.Repeat("a", 129)) }, ErrBadNonce, HeaderNonce, "129 characters, at most 128"},
		{"short signature", func(r *Request) { r.Signature = []byte("abc") }, ErrBadSignature, HeaderSignature, "want 64 lowercase hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := v.verifierRequest(v.want)
			tt.change(r)
			err := NewVerifier().Check(r, secret, now, 0)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.header+": ") || !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("Check = %q, want it to name %s and say %q", err, tt.header, tt.detail)
			}
		})
	}
}

// TestCheckDoesNotAllocate guards the edge's hot path: a verified request
// costs no garbage.
func TestCheckDoesNotAllocate(t *testing.T) {
	v := vectors[0]
	r := v.verifierRequest(v.want)
	secret := []byte(v.secret)
	now := time.Unix(v.ts, 0)
	ver := NewVerifier()
	allocs := testing.AllocsPerRun(100, func() {
		if err := ver.Check(r, secret, now, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %.1f times per request, want 0", allocs)
	}
}

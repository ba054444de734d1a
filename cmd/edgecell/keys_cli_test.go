package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// An operator creates a key, a client signs with it through an edge, the
// operator rotates and revokes it (waiting for the receipt), and the edge
// refuses it from then on.
func TestKeyVerbsAndSignedRequestsAgainstARealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
		cfg := devcluster.SampleConfig(bs)
		cfg.Cells[1].Auth = &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC} // cell-2: tenant-2, acme
		return cfg
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	addr := c.CoordinatorAddrs()[2]

	created := devCLI(t, c, addr, "", "key", "create", "--name", "billing", "--cells", "cell-2")
	id := regexp.MustCompile(`key id: (k_[0-9a-f]{16})`).FindStringSubmatch(created.out)
	secret := regexp.MustCompile(`secret: (sk_\S+)`).FindStringSubmatch(created.out)
	if created.code != 0 || id == nil || secret == nil {
		t.Fatalf("key create: %+v", created)
	}
	list := devCLI(t, c, addr, "", "key", "list")
	if list.code != 0 || !strings.Contains(lineWith(list.out, id[1]), "billing") || strings.Contains(list.out, secret[1]) {
		t.Fatalf("key list should show the key and no secret:\n%+v", list)
	}

	// The key's create revision may not have reached the edge yet: poll.
	send := func(secret string) result {
		return cli(t, "", "", "request", "--key-id", id[1], "--secret", secret, "--routing-key", "acme", "-i", c.EdgeURL("eu-west")+"/orders")
	}
	var r result
	testutil.Poll(t, "a signed request served through the edge", func() bool {
		r = send(secret[1])
		return strings.Contains(r.out, " 200 ")
	})
	if r.code != 0 || !strings.Contains(r.out, `"endpoint"`) {
		t.Fatalf("signed request through the edge: %+v", r)
	}

	rotated := devCLI(t, c, addr, "", "key", "rotate", id[1], "--grace", "1h")
	newSecret := regexp.MustCompile(`secret: (sk_\S+)`).FindStringSubmatch(rotated.out)
	if rotated.code != 0 || newSecret == nil || newSecret[1] == secret[1] || !strings.Contains(rotated.out, "previous secret stays valid") {
		t.Fatalf("key rotate: %+v", rotated)
	}

	revoked := devCLI(t, c, addr, "", "key", "revoke", id[1], "--wait")
	if revoked.code != 0 || !strings.Contains(revoked.out, "every connected edge refuses it") {
		t.Fatalf("key revoke --wait: %+v", revoked)
	}
	// The receipt is in: no edge may accept the key any more, old or new secret.
	for _, s := range []string{secret[1], newSecret[1]} {
		if r := send(s); !strings.Contains(r.out, " 401 ") || !strings.Contains(r.out, "key revoked") {
			t.Fatalf("after revoke --wait: %+v", r)
		}
	}
	if again := devCLI(t, c, addr, "", "key", "revoke", id[1]); again.code != 1 || !strings.Contains(again.err, "revoked") {
		t.Fatalf("revoking twice: %+v", again)
	}
	if bad := devCLI(t, c, addr, "", "key", "create", "--name", "x", "--cells", "no-such-cell"); bad.code != 1 || !strings.Contains(bad.err, "no-such-cell") {
		t.Fatalf("a key for an unknown cell: %+v", bad)
	}
}

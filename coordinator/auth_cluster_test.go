package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func nonceCheck(key, nonce, checkID string) *pb.NonceCheck {
	return &pb.NonceCheck{KeyId: key, Nonce: nonce, CheckId: checkID, ExpiresUnixMs: time.Now().Add(5 * time.Minute).UnixMilli()}
}

// 50 edges, spread over the three members, race one nonce: exactly one is
// told fresh, and a retry of its check is told fresh again.
func TestNonceRaceAcrossMembersHasOneWinner(t *testing.T) {
	tc := newCluster(t, 3)
	tc.waitRegistered()
	ctx := ctxT(t)
	key := tc.createKey()
	names := []string{}
	for name := range tc.members {
		names = append(names, name)
	}
	var (
		wg      sync.WaitGroup
		winners atomic.Int32
		winner  atomic.Value
	)
	for i := range 50 {
		wg.Go(func() {
			id := fmt.Sprintf("edge-%d/1", i)
			resp, err := tc.edge(names[i%len(names)], fmt.Sprintf("edge-%d", i), "us-east").CheckNonces(ctx, &pb.CheckNoncesRequest{
				Edge: fmt.Sprintf("edge-%d", i), Checks: []*pb.NonceCheck{nonceCheck(key, "the-nonce", id)},
			})
			if err != nil {
				t.Errorf("edge %d: %v", i, err)
				return
			}
			if resp.GetFresh()[0] {
				winners.Add(1)
				winner.Store(id)
			}
		})
	}
	wg.Wait()
	if n := winners.Load(); n != 1 {
		t.Fatalf("%d of 50 racing checks were told fresh, want exactly 1", n)
	}
	id := winner.Load().(string)
	edge0 := tc.edge(names[0], "edge-0", "us-east")
	resp, err := edge0.CheckNonces(ctx, &pb.CheckNoncesRequest{Edge: "edge-0", Checks: []*pb.NonceCheck{nonceCheck(key, "the-nonce", id)}})
	if err != nil || !resp.GetFresh()[0] {
		t.Fatalf("the winning check retried: %v %v; want fresh again", resp, err)
	}
	if _, err := edge0.CheckNonces(ctx, &pb.CheckNoncesRequest{Edge: "edge-0", Checks: []*pb.NonceCheck{{KeyId: key, Nonce: "n"}}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "check_id") {
		t.Fatalf("a check without check_id: %v", err)
	}
}

// Checks keep coming while the leader is killed. Every check is retried
// with its own id until it gets an answer; the history must show at most
// one check per nonce ever told fresh, and every answer to one check the same.
func TestNonceHistoryThroughLeaderFailover(t *testing.T) {
	tc := newCluster(t, 3)
	tc.waitRegistered()
	ctx := ctxT(t)
	key := tc.createKey()
	const workers, perWorker, nonces = 12, 60, 200
	type answer struct {
		checkID string
		fresh   bool
	}
	var (
		mu      sync.Mutex
		history = map[string][]answer{} // nonce -> answers
		done    atomic.Int32
	)
	leader := tc.waitLeader()
	var survivors []pb.EdgeServiceClient
	for name := range tc.members {
		if name != leader {
			survivors = append(survivors, tc.edge(name, "edge-1", "us-east"))
		}
	}
	quarter := make(chan struct{})
	var quarterOnce sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				nonce := fmt.Sprintf("n-%d", (w*perWorker+i*7)%nonces)
				id := fmt.Sprintf("w%d/%d", w, i)
				for attempt := 0; ; attempt++ {
					// Workers talk to the surviving members only, so that the
					// kill interrupts forwarded checks, not the client's own link.
					member := survivors[(w+attempt)%len(survivors)]
					cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					resp, err := member.CheckNonces(cctx, &pb.CheckNoncesRequest{Edge: "edge-1", Checks: []*pb.NonceCheck{nonceCheck(key, nonce, id)}})
					cancel()
					if err == nil {
						mu.Lock()
						history[nonce] = append(history[nonce], answer{id, resp.GetFresh()[0]})
						mu.Unlock()
						break
					}
					if ctx.Err() != nil {
						t.Errorf("gave up on %s: %v", id, err)
						return
					}
				}
				if done.Add(1) == workers*perWorker/4 {
					quarterOnce.Do(func() { close(quarter) })
				}
			}
		})
	}
	// Kill the leader once the burst is under way.
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	select {
	case <-quarter:
		tc.stop(leader)
	case <-allDone:
		t.Fatal("the workers ended before a quarter of the checks were answered")
	}
	<-allDone

	accepted := 0
	for nonce, answers := range history {
		freshBy := map[string]bool{}
		for _, a := range answers {
			if a.fresh {
				freshBy[a.checkID] = true
			}
		}
		if len(freshBy) > 1 {
			t.Errorf("nonce %s accepted by %d different checks: %v", nonce, len(freshBy), freshBy)
		}
		accepted += len(freshBy)
	}
	if accepted != len(history) {
		t.Errorf("%d of %d nonces were accepted by nobody, though every check got an answer", len(history)-accepted, len(history))
	}
}

func TestKeyAdminRPCs(t *testing.T) {
	tc := newCluster(t, 3)
	tc.waitRegistered()
	ctx := ctxT(t)
	if _, err := tc.admin(tc.follower()).ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		t.Fatal(err)
	}
	cell := sampleConfig().GetCells()[0].GetId()
	admin := tc.admin(tc.follower())
	created, err := admin.CreateKey(ctx, &pb.CreateKeyRequest{Name: "billing", Cells: []string{cell}})
	if err != nil {
		t.Fatal(err)
	}
	k := created.GetKey()
	if !strings.HasPrefix(k.GetId(), "k_") || len(k.GetSecrets()) != 1 || !strings.HasPrefix(k.GetSecrets()[0].GetSecret(), "sk_") || k.GetCreateRevision() != created.GetRevision() {
		t.Fatalf("created %v", created)
	}
	list, err := admin.ListKeys(ctx, &pb.ListKeysRequest{})
	if err != nil || len(list.GetKeys()) != 1 || list.GetKeys()[0].GetSecrets() != 1 || list.GetKeys()[0].GetName() != "billing" {
		t.Fatalf("list %v %v", list, err)
	}
	if strings.Contains(list.String(), k.GetSecrets()[0].GetSecret()) {
		t.Fatal("ListKeys shows a secret")
	}
	rot, err := admin.RotateKey(ctx, &pb.RotateKeyRequest{Id: k.GetId(), GraceSeconds: 60})
	if err != nil || len(rot.GetKey().GetSecrets()) != 2 || rot.GetKey().GetSecrets()[1].GetSecret() != k.GetSecrets()[0].GetSecret() {
		t.Fatalf("rotate %v %v", rot, err)
	}
	if _, err := admin.RevokeKey(ctx, &pb.RevokeKeyRequest{Id: k.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeKey(ctx, &pb.RevokeKeyRequest{Id: k.GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := admin.CreateKey(ctx, &pb.CreateKeyRequest{Name: "x", Cells: []string{"no-such-cell"}}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "no-such-cell") {
		t.Fatalf("a key for an unknown cell: %v", err)
	}
	if _, err := admin.CreateKey(ctx, &pb.CreateKeyRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a key without a name: %v", err)
	}
}

// createKey creates an API key (nonce checks are taken only for keys that
// exist) and returns its id.
func (tc *testCluster) createKey() string {
	tc.t.Helper()
	resp, err := tc.admin(tc.waitLeader()).CreateKey(ctxT(tc.t), &pb.CreateKeyRequest{Name: "test"})
	if err != nil {
		tc.t.Fatalf("create key: %v", err)
	}
	return resp.GetKey().GetId()
}

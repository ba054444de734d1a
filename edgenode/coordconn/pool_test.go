package coordconn

import (
	"errors"
	"sync"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc/connectivity"
)

// One connection per address, shared by every caller; a member the table
// stops listing loses its connection, unless the watch follows it.
func TestConnectionsAreSharedAndFollowTheMembers(t *testing.T) {
	var mu sync.Mutex
	members := []*pb.Member{{Name: "n1", GrpcAddr: "a:1"}, {Name: "n2", GrpcAddr: "b:1"}, {Name: "n3", GrpcAddr: "c:1"}}
	p := New(Config{Edge: "e", Region: "r", Seeds: []string{"seed:1"}, Members: func() []*pb.Member {
		mu.Lock()
		defer mu.Unlock()
		return members
	}})
	t.Cleanup(p.Close)
	if got := len(p.Candidates()); got != 4 {
		t.Fatalf("%d candidates, want 3 members and the seed", got)
	}
	ca, err := p.Conn("a:1")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := p.Conn("a:1"); again != ca {
		t.Fatal("a second Conn for the same address made another connection")
	}
	cb, _ := p.Conn("b:1")
	cs, _ := p.Conn("seed:1")
	p.Follow("b:1")
	mu.Lock()
	members = []*pb.Member{{Name: "n3", GrpcAddr: "c:1"}}
	mu.Unlock()
	if got := len(p.Candidates()); got != 2 {
		t.Fatalf("%d candidates after the change, want c:1 and the seed", got)
	}
	if ca.GetState() != connectivity.Shutdown {
		t.Fatalf("connection to a:1, no longer a member: %v, want closed", ca.GetState())
	}
	if cb.GetState() == connectivity.Shutdown || cs.GetState() == connectivity.Shutdown {
		t.Fatal("closed the followed member's or a seed's connection")
	}
	p.Follow("c:1") // the watch moved on: b:1's connection goes too
	if cb.GetState() != connectivity.Shutdown {
		t.Fatalf("connection to b:1, no longer a member nor followed: %v, want closed", cb.GetState())
	}
	cc, _ := p.Conn("c:1")
	p.Close()
	if cc.GetState() != connectivity.Shutdown {
		t.Fatal("Close left a connection open")
	}
	if _, err := p.Conn("c:1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Conn after Close: %v, want ErrClosed", err)
	}
}

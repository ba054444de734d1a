package nonce

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgecell/edgecell/edgenode/coordconn"
	"github.com/edgecell/edgecell/edgenode/internal/edgetest"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkCheck measures Check from many goroutines against coordinators
// on loopback (plaintext), each check a fresh nonce, 16 goroutines per
// CPU:
//   - leader: one coordinator, which answers.
//   - first-dead: the first address listed refuses connections.
//   - followers-first: three members, the two listed first relay every call
//     to the third over gRPC, as followers forward to the leader; the
//     figure shows whether the client finds the member that answers itself.
func BenchmarkCheck(b *testing.B) {
	b.Run("leader", func(b *testing.B) {
		co := startCoordinator(b, newStore())
		benchCheck(b, coords(b, co.addr))
	})
	b.Run("first-dead", func(b *testing.B) {
		co := startCoordinator(b, newStore())
		benchCheck(b, coords(b, edgetest.ClosedAddr(b), co.addr))
	})
	b.Run("followers-first", func(b *testing.B) {
		leader := startCoordinator(b, newStore())
		f1, f2 := startRelay(b, leader), startRelay(b, leader)
		benchCheck(b, coords(b, f1.addr, f2.addr, leader.addr))
	})
}

func benchCheck(b *testing.B, cs *coordconn.Pool) {
	c := newClient(b, Config{Coordinators: cs, Timeout: 10 * time.Second})
	exp := time.Now().Add(time.Hour).UnixMilli()
	var seq atomic.Uint64
	b.SetParallelism(16) // 16 per CPU: enough waiting checks to fill batches
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			buf = strconv.AppendUint(buf[:0], seq.Add(1), 10)
			if fresh, err := c.Check("k_1", buf, exp); err != nil || !fresh {
				b.Errorf("Check = %v, %v", fresh, err)
				return
			}
		}
	})
}

// startRelay starts a coordinator whose CheckNonces relays to leader over
// gRPC, the way a follower forwards.
func startRelay(b *testing.B, leader *coordinator) *coordinator {
	cc, err := grpc.NewClient("passthrough:///"+leader.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	up := pb.NewEdgeServiceClient(cc)
	r := startCoordinator(b, nil)
	r.setHandler(func(ctx context.Context, req *pb.CheckNoncesRequest) (*pb.CheckNoncesResponse, error) {
		return up.CheckNonces(ctx, req)
	})
	return r
}

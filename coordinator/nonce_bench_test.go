package coordinator_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/edgecell/edgecell/coordinator"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// BenchmarkNonceCheckAndStore measures durable nonce check-and-stores on a
// three-member loopback cluster: clients making concurrent calls of
// per-call checks each (1: no batching by the caller, the worst case; 32: an
// edge batching its concurrent requests), sent to the leader or to
// followers (which relay them). Every check is committed through raft
// (fsync on a quorum) before its answer. Reports checks/s and the p50/p99
// latency of one call.
//
// tls=on is the deployed setup (mutual TLS on every connection); tls=off
// runs the same cluster in plaintext, for what TLS costs.
func BenchmarkNonceCheckAndStore(b *testing.B) {
	for _, tlsOn := range []bool{true, false} {
		mode := map[bool]string{true: "on", false: "off"}[tlsOn]
		for _, via := range []string{"leader", "followers"} {
			for _, clients := range []int{1, 64, 256} {
				b.Run(fmt.Sprintf("tls=%s/via=%s/clients=%d/per-call=1", mode, via, clients), func(b *testing.B) { benchNonces(b, tlsOn, via, clients, 1) })
			}
			// Edges batch the checks of their concurrent requests into one call.
			for _, clients := range []int{4, 8, 12, 24} {
				b.Run(fmt.Sprintf("tls=%s/via=%s/clients=%d/per-call=32", mode, via, clients), func(b *testing.B) { benchNonces(b, tlsOn, via, clients, 32) })
			}
		}
	}
}

func benchNonces(b *testing.B, tlsOn bool, via string, clients, perCall int) {
	tc := startCluster(b, 3, coordinator.RaftTuning{}, nil, !tlsOn)
	tc.waitRegistered()
	leader := tc.waitLeader()
	key := tc.createKey()
	var targets []pb.EdgeServiceClient
	for name := range tc.members {
		if (via == "leader") == (name == leader) {
			targets = append(targets, tc.edge(name, "bench", "us-east"))
		}
	}
	ctx := context.Background()
	hist := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	var mu sync.Mutex
	var next, fresh atomic.Int64
	expires := time.Now().Add(5 * time.Minute).UnixMilli()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			local := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
			target := targets[c%len(targets)]
			for {
				last := next.Add(int64(perCall))
				first := last - int64(perCall) + 1
				if first > int64(b.N) {
					break
				}
				req := &pb.CheckNoncesRequest{Edge: "bench"}
				for i := first; i <= min(last, int64(b.N)); i++ {
					req.Checks = append(req.Checks, &pb.NonceCheck{
						KeyId: key, Nonce: fmt.Sprintf("n%d", i), CheckId: fmt.Sprintf("c%d", i), ExpiresUnixMs: expires,
					})
				}
				t0 := time.Now()
				resp, err := target.CheckNonces(ctx, req)
				if err != nil {
					b.Error(err)
					return
				}
				local.RecordValue(time.Since(t0).Microseconds())
				for _, f := range resp.GetFresh() {
					if f {
						fresh.Add(1)
					}
				}
			}
			mu.Lock()
			hist.Merge(local)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if fresh.Load() != int64(b.N) {
		b.Fatalf("%d of %d distinct nonces were fresh", fresh.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "checks/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(hist.ValueAtQuantile(99))/1000, "p99-ms")
}

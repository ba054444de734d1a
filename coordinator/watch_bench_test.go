package coordinator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// BenchmarkCommitToWatchers measures, on a three-member loopback cluster with
// 100 watch streams spread over all members (as edges would be), the time from
// a write's start until every watcher has received its revision. Reported as
// p50/p99 microseconds.
func BenchmarkCommitToWatchers(b *testing.B) {
	const watchers = 100
	tc := newCluster(b, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader := tc.waitLeader()
	admin := tc.admin(leader)
	if _, err := admin.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		b.Fatal(err)
	}
	names := []string{}
	for name := range tc.members {
		names = append(names, name)
	}
	// Each watcher reports every revision it received on its own channel.
	got := make([]chan uint64, watchers)
	var ready sync.WaitGroup
	for i := range watchers {
		got[i] = make(chan uint64, 1024)
		conn, err := grpc.NewClient(tc.members[names[i%len(names)]].GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		stream, err := pb.NewEdgeServiceClient(conn).Watch(ctx, &pb.WatchRequest{Edge: fmt.Sprintf("w%d", i), Region: "us-east"})
		if err != nil {
			b.Fatal(err)
		}
		ready.Add(1)
		go func(ch chan<- uint64) {
			first := true
			for {
				msg, err := stream.Recv()
				if err != nil {
					return
				}
				if first {
					ready.Done()
					first = false
				}
				for _, c := range msg.GetChanges().GetChanges() {
					ch <- c.GetRevision()
				}
			}
		}(got[i])
	}
	ready.Wait()
	hist := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := admin.PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: fmt.Sprintf("k%d", i), Cell: "cell-a"}})
		if err != nil {
			b.Fatal(err)
		}
		for _, ch := range got {
			for rev := range ch {
				if rev >= res.GetRevision() {
					break
				}
			}
		}
		hist.RecordValue(time.Since(start).Microseconds())
	}
	b.StopTimer()
	b.ReportMetric(float64(hist.ValueAtQuantile(50)), "p50-us")
	b.ReportMetric(float64(hist.ValueAtQuantile(99)), "p99-us")
}

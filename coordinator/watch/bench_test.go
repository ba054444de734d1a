package watch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// BenchmarkPublishFanout measures, with 100 watchers, the time from Publish
// to the moment every watcher's send has the change (marshalled, as gRPC
// would): the in-process part of "commit to every watcher, p99 <= 5 ms".
// One change is in flight at a time; the latency percentiles are reported
// as p50-us, p99-us and max-us.
func BenchmarkPublishFanout(b *testing.B) {
	const watchers = 100
	f := &fakeStore{}
	h := NewHub(Options{ProgressInterval: time.Hour}, f.snapshot, 1)
	var pending atomic.Int64
	allReceived := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(watchers)
	for i := 0; i < watchers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opened := false
			_ = h.Serve(ctx, &pb.WatchRequest{FromRevision: 1}, func(m *pb.WatchResponse, _ []byte) error {
				if _, err := proto.Marshal(m); err != nil {
					return err
				}
				if !opened { // the opening progress
					opened = true
					started.Done()
					return nil
				}
				if pending.Add(-int64(len(m.GetChanges().GetChanges()))) == 0 {
					allReceived <- struct{}{}
				}
				return nil
			})
		}()
	}
	started.Wait()
	hist := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	change := func(rev uint64) *pb.Change {
		return &pb.Change{Revision: rev, Events: []*pb.Event{{Kind: &pb.Event_PutPlacement{PutPlacement: &pb.Placement{
			Key: "tenant-000042", Cell: "cell-07", CreateRevision: 2, ModRevision: rev,
		}}}}}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rev := uint64(i + 2)
		ch := change(rev)
		pending.Store(watchers)
		start := time.Now()
		h.Publish(ch)
		<-allReceived
		if err := hist.RecordValue(time.Since(start).Microseconds()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	b.ReportMetric(float64(hist.ValueAtQuantile(50)), "p50-us")
	b.ReportMetric(float64(hist.ValueAtQuantile(99)), "p99-us")
	b.ReportMetric(float64(hist.Max()), "max-us")
}

// BenchmarkPublish is the cost the FSM pays per change (no watcher attached).
func BenchmarkPublish(b *testing.B) {
	f := &fakeStore{}
	h := NewHub(Options{ProgressInterval: time.Hour}, f.snapshot, 0)
	changes := make([]*pb.Change, b.N)
	for i := range changes {
		changes[i] = &pb.Change{Revision: uint64(i + 1)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, ch := range changes {
		h.Publish(ch)
	}
}

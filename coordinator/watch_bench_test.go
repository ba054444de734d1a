package coordinator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/edgecell/edgecell/coordinator"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// BenchmarkCommitToWatchers measures, on a three-member loopback cluster with
// 100 watch streams spread over all members (as edges would be), how long it
// takes every watcher to receive a write's revision. Two figures: from the
// write's start (includes raft commit, i.e. two fsyncs) and from its commit
// (the moment the leader acknowledged it, or the first watcher saw it if
// earlier). Reported as p50/p99 microseconds.
func BenchmarkCommitToWatchers(b *testing.B) {
	// The commit timeout bounds how late followers learn the commit index
	// when no further entries flow, hence how late their watchers hear.
	for _, ct := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond} {
		name := "commit-timeout=default"
		if ct != 0 {
			name = "commit-timeout=" + ct.String()
		}
		b.Run(name+"/spread", func(b *testing.B) { benchCommitToWatchers(b, ct, false) })
	}
	// All watchers on the leader: no wait for followers to learn the commit
	// index, so what remains is the fan-out itself.
	b.Run("commit-timeout=default/leader-only", func(b *testing.B) { benchCommitToWatchers(b, 0, true) })
}

func benchCommitToWatchers(b *testing.B, commitTimeout time.Duration, leaderOnly bool) {
	const watchers = 100
	tc := newTunedCluster(b, 3, coordinator.RaftTuning{CommitTimeout: commitTimeout})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader := tc.waitLeader()
	admin := tc.admin(leader)
	if _, err := admin.ApplyConfig(ctx, &pb.ApplyConfigRequest{Config: sampleConfig()}); err != nil {
		b.Fatal(err)
	}
	names := []string{}
	for name := range tc.members {
		if !leaderOnly || name == leader {
			names = append(names, name)
		}
	}
	// Each watcher reports every revision it received, and when, on its own channel.
	type seen struct {
		rev uint64
		at  time.Time
	}
	got := make([]chan seen, watchers)
	var ready sync.WaitGroup
	for i := range watchers {
		got[i] = make(chan seen, 1024)
		stream, err := tc.edge(names[i%len(names)], fmt.Sprintf("w%d", i), "us-east").Watch(ctx, &pb.WatchRequest{Edge: fmt.Sprintf("w%d", i), Region: "us-east"})
		if err != nil {
			b.Fatal(err)
		}
		ready.Add(1)
		go func(ch chan<- seen) {
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
				now := time.Now()
				for _, c := range msg.GetChanges().GetChanges() {
					ch <- seen{c.GetRevision(), now}
				}
			}
		}(got[i])
	}
	ready.Wait()
	fromStart := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	fromCommit := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := admin.PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: fmt.Sprintf("k%d", i), Cell: "cell-a"}})
		if err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		var first, last time.Time
		for _, ch := range got {
			for w := range ch {
				if w.rev < res.GetRevision() {
					continue
				}
				if first.IsZero() || w.at.Before(first) {
					first = w.at
				}
				if w.at.After(last) {
					last = w.at
				}
				break
			}
		}
		if first.Before(committed) {
			committed = first
		}
		fromStart.RecordValue(last.Sub(start).Microseconds())
		fromCommit.RecordValue(max(last.Sub(committed).Microseconds(), 1))
	}
	b.StopTimer()
	b.ReportMetric(float64(fromStart.ValueAtQuantile(50)), "write-p50-us")
	b.ReportMetric(float64(fromStart.ValueAtQuantile(99)), "write-p99-us")
	b.ReportMetric(float64(fromCommit.ValueAtQuantile(50)), "commit-p50-us")
	b.ReportMetric(float64(fromCommit.ValueAtQuantile(99)), "commit-p99-us")
}

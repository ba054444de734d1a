package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/testutil"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// BenchmarkRestartCatchUp100k measures, with real coordinator processes
// holding 100,000 placements, how long a SIGKILLed follower takes from its
// restart to serving gRPC and to having applied everything the leader had
// committed while it was down (500 more writes, which the leader also
// snapshots past, so the follower may need a snapshot). The "wiped" case is
// a member that lost its data dir: removed, started empty, joined again,
// caught up by InstallSnapshot.
//
//	go test -run '^$' -bench RestartCatchUp100k -benchtime 3x ./cmd/edgecell
func BenchmarkRestartCatchUp100k(b *testing.B) { benchRestarts(b, 100_000) }

// BenchmarkRestartCatchUp1M is BenchmarkRestartCatchUp100k with a million
// placements: the snapshots, and the InstallSnapshot of the wiped case,
// carry about 40 MB.
//
//	go test -run '^$' -bench RestartCatchUp1M -benchtime 1x -timeout 30m ./cmd/edgecell
func BenchmarkRestartCatchUp1M(b *testing.B) { benchRestarts(b, 1_000_000) }

func benchRestarts(b *testing.B, placements int) {
	for _, wiped := range []bool{false, true} {
		name := "kept-data"
		if wiped {
			name = "wiped"
		}
		b.Run(name, func(b *testing.B) { benchRestart(b, wiped, placements) })
	}
}

func benchRestart(b *testing.B, wiped bool, placements int) {
	bin := buildBinary(b)
	c := newCrashCluster(b, bin, "n1", "n2", "n3")
	var cfg strings.Builder
	cfg.WriteString("regions: [{name: us-east}]\ncells:\n  - {id: cell-1, endpoints: [{id: a, url: \"http://127.0.0.1:1\", region: us-east}]}\nplacements:\n")
	for i := range placements {
		fmt.Fprintf(&cfg, "  - {key: tenant-%07d, cell: cell-1}\n", i)
	}
	if out, err := cliRun(bin, c.members[0].grpc, cfg.String(), "--timeout", "5m", "apply", "-f", "-"); err != nil {
		b.Fatalf("apply -f of %d placements: %v %s", placements, err, out)
	}
	c.waitHealthy("loaded")
	var toServe, toCatchUp time.Duration
	for i := range b.N {
		l := c.leader()
		var victim *crashMember
		for _, m := range c.members {
			if m != l {
				victim = m
			}
		}
		victim.kill(b)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for j := range 500 {
			if _, err := c.admins[l.name].PutPlacement(ctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: fmt.Sprintf("more-%d-%d", i, j), Cell: "cell-1"}}); err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		st, err := c.status(l.name)
		if err != nil {
			b.Fatal(err)
		}
		target := st.GetRevision()
		if wiped {
			testutil.Eventually(b, 30*time.Second, func() error {
				_, err := cliRun(bin, l.grpc, "", "cluster", "remove", victim.name)
				return err
			})
			if err := os.RemoveAll(victim.data); err != nil {
				b.Fatal(err)
			}
			victim.args = append([]string{"coordinator", "--name", victim.name, "--region", "us-east", "--data-dir", victim.data,
				"--grpc-addr", victim.grpc, "--raft-addr", victim.raft}, raftArgs...)
		}
		begin := time.Now()
		c.start(victim)
		served := false
		if wiped {
			testutil.Eventually(b, time.Minute, func() error {
				_, err := cliRun(bin, l.grpc, "", "cluster", "join", "--name", victim.name, "--region", "us-east",
					"--raft-addr", victim.raft, "--grpc-addr", victim.grpc)
				return err
			})
		}
		testutil.Eventually(b, 5*time.Minute, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			resp, err := c.admins[victim.name].GetPlacement(ctx, &pb.GetPlacementRequest{Key: "tenant-0000000", Consistency: pb.Consistency_CONSISTENCY_STALE})
			if err != nil {
				return err
			}
			if !served {
				served = true
				toServe += time.Since(begin)
			}
			if resp.GetRevision() < target {
				return fmt.Errorf("%s at revision %d, leader at %d", victim.name, resp.GetRevision(), target)
			}
			return nil
		})
		toCatchUp += time.Since(begin)
	}
	b.ReportMetric(float64(toServe.Milliseconds())/float64(b.N), "ms-to-serve")
	b.ReportMetric(float64(toCatchUp.Milliseconds())/float64(b.N), "ms-to-catch-up")
	b.ReportMetric(0, "ns/op")
	if fi, err := os.Stat(filepath.Join(c.members[0].data, "raft.db")); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "raft.db-MiB")
	}
}

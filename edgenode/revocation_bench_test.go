package edgenode_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
)

// BenchmarkRevocationToEveryEdge measures, on a dev cluster (three
// coordinators, three edges, loopback), the time from calling RevokeKey to
// every edge serving a table in which the key is revoked, so that each one
// refuses it. Reports p50, p99 and max in milliseconds.
func BenchmarkRevocationToEveryEdge(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	admin, err := c.Admin(leader)
	if err != nil {
		b.Fatal(err)
	}
	edges := c.Edges()
	var samples []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		created, err := admin.CreateKey(ctx, &pb.CreateKeyRequest{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		id := created.GetKey().GetId()
		if err := c.WaitEdges(ctx, created.GetRevision()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := admin.RevokeKey(ctx, &pb.RevokeKeyRequest{Id: id}); err != nil {
			b.Fatal(err)
		}
		// Spin on the edges' tables: the figure is the edges', not a poll interval's.
		for _, e := range edges {
			for !e.KeyRevoked(id) {
				if ctx.Err() != nil {
					b.Fatal("revocation never reached every edge")
				}
			}
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportQuantiles(b, samples)
}

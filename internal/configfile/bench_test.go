package configfile

import (
	"bytes"
	"fmt"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// bigConfig has n placements over two cells: the size an operator applies when
// the placement table is large.
func bigConfig(n int) *pb.RoutingConfig {
	cfg := &pb.RoutingConfig{
		Regions: []*pb.Region{{Name: "us-east"}, {Name: "eu-west"}},
		Cells: []*pb.Cell{
			{Id: "a", Endpoints: []*pb.Endpoint{{Id: "a1", Url: "http://10.0.0.1:8080", Region: "us-east"}}},
			{Id: "b", Endpoints: []*pb.Endpoint{{Id: "b1", Url: "http://10.0.0.2:8080", Region: "eu-west"}}},
		},
		DefaultCell: "a",
	}
	for i := range n {
		cfg.Placements = append(cfg.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%07d", i), Cell: cfg.Cells[i%2].Id})
	}
	return cfg
}

func BenchmarkLoad10kPlacements(b *testing.B) {
	doc, err := Marshal(bigConfig(10_000))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(bytes.NewReader(doc)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal10kPlacements(b *testing.B) {
	cfg := bigConfig(10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

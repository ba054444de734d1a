package devcluster

import (
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Regions are the dev cluster's regions, in member order: coordinator n1, edge 1
// and backends 1-2 are in the first, and so on.
func Regions() []string { return []string{"us-east", "eu-west", "ap-south"} }

// BackendsPerRegion is how many demo backends each region gets.
const BackendsPerRegion = 2

// SampleConfig is the routing config the dev cluster applies, built around the
// demo backends (two per region, ids "<region>-1" and "<region>-2"):
//
//   - cell-1 has an endpoint in every region (<region>-1), and ap-south-2 with
//     three times the weight of ap-south-1, so every edge serves it locally;
//   - cell-2 has us-east-2 (weight 2) and eu-west-2 only, so the ap-south edge
//     sends its keys to eu-west, the nearest region that has one;
//   - tenant-1 and tenant-3 are placed on cell-1, tenant-2 and acme on cell-2,
//     and every other key goes to the default cell, cell-1.
//
// The latency matrix holds realistic one-way delays between the regions.
// Backends whose id is not found are left out of the cells.
func SampleConfig(backends []Backend) *pb.RoutingConfig {
	url := make(map[string]string, len(backends))
	for _, b := range backends {
		url[b.ID] = b.URL
	}
	endpoint := func(id, region string, weight uint32) *pb.Endpoint {
		return &pb.Endpoint{Id: id, Url: url[id], Region: region, Weight: weight}
	}
	cell := func(id string, eps ...*pb.Endpoint) *pb.Cell {
		c := &pb.Cell{Id: id}
		for _, ep := range eps {
			if ep.GetUrl() != "" {
				c.Endpoints = append(c.Endpoints, ep)
			}
		}
		return c
	}
	cfg := &pb.RoutingConfig{
		Latencies: []*pb.Latency{
			{From: "us-east", To: "eu-west", OneWayMs: 38, JitterMs: 2},
			{From: "us-east", To: "ap-south", OneWayMs: 95, JitterMs: 5},
			{From: "eu-west", To: "ap-south", OneWayMs: 60, JitterMs: 4},
		},
		Cells: []*pb.Cell{
			cell("cell-1",
				endpoint("us-east-1", "us-east", 0),
				endpoint("eu-west-1", "eu-west", 0),
				endpoint("ap-south-1", "ap-south", 1),
				endpoint("ap-south-2", "ap-south", 3),
			),
			cell("cell-2",
				endpoint("us-east-2", "us-east", 2),
				endpoint("eu-west-2", "eu-west", 1),
			),
		},
		Placements: []*pb.Placement{
			{Key: "tenant-1", Cell: "cell-1"},
			{Key: "tenant-2", Cell: "cell-2"},
			{Key: "tenant-3", Cell: "cell-1"},
			{Key: "acme", Cell: "cell-2"},
		},
		DefaultCell: "cell-1",
	}
	for _, r := range Regions() {
		cfg.Regions = append(cfg.Regions, &pb.Region{Name: r})
	}
	return cfg
}

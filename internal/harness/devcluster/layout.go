package devcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// layoutFile, in a kept data directory, records where the first run listened.
const layoutFile = "devcluster.json"

// layout is where every part of the cluster listens, in region order. A cluster
// started on an existing data directory runs on the addresses of its first run,
// whatever Ports says: raft members know each other by address, and the kept
// routing config points at the backends.
type layout struct {
	Members  []Member `json:"members"`
	Edges    []string `json:"edges"`
	Backends []string `json:"backends"`
}

// newLayout derives addresses from ports. Zero ports become "127.0.0.1:0",
// except raft's, which every member must know before the first starts and are
// therefore picked now.
func newLayout(p Ports) (layout, error) {
	var l layout
	for i, region := range Regions() {
		raftAddr := loopback(p.CoordinatorRaft, i)
		if p.CoordinatorRaft == 0 {
			addr, err := freeLoopbackAddr()
			if err != nil {
				return l, fmt.Errorf("devcluster: %w", err)
			}
			raftAddr = addr
		}
		l.Members = append(l.Members, Member{
			Name: memberName(i), Region: region,
			GRPCAddr: loopback(p.CoordinatorGRPC, i), RaftAddr: raftAddr,
		})
		l.Edges = append(l.Edges, loopback(p.EdgeHTTP, i))
		for j := range BackendsPerRegion {
			l.Backends = append(l.Backends, loopback(p.Backend, i*BackendsPerRegion+j))
		}
	}
	return l, nil
}

// loadLayout reads the layout a previous run saved in dir; ok is false when there is none.
func loadLayout(dir string) (l layout, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, layoutFile))
	if errors.Is(err, os.ErrNotExist) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("devcluster: %w", err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, false, fmt.Errorf("devcluster: %s: %w", filepath.Join(dir, layoutFile), err)
	}
	n := len(Regions())
	if len(l.Members) != n || len(l.Edges) != n || len(l.Backends) != n*BackendsPerRegion {
		return l, false, fmt.Errorf("devcluster: %s does not describe %d regions", filepath.Join(dir, layoutFile), n)
	}
	return l, true, nil
}

func (l layout) save(dir string) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, layoutFile), b, 0o644)
}

// memberName is the name of the i-th coordinator (region order).
func memberName(i int) string { return "n" + strconv.Itoa(i+1) }

// edgeName is the name of a region's edge.
func edgeName(region string) string { return "edge-" + region }

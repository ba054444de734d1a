// Package devcluster runs a whole edgecell deployment in one process on
// loopback: three coordinators (n1 us-east, n2 eu-west, n3 ap-south), one edge
// per region and two demo backends per region, with a sample routing config
// applied and every edge serving it. `edgecell dev` is a thin wrapper around it;
// tests and the load-test tool use it as a library, with free ports and a
// temporary data directory.
//
// With Options.SimulateLatency the regions are as far apart as the routing
// config's latency matrix says (internal/simnet): every member, edge and
// backend address is registered with its region, and coordinators and edges
// dial through the simulated network. `edgecell dev` turns it on by default.
//
// The cluster talks to itself only through the public surfaces (the admin gRPC
// API, the edges' HTTP listeners), so what works here works between processes.
package devcluster

// Package simnet owns latency simulation: it makes connections between nodes
// of different regions behave as if the regions were as far apart as the
// routing config's latency matrix says, so that one machine shows what a
// planet-wide deployment does (an edge in ap-south paying for a nonce check at
// a leader in us-east).
//
// A Matrix turns the config's latency entries into one-way delays. A Network
// knows which region every listening address belongs to and hands out
// dialers (and listener wrappers) that delay traffic between regions. Nothing
// else in edgecell sleeps to simulate distance: services are given a dialer
// through their configs (edgenode.Config.DialContext, coordinator.Config.Dial)
// and stay unaware of the simulation.
//
// # Where the delay is applied
//
// A dialed connection is wrapped on the dialing side only, and both
// directions are delayed there: what the dialer writes reaches the peer one
// one-way delay later, and what the peer sends is handed to the dialer one
// one-way delay after it arrived. A request and its reply therefore cost one
// round trip, whichever side measures it, without the accepting side knowing
// anything. Dialing also waits one round trip before returning, as a TCP
// handshake would.
//
// Every service edgecell runs dials its peers (edges dial coordinators and
// upstreams, coordinators dial each other for raft and forwarding), so the
// dev cluster wraps dialers only. Network.Listener exists for peers that
// cannot be given a dialer (another process, a load-test client bound to a
// source address of its own): it delays connections whose remote address is
// registered, and leaves alone connections this Network's dialers already
// delay, so that no connection pays twice. A listener cannot delay the
// client's connect, only the data.
//
// # Partitions
//
// Network.Partition cuts a region off from every other one until Heal: new
// dials across the cut fail at once (ErrPartitioned), and the delayed
// connections across it are closed with that error rather than left stalled,
// so that their owners take their retry paths at once. Same-region traffic
// never passes through the simulation and is unaffected.
package simnet

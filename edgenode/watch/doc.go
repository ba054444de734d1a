// Package watch owns the edge's side of the Watch protocol: it follows the
// coordinators' state over one gRPC stream at a time, applies what arrives to
// the routing table (swapping it atomically), reports it for persistence,
// and acknowledges (or rejects) every revision.
//
// Connection policy: the member to stream from is a Nearest pick of the
// edge's coordinator pool (edgenode/coordconn): coordinators of the edge's
// own region first (members arrive with the state; the configured
// addresses are the seed), each edge in its own stable order so edges
// spread over the coordinators of a region, a member whose stream (or any
// other call of the edge) failed lately last. After a failed session the
// next goes to another member, until each was tried. The client tells the
// pool which member it follows, which the reports then prefer. A lost
// stream is retried with jittered exponential backoff and resumes from the
// revision the edge serves. A session on a coordinator outside the region
// moves to one in it when one is known (at once after a first session
// through a seed, else every RebalanceInterval). A change that cannot be
// applied is rejected explicitly; the stream is then dropped and resumed
// from the last good revision, on another member, after a backoff, so a
// coordinator that resends the same bad change does not cause a hot loop.
//
// Cluster identity: the edge resumes with the id of the cluster its state came
// from. A reset from another cluster (a rebuilt one) replaces the state even
// when it is older, since revisions of two clusters do not compare; with
// Config.ClusterID set, a coordinator of any other cluster is refused instead.
package watch

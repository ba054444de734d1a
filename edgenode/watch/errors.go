package watch

import "errors"

// Sentinel errors that end a watch session; Run logs them and reconnects.
var (
	// ErrRejected: a change or reset could not be applied; it was rejected.
	ErrRejected = errors.New("watch: change rejected")
	// ErrStreamIdle: the coordinator sent nothing (not even progress) for the idle timeout.
	ErrStreamIdle = errors.New("watch: stream idle")
	// ErrRebalance: the session ended to move to a coordinator of the edge's own region.
	ErrRebalance = errors.New("watch: moving to a coordinator in the edge's region")
	// ErrForeignCluster: the coordinator serves another cluster than the one
	// the edge is pinned to (Config.ClusterID).
	ErrForeignCluster = errors.New("watch: coordinator of another cluster")
	// ErrNoCoordinators: there is no address to connect to.
	ErrNoCoordinators = errors.New("watch: no coordinator address known")
)

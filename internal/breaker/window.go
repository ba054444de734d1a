package breaker

import "github.com/edgecell/edgecell/internal/policy"

// bucket counts the outcomes of one slice of time, keyed by time/width.
type bucket struct {
	Key                int64
	Requests, Failures uint64
}

// window is a ring of fixed time buckets: which bucket an outcome lands in
// depends only on the time it was applied at, so replicas agree.
type window [policy.WindowBuckets]bucket

func (w *window) add(key int64, requests, failures uint64) {
	b := &w[((key%policy.WindowBuckets)+policy.WindowBuckets)%policy.WindowBuckets]
	if b.Key != key {
		*b = bucket{Key: key}
	}
	b.Requests += requests
	b.Failures += failures
}

// sum counts the buckets of the last policy.WindowBuckets keys up to key.
func (w *window) sum(key int64) (requests, failures uint64) {
	for _, b := range w {
		if b.Key <= key && b.Key > key-policy.WindowBuckets {
			requests += b.Requests
			failures += b.Failures
		}
	}
	return requests, failures
}

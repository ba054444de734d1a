package breaker

// bucket counts the outcomes of one slice of time, keyed by time/width.
type bucket struct {
	Key                int64
	Requests, Failures uint64
}

// window is a ring of fixed time buckets: which bucket an outcome lands in
// depends only on the time it was applied at, so replicas agree.
type window [WindowBuckets]bucket

func (w *window) add(key int64, requests, failures uint64) {
	b := &w[((key%WindowBuckets)+WindowBuckets)%WindowBuckets]
	if b.Key != key {
		*b = bucket{Key: key}
	}
	b.Requests += requests
	b.Failures += failures
}

// sum counts the buckets of the last WindowBuckets keys up to key.
func (w *window) sum(key int64) (requests, failures uint64) {
	for _, b := range w {
		if b.Key <= key && b.Key > key-WindowBuckets {
			requests += b.Requests
			failures += b.Failures
		}
	}
	return requests, failures
}

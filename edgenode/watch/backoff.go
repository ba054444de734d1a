package watch

import (
	"math/rand/v2"
	"time"
)

// backoff returns the wait before attempt n (n >= 1 after a failure): full
// jitter over an exponential ceiling, so that edges that lost the same
// coordinator do not come back in step.
func backoff(n int, base, ceiling time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}

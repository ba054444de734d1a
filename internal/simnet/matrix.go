package simnet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// Matrix holds the one-way delays between regions. It is immutable and safe
// for concurrent use.
type Matrix struct {
	scale float64
	links map[link]delay
}

type link struct{ from, to string }

type delay struct{ oneWay, jitter time.Duration }

// NewMatrix builds a matrix from the routing config's latency entries, every
// delay multiplied by scale (0.1 makes a 95 ms link take 9.5 ms; 0 disables
// every delay). As in routing, a pair given once applies both ways, and an
// explicit entry for the reverse direction wins over it. Nil entries are
// skipped. A negative, infinite or NaN scale is an error.
func NewMatrix(latencies []*pb.Latency, scale float64) (*Matrix, error) {
	if scale < 0 || math.IsNaN(scale) || math.IsInf(scale, 0) {
		return nil, fmt.Errorf("simnet: latency scale %v: want a finite number >= 0", scale)
	}
	m := &Matrix{scale: scale, links: map[link]delay{}}
	for _, l := range latencies {
		if l == nil {
			continue
		}
		m.links[link{l.GetFrom(), l.GetTo()}] = m.scaled(l)
	}
	for _, l := range latencies {
		if l == nil {
			continue
		}
		rev := link{l.GetTo(), l.GetFrom()}
		if _, explicit := m.links[rev]; !explicit {
			m.links[rev] = m.scaled(l)
		}
	}
	return m, nil
}

func (m *Matrix) scaled(l *pb.Latency) delay {
	ms := func(v uint32) time.Duration {
		return time.Duration(float64(v) * m.scale * float64(time.Millisecond))
	}
	return delay{oneWay: ms(l.GetOneWayMs()), jitter: ms(l.GetJitterMs())}
}

// Scale is the factor every delay was multiplied by.
func (m *Matrix) Scale() float64 { return m.scale }

// OneWay returns the scaled one-way delay from one region to another and the
// largest jitter added to it. Within a region, and for a pair the matrix does
// not name, both are zero: an unknown pair is treated as near rather than
// guessed at, the same way routing ranks it (after every known region).
func (m *Matrix) OneWay(from, to string) (oneWay, jitter time.Duration) {
	if m == nil || from == to {
		return 0, 0
	}
	d := m.links[link{from, to}]
	return d.oneWay, d.jitter
}

// Delay draws one one-way delay from one region to another: OneWay plus a
// jitter drawn uniformly in [0, jitter]. It is zero within a region and for a
// pair the matrix does not name.
func (m *Matrix) Delay(from, to string) time.Duration {
	d, j := m.OneWay(from, to)
	if j > 0 {
		d += rand.N(j + 1)
	}
	return d
}

// Max is the longest one-way delay the matrix can draw (one-way plus
// jitter, over every pair): what timeouts that must outlast a round trip
// anywhere (raft's heartbeats) have to allow for.
func (m *Matrix) Max() time.Duration {
	var longest time.Duration
	if m == nil {
		return 0
	}
	for _, d := range m.links {
		longest = max(longest, d.oneWay+d.jitter)
	}
	return longest
}

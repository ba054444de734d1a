package simnet

import (
	"math"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestMatrixOneWay(t *testing.T) {
	m, err := NewMatrix([]*pb.Latency{
		{From: "us-east", To: "eu-west", OneWayMs: 38, JitterMs: 2},
		{From: "us-east", To: "ap-south", OneWayMs: 95},
		{From: "ap-south", To: "us-east", OneWayMs: 120}, // explicit reverse wins
		nil,
	}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	for _, tc := range []struct {
		from, to       string
		oneWay, jitter time.Duration
	}{
		{"us-east", "eu-west", ms(19), ms(1)},
		{"eu-west", "us-east", ms(19), ms(1)}, // given once: both ways
		{"us-east", "ap-south", ms(47.5), 0},
		{"ap-south", "us-east", ms(60), 0},
		{"us-east", "us-east", 0, 0},  // same region
		{"eu-west", "ap-south", 0, 0}, // not in the matrix
	} {
		d, j := m.OneWay(tc.from, tc.to)
		if d != tc.oneWay || j != tc.jitter {
			t.Errorf("OneWay(%s, %s) = %v, %v; want %v, %v", tc.from, tc.to, d, j, tc.oneWay, tc.jitter)
		}
	}
	if got, want := m.Max(), ms(60); got != want {
		t.Errorf("Max = %v, want %v", got, want)
	}
	if d := m.Delay("eu-west", "ap-south"); d != 0 {
		t.Errorf("Delay for an unknown pair = %v, want 0", d)
	}
}

func TestMatrixJitterIsBounded(t *testing.T) {
	m, err := NewMatrix([]*pb.Latency{{From: "a", To: "b", OneWayMs: 10, JitterMs: 4}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		d := m.Delay("b", "a")
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 10*time.Millisecond || hi > 14*time.Millisecond {
		t.Fatalf("delays in [%v, %v], want within [10ms, 14ms]", lo, hi)
	}
	// 2000 uniform draws over 4ms leave no 1ms gap at either end.
	if lo > 11*time.Millisecond || hi < 13*time.Millisecond {
		t.Fatalf("delays in [%v, %v]: jitter is not spread over [0, 4ms]", lo, hi)
	}
}

func TestMatrixRejectsBadScale(t *testing.T) {
	for _, s := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := NewMatrix(nil, s); err == nil {
			t.Errorf("NewMatrix(scale %v) succeeded", s)
		}
	}
	m, err := NewMatrix([]*pb.Latency{{From: "a", To: "b", OneWayMs: 10, JitterMs: 4}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Delay("a", "b"); d != 0 {
		t.Errorf("scale 0: delay %v, want none", d)
	}
}

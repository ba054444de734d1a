package breaker

import (
	"errors"
	"testing"
	"time"

	"github.com/edgecell/edgecell/internal/policy"
)

func TestEncodingRoundTrip(t *testing.T) {
	b := New(policy.Breaker{Window: 20 * time.Second})
	for _, st := range seq(probingA, []step{{5500 * time.Millisecond, probe("edge-a", false), true}}) {
		st.op(&b, t0.Add(st.at))
	}
	b.Tick(t0.Add(time.Minute))
	b.GrantProbe(t0.Add(time.Minute), "edge-b")
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Breaker
	if err := got.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if got != b {
		t.Fatalf("decoded %+v\nwant    %+v", got, b)
	}
}

func TestEncodingRefusesCorruptData(t *testing.T) {
	good, _ := New(policy.Breaker{}).MarshalBinary()
	for name, data := range map[string]string{
		"not json":      "\x00\x01",
		"other version": `{"V":2,"B":{}}`,
		"bad state":     string(good[:len(good)-2]) + `,"State":9}}`,
		"no policy":     `{"V":1,"B":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			var b Breaker
			if err := b.UnmarshalBinary([]byte(data)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
		})
	}
}

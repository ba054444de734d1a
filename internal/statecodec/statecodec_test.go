package statecodec

import (
	"bytes"
	"encoding/json"
	"testing"
)

type sample struct {
	N    int
	Name string
	Tags []string
}

// The envelope is what encoding/json gives for the struct the breaker and
// health packages used before: their snapshots must keep decoding.
func TestMarshalIsTheStructEncoding(t *testing.T) {
	v := sample{N: 3, Name: "a<b>&\"c\"", Tags: []string{"x"}}
	got, err := Marshal(7, "B", v)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(struct {
		V int
		B sample
	}{7, v})
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal = %s\nwant      %s", got, want)
	}
	var back sample
	if err := Unmarshal(got, 7, "B", &back); err != nil || back.Name != v.Name || back.N != 3 || len(back.Tags) != 1 {
		t.Fatalf("Unmarshal = %+v, %v", back, err)
	}
}

func TestUnmarshalRefusesWhatMarshalDidNotWrite(t *testing.T) {
	for name, data := range map[string]string{
		"not json":      "{",
		"not an object": "[1]",
		"other version": `{"V":2,"H":{}}`,
		"no version":    `{"H":{}}`,
		"bad version":   `{"V":"1","H":{}}`,
		"bad value":     `{"V":1,"H":{"N":"x"}}`,
	} {
		var s sample
		if err := Unmarshal([]byte(data), 1, "H", &s); err == nil {
			t.Errorf("%s: %s decoded as %+v", name, data, s)
		}
	}
	s := sample{N: 5}
	if err := Unmarshal([]byte(`{"V":1}`), 1, "H", &s); err != nil || s.N != 5 {
		t.Fatalf("a missing value: %+v, %v; want v untouched", s, err)
	}
}

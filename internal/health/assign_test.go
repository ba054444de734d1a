package health

import (
	"maps"
	"slices"
	"testing"
)

func TestAssign(t *testing.T) {
	edges := []Node{
		{"edge-use-2", "us-east"}, {"edge-euw-1", "eu-west"}, {"edge-use-1", "us-east"},
		{"edge-use-1", "us-east"}, // listed twice
	}
	endpoints := []Node{
		{"api-use", "us-east"}, {"api-euw", "eu-west"}, {"api-aps", "ap-south"}, {"api-none", ""},
	}
	want := map[string][]string{
		"api-use":  {"edge-use-1", "edge-use-2"},
		"api-euw":  {"edge-euw-1"},
		"api-aps":  {"edge-euw-1", "edge-use-1", "edge-use-2"}, // no edge in ap-south: all edges
		"api-none": {"edge-euw-1", "edge-use-1", "edge-use-2"},
	}
	got := Assign(edges, endpoints)
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("assignment %v, want %v", got, want)
	}
	slices.Reverse(edges)
	slices.Reverse(endpoints)
	if again := Assign(edges, endpoints); !maps.EqualFunc(again, want, slices.Equal) {
		t.Fatalf("assignment depends on input order: %v", again)
	}
	got["api-aps"][0] = "changed"
	if got["api-none"][0] != "edge-euw-1" {
		t.Fatal("endpoints share one slice: a caller changing one changes another")
	}
	if empty := Assign(nil, endpoints); len(empty["api-use"]) != 0 || len(empty) != len(endpoints) {
		t.Fatalf("no edges: %v, want every endpoint with no checker", empty)
	}
}

func TestChecksForMatchesAssign(t *testing.T) {
	edges := []Node{{"e1", "us-east"}, {"e2", "us-east"}, {"e3", "eu-west"}, {"e4", "ap-south"}}
	endpoints := []Node{{"a", "us-east"}, {"b", "eu-west"}, {"c", "sa-east"}, {"d", "ap-south"}, {"e", "us-east"}, {"f", "af-south"}}
	byEdge := map[string][]string{}
	for ep, checkers := range Assign(edges, endpoints) {
		for _, e := range checkers {
			byEdge[e] = append(byEdge[e], ep)
		}
	}
	for _, e := range edges {
		want := slices.Sorted(slices.Values(byEdge[e.ID]))
		if got := ChecksFor(e, edges, endpoints); !slices.Equal(got, want) {
			t.Errorf("ChecksFor(%s) = %v, Assign says %v", e.ID, got, want)
		}
	}
	// A new edge not yet in the list covers its region at once.
	if got := ChecksFor(Node{"e5", "sa-east"}, edges, endpoints); !slices.Equal(got, []string{"c", "f"}) {
		t.Errorf("new edge in sa-east checks %v, want [c f]: its region's endpoint and the uncovered one", got)
	}
}

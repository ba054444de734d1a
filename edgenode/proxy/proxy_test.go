package proxy

import (
	"encoding/json"
	"regexp"
	"testing"
)

var rayRE = regexp.MustCompile(`^[0-9a-f]{16}-us-east$`)

type errBody struct {
	Error      string `json:"error"`
	Reason     string `json:"reason"`
	RoutingKey string `json:"routing_key"`
	Ray        string `json:"ray"`
}

func TestStatusCodesAndBodies(t *testing.T) {
	readModes(t, testStatusCodesAndBodies)
}

func testStatusCodesAndBodies(t *testing.T, mode func(*Config)) {
	b1 := backend(t, "b1")
	tb := buildTable(t, 5, "", map[string]string{"acme": "c1", "ghost-town": "empty", "down": "dead"},
		cellSpec{"c1", []string{"e1=" + b1.URL + "/prefix/"}},
		cellSpec{"empty", nil},
		cellSpec{"dead", []string{"d1=http://" + closedAddr(t), "d2@eu-west=http://" + closedAddr(t)}},
	)
	h := startProxy(t, tb, mode)
	c := client(t)
	tests := []struct {
		name     string
		key      string
		status   int
		errMsg   string // empty for a proxied response
		body     string
		endpoint string
	}{
		{"proxied with path prefix", "acme", 200, "", "b1 GET /prefix/some/path?q=1 body=0", "e1@us-east"},
		{"missing key", "", 400, "missing X-Routing-Key header", "", ""},
		{"unknown key", "nope", 404, "unknown routing key", "", ""},
		{"cell without endpoints", "ghost-town", 502, "cell has no endpoints", "", ""},
		{"no endpoint reachable", "down", 502, "no endpoint reachable", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.get(t, c, tc.key, "/some/path?q=1")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			ray := resp.Header.Get("X-Edge-Ray")
			if !rayRE.MatchString(ray) {
				t.Fatalf("X-Edge-Ray %q", ray)
			}
			if got := resp.Header.Get("X-Edge-Endpoint"); got != tc.endpoint {
				t.Fatalf("X-Edge-Endpoint %q, want %q", got, tc.endpoint)
			}
			if tc.errMsg == "" {
				if body != tc.body {
					t.Fatalf("body %q, want %q", body, tc.body)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var eb errBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if eb.Error != tc.errMsg || eb.RoutingKey != tc.key || eb.Ray != ray {
				t.Fatalf("body %+v, want error %q key %q ray %q", eb, tc.errMsg, tc.key, ray)
			}
		})
	}
}

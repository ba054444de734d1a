package loadtest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgecell/edgecell/hmacsig"
)

// edgeDownFor is how long an edge that refused a connection or timed out is
// skipped before a client region tries it again: anycast's withdrawal.
const edgeDownFor = time.Second

// edge is one edge as every client region sees it.
type edge struct {
	region string
	url    string
	// downUntil is the offset from the run's start until which the edge is
	// skipped; 0: up.
	downUntil atomic.Int64
}

func (e *edge) up(now time.Duration) bool { return time.Duration(e.downUntil.Load()) <= now }

// regionClient is the clients of one region: their rate, their edges in
// failover order and their statistics.
type regionClient struct {
	region string
	rate   float64
	order  []*edge
	stats  *regionStats
}

// signedRequest is an accepted signed request, kept to be replayed.
type signedRequest struct {
	target string // request URI
	header http.Header
	edge   *edge
}

// replayPool holds recently accepted signed requests.
type replayPool struct {
	mu     sync.Mutex
	ring   []signedRequest
	next   int // where the next one is stored
	cursor int // the next one replayed
}

const replayPoolSize = 4096

func (p *replayPool) add(s signedRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ring) < replayPoolSize {
		p.ring = append(p.ring, s)
		return
	}
	p.ring[p.next] = s
	p.next = (p.next + 1) % replayPoolSize
}

func (p *replayPool) take() (signedRequest, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ring) == 0 {
		return signedRequest{}, false
	}
	s := p.ring[p.cursor%len(p.ring)]
	p.cursor++
	return s, true
}

// newHTTPClient is a client that keeps enough connections alive for the
// in-flight cap, so a steady run reuses them instead of dialling.
// At most connsPerEdge connections are open to one edge: more requests wait
// for one (the wait counts in their latency), which keeps a burst from
// dialling thousands of connections and collapsing both ends.
func newHTTPClient(timeout time.Duration, maxInFlight, connsPerEdge int) *http.Client {
	dialTimeout := min(timeout, 2*time.Second)
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          0,
			MaxIdleConnsPerHost:   min(maxInFlight, 4096),
			MaxConnsPerHost:       connsPerEdge,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
			ResponseHeaderTimeout: timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// classify names the error class of a transport error, and whether nothing
// reached the edge (so the request may go to the next edge).
func classify(err error) (class string, notSent bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return ClassConnect, true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ClassConnect, true
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return ClassTimeout, false
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) {
		return ClassReset, false
	}
	return ClassOther, false
}

// do sends request i of rc, scheduled at sched, and records its outcome.
func (r *runner) do(ctx context.Context, rc *regionClient, i int64, sched time.Duration) {
	o := outcome{kind: r.mix[i%int64(len(r.mix))], scheduled: sched}
	var replay signedRequest
	if o.kind == KindReplay {
		var ok bool
		if replay, ok = r.replays.take(); !ok {
			o.kind = KindSigned // nothing accepted to replay yet
			r.replayFallbacks.Add(1)
		}
	}
	o.lag = r.since() - sched
	var (
		resp *http.Response
		err  error
		used *edge
	)
	for _, e := range r.candidates(rc, replay.edge) {
		used = e
		var req *http.Request
		req, err = r.newRequest(ctx, o.kind, e, replay)
		if err != nil {
			break
		}
		if r.breakers != nil && o.kind != KindReplay {
			req.Header.Set("X-Edge-Debug", "1") // X-Edge-Endpoint and X-Edge-Revision for the breaker check
		}
		resp, err = r.client.Do(req)
		if err == nil {
			if r.breakers != nil {
				if ep := resp.Header.Get("X-Edge-Endpoint"); ep != "" {
					r.breakers.routedOn(ep, resp.Header.Get("X-Edge-Revision"))
				}
			}
			if o.kind == KindSigned && resp.StatusCode/100 == 2 {
				r.replays.add(signedRequest{target: req.URL.RequestURI(), header: req.Header, edge: e})
			}
			break
		}
		class, notSent := classify(err)
		if class == ClassConnect || class == ClassTimeout {
			e.downUntil.Store(int64(r.since() + edgeDownFor))
		}
		if !notSent || ctx.Err() != nil {
			break
		}
	}
	if err == nil && resp != nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	o.done = r.since()
	o.failover = o.kind != KindReplay && used != nil && used != rc.order[0] // replays go elsewhere on purpose
	switch {
	case err != nil:
		o.class, _ = classify(err)
	case o.kind == KindReplay && resp.StatusCode == http.StatusUnauthorized:
		o.replay = replayBlocked
	case o.kind == KindReplay && resp.StatusCode/100 == 2:
		o.replay = replayAccepted
		o.class = "replay-accepted"
		r.counters.replaysAccepted.Add(1)
	case resp.StatusCode/100 != 2:
		o.class = statusClass(resp.StatusCode)
	}
	r.record(rc, &o)
}

// candidates are the edges to try, in order: rc's edges in failover order
// that are up (all of them when none is), without avoid.
func (r *runner) candidates(rc *regionClient, avoid *edge) []*edge {
	now := r.since()
	out := make([]*edge, 0, len(rc.order))
	for _, e := range rc.order {
		if e != avoid && e.up(now) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		for _, e := range rc.order {
			if e != avoid {
				out = append(out, e)
			}
		}
	}
	return out
}

func (r *runner) newRequest(ctx context.Context, kind Kind, e *edge, replay signedRequest) (*http.Request, error) {
	if kind == KindReplay {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+replay.target, nil)
		if err != nil {
			return nil, err
		}
		req.Header = replay.header.Clone()
		return req, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/loadtest/"+string(kind), nil)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindPlain:
		req.Header.Set("X-Routing-Key", r.target.PlainKey)
		return req, nil
	case KindJWT:
		token, err := r.target.JWTToken()
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Routing-Key", r.target.JWTKey)
		req.Header.Set("Authorization", "Bearer "+token)
		return req, nil
	}
	req.Header.Set("X-Routing-Key", r.target.SignedKey)
	return req, r.signer.Sign(req)
}

func (r *runner) record(rc *regionClient, o *outcome) {
	rc.stats.add(o)
	r.counters.completed.Add(1)
	if o.class != "" {
		r.counters.errors.Add(1)
	}
}

// hmacSigner is the signer of the run's key.
func hmacSigner(keyID, secret string) *hmacsig.Signer {
	return &hmacsig.Signer{KeyID: keyID, Secret: []byte(secret)}
}

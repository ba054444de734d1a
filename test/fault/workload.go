//go:build fault

package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/hmacsig"
)

// Client ids of the workloads, for porcupine's visualization and the
// history.
const (
	clientRegister = 0 // register clients are 0..registerClients-1
	clientPlain    = 100
	clientSigned   = 200
	clientReplay   = 300
)

const registerClients = 3

// workloads runs every workload until ctx ends.
func workloads(ctx context.Context, c *Cluster, seed uint64) {
	var wg sync.WaitGroup
	run := func(f func(context.Context, *Cluster, *rand.Rand, int), client int) {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(seed, uint64(client)+0x3011))
		go func() { defer wg.Done(); f(ctx, c, rng, client) }()
	}
	pool := &replayPool{}
	for i := range registerClients {
		run(registerClient, clientRegister+i)
	}
	for i := range 2 {
		run(plainClient, clientPlain+i)
		run(func(ctx context.Context, c *Cluster, rng *rand.Rand, client int) {
			signedClient(ctx, c, rng, client, pool)
		}, clientSigned+i)
	}
	run(func(ctx context.Context, c *Cluster, rng *rand.Rand, client int) {
		replayClient(ctx, c, rng, client, pool)
	}, clientReplay)
	wg.Wait()
}

// grpcOutcome classifies an admin call's error. Only refusals that say the
// request was judged and not done, and calls that never left because no
// connection could be made, are Failed; everything else (timeouts, lost
// leadership, forwarding errors) is Unknown: the write may have committed.
func grpcOutcome(err error) Outcome {
	if err == nil {
		return OK
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted,
		codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.OutOfRange, codes.Unimplemented:
		return Failed
	case codes.Unavailable:
		if bytes.Contains([]byte(st.Message()), []byte("connection refused")) {
			return Failed
		}
	}
	return Unknown
}

// httpOutcome classifies an HTTP client error: refused connections never
// sent anything; anything else may have.
func httpOutcome(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, syscall.ECONNREFUSED):
		return Failed
	default:
		return Unknown
	}
}

// put writes key -> cell through member m.
func put(ctx context.Context, c *Cluster, m *member, client int, key, cell string, final bool) Op {
	op := Op{Kind: KindWrite, Client: client, Member: m.name, Key: key, Value: cell, Final: final, Call: c.rec.now()}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := m.admin.PutPlacement(cctx, &pb.PutPlacementRequest{Placement: &pb.Placement{Key: key, Cell: cell}})
	cancel()
	op.Return, op.Outcome = c.rec.now(), grpcOutcome(err)
	if err != nil {
		op.Err = err.Error()
	}
	return op
}

// get reads key linearizably through member m. A key without a placement
// reads as "".
func get(ctx context.Context, c *Cluster, m *member, client int, key string, final bool) Op {
	op := Op{Kind: KindRead, Client: client, Member: m.name, Key: key, Final: final, Call: c.rec.now()}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	resp, err := m.admin.GetPlacement(cctx, &pb.GetPlacementRequest{Key: key, Consistency: pb.Consistency_CONSISTENCY_LINEARIZABLE})
	cancel()
	op.Return = c.rec.now()
	switch {
	case err == nil:
		op.Value = resp.GetPlacement().GetCell()
	case status.Code(err) == codes.NotFound:
		err = nil // observed: no placement
	}
	if err != nil {
		op.Err = err.Error()
		op.Outcome = Unknown // a read that got no answer observed nothing
	}
	return op
}

// registerClient writes placements of the register keys to random plain
// cells and reads them back linearizably, each through a random member.
func registerClient(ctx context.Context, c *Cluster, rng *rand.Rand, client int) {
	for ctx.Err() == nil {
		m := c.members[rng.IntN(len(c.members))]
		key := registerKeys[rng.IntN(len(registerKeys))]
		var op Op
		if rng.IntN(2) == 0 {
			op = put(ctx, c, m, client, key, plainCells[rng.IntN(len(plainCells))], false)
		} else {
			op = get(ctx, c, m, client, key, false)
		}
		if ctx.Err() != nil && op.Outcome != OK {
			op.Outcome = Unknown // cut short by the end of the run
		}
		c.rec.add(op)
		sleep(ctx, between(rng, 10*time.Millisecond, 40*time.Millisecond))
	}
}

// httpDo sends req and records it.
func httpDo(c *Cluster, e *edge, req *http.Request, op Op) Op {
	op.Edge, op.Call = e.region, c.rec.now()
	resp, err := e.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		op.Status = resp.StatusCode
	}
	op.Return, op.Outcome = c.rec.now(), httpOutcome(err)
	if err != nil {
		op.Err = err.Error()
	}
	return op
}

// plainClient sends unauthenticated GETs through random edges.
func plainClient(ctx context.Context, c *Cluster, rng *rand.Rand, client int) {
	for ctx.Err() == nil {
		e := c.edges[rng.IntN(len(c.edges))]
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, e.url+"/plain", nil)
		req.Header.Set("X-Routing-Key", plainKeys[rng.IntN(len(plainKeys))])
		c.rec.add(httpDo(c, e, req, Op{Kind: KindPlain, Client: client}))
		sleep(ctx, between(rng, 5*time.Millisecond, 25*time.Millisecond))
	}
}

// signed is a signed request that can be sent again, byte for byte.
type signed struct {
	header http.Header
	body   []byte
	path   string
}

func (s signed) request(ctx context.Context, e *edge) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+s.path, bytes.NewReader(s.body))
	req.Header = s.header.Clone()
	return req
}

// replayPool keeps the latest signed requests for replays.
type replayPool struct {
	mu   sync.Mutex
	reqs []signed
	next int
}

func (p *replayPool) add(s signed) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reqs) < 256 {
		p.reqs = append(p.reqs, s)
		return
	}
	p.reqs[p.next] = s
	p.next = (p.next + 1) % len(p.reqs)
}

func (p *replayPool) pick(rng *rand.Rand) (signed, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reqs) == 0 {
		return signed{}, false
	}
	return p.reqs[rng.IntN(len(p.reqs))], true
}

// signedClient signs POSTs with fresh nonces and sends each to two edges at
// once: at most one may be accepted.
func signedClient(ctx context.Context, c *Cluster, rng *rand.Rand, client int, pool *replayPool) {
	signer := &hmacsig.Signer{KeyID: c.keyID, Secret: []byte(c.secret)}
	for i := 0; ctx.Err() == nil; i++ {
		a := rng.IntN(len(c.edges))
		b := (a + 1 + rng.IntN(len(c.edges)-1)) % len(c.edges)
		s := signed{path: fmt.Sprintf("/signed/%d/%d", client, i), body: fmt.Appendf(nil, `{"client":%d,"n":%d}`, client, i)}
		req, _ := http.NewRequest(http.MethodPost, c.edges[a].url+s.path, bytes.NewReader(s.body))
		req.Header.Set("X-Routing-Key", authKeys[rng.IntN(len(authKeys))])
		req.Header.Set("Content-Type", "application/json")
		if err := signer.Sign(req); err != nil {
			panic(fmt.Sprintf("sign: %v", err)) // a harness bug: key id, routing key and nonce are ours
		}
		s.header = req.Header
		nonce := req.Header.Get("X-Nonce")
		var wg sync.WaitGroup
		for _, e := range []*edge{c.edges[a], c.edges[b]} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.rec.add(httpDo(c, e, s.request(context.WithoutCancel(ctx), e), Op{Kind: KindSigned, Client: client, KeyID: c.keyID, Nonce: nonce}))
			}()
		}
		wg.Wait()
		pool.add(s)
		sleep(ctx, between(rng, 20*time.Millisecond, 60*time.Millisecond))
	}
}

// replayClient sends earlier signed requests again to random edges.
func replayClient(ctx context.Context, c *Cluster, rng *rand.Rand, client int, pool *replayPool) {
	for ctx.Err() == nil {
		if s, ok := pool.pick(rng); ok {
			e := c.edges[rng.IntN(len(c.edges))]
			c.rec.add(httpDo(c, e, s.request(context.WithoutCancel(ctx), e),
				Op{Kind: KindReplay, Client: client, KeyID: c.keyID, Nonce: s.header.Get("X-Nonce")}))
		}
		sleep(ctx, between(rng, 50*time.Millisecond, 150*time.Millisecond))
	}
}

package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/coordinator/state"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/pki"
)

// Config configures one member's raft store.
type Config struct {
	// Name is the raft server ID; it must be unique in the cluster.
	Name string
	// RaftAddr is the address raft listens on and advertises to peers.
	RaftAddr string
	// DataDir holds raft.db (raft log and stable store) and snapshots/; see
	// disk.go for the layout and what a damaged file does.
	DataDir string
	// Bootstrap, when non-empty and the data dir holds no raft state, bootstraps
	// a cluster with these voters (name -> raft address). Every initial member
	// must be given the same map. Ignored when state exists (a restart).
	Bootstrap map[string]string
	// Logger receives the store's and raft's logs.
	Logger *slog.Logger
	// Timing overrides raft's timeouts; zero values take the defaults below,
	// which suit a LAN or loopback. Scale them up for a WAN.
	HeartbeatTimeout   time.Duration // default 500ms
	ElectionTimeout    time.Duration // default 500ms
	LeaderLeaseTimeout time.Duration // default 250ms
	// CommitTimeout bounds how late followers learn the commit index when no
	// new entries flow; it sets how quickly edges watching a follower see a
	// write. Default 2ms.
	CommitTimeout time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot. Default 8192.
	SnapshotThreshold uint64
	// TrailingLogs is how many entries a snapshot leaves in the log, so that a
	// slightly lagging follower catches up without a snapshot. Default 8192.
	TrailingLogs uint64
	// SnapshotInterval is how often raft checks whether SnapshotThreshold
	// entries accumulated (it waits between one and two intervals). Default 30s.
	SnapshotInterval time.Duration
	// ApplyTimeout bounds how long Propose waits for raft. Default 10s.
	ApplyTimeout time.Duration
	// Now is the clock Propose stamps commands with (Command.now_unix_nano);
	// nil means time.Now. Only the leader's clock reaches the log.
	Now func() time.Time
	// Dial, when set, opens raft connections to peers (within raft's
	// timeout), for latency simulation; nil dials plain TCP. Inbound
	// connections are accepted on RaftAddr either way.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS, when set, runs every raft connection over mutual TLS: a peer
	// must present a coordinator certificate from the cluster CA, or its
	// connection fails the handshake before raft reads a byte. Nil is
	// plaintext (--insecure).
	TLS *pki.Source
}

// Store is one member's raft node over the state machine it was opened
// with: the one owner of *raft.Raft.
type Store struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	fsm       *fsm
	transport *raft.NetworkTransport
	logs      *logStore
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

// Open starts raft for this member over sm, the state machine raft feeds
// with committed commands and snapshots, and pub, which receives every
// change sm returns (and the resets and the cluster id); the caller builds
// both and owns them. It returns once raft runs; it does not wait for a
// leader. The steps are: check the config and the data dir, open the log
// and snapshot stores, build the FSM, listen for raft, bootstrap a new
// cluster, start raft.
func Open(cfg Config, sm Applier, pub Publisher) (*Store, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if sm == nil || pub == nil {
		return nil, errors.New("raftstore: a state machine and a publisher are required")
	}
	setDefaults(&cfg)
	log := cfg.Logger.With("member", cfg.Name)
	hlog := newHCLogger(log)
	if err := prepareDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	d, err := openDisk(cfg.DataDir, hlog)
	if err != nil {
		return nil, err
	}
	f, err := openFSM(cfg.DataDir, sm, pub, log)
	if err != nil {
		d.logs.Close()
		return nil, err
	}
	transport, err := listen(cfg, f.cluster.get, hlog)
	if err != nil {
		d.logs.Close()
		return nil, err
	}
	rc := raftConfig(cfg, hlog)
	hasState, err := bootstrap(cfg, rc, d, transport, log)
	if err != nil {
		transport.Close()
		d.logs.Close()
		return nil, err
	}
	r, err := raft.NewRaft(rc, f, d.logs, d.logs, d.snaps, transport)
	if err != nil {
		transport.Close()
		d.logs.Close()
		return nil, fmt.Errorf("raftstore: start raft: %w", describeSnapshotError(cfg.DataDir, err))
	}
	s := &Store{cfg: cfg, log: log, raft: r, fsm: f, transport: transport, logs: d.logs, closed: make(chan struct{})}
	go s.yieldLeadershipWhileHalted()
	log.Info("raft started", "raft_addr", string(transport.LocalAddr()), "existing_state", hasState)
	return s, nil
}

// check refuses a config Open cannot start from.
func (cfg *Config) check() error {
	switch {
	case cfg.Name == "":
		return errors.New("raftstore: Name is required")
	case cfg.DataDir == "":
		return errors.New("raftstore: DataDir is required")
	}
	return nil
}

// raftConfig is raft's configuration for this member.
func raftConfig(cfg Config, hlog hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	return rc
}

// disk is the member's raft storage: the log and stable store, and the
// file snapshot store (see disk.go).
type disk struct {
	logs  *logStore
	snaps *raft.FileSnapshotStore
}

func openDisk(dir string, hlog hclog.Logger) (disk, error) {
	logs, err := openLogStore(dir)
	if err != nil {
		return disk{}, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		logs.Close()
		return disk{}, fmt.Errorf("raftstore: open snapshots: %w", err)
	}
	return disk{logs: logs, snaps: snaps}, nil
}

// openFSM builds the FSM over sm and pub, with the cluster id this member
// persisted (if any), which pub learns at once.
func openFSM(dir string, sm Applier, pub Publisher, log *slog.Logger) (*fsm, error) {
	clusterID, err := readClusterID(dir)
	if err != nil {
		return nil, err
	}
	pub.SetClusterID(clusterID)
	return newFSM(sm, pub, &clusterIdentity{dir: dir, log: log, id: clusterID}, log), nil
}

// listen opens the raft transport on cfg.RaftAddr. A nil advertise address
// (not a nil *TCPAddr inside one) makes the transport advertise what it
// bound: needed for port 0 or an unspecified host.
func listen(cfg Config, clusterID func() string, hlog hclog.Logger) (*raft.NetworkTransport, error) {
	resolved, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("raftstore: raft address %q: %w", cfg.RaftAddr, err)
	}
	var advertise net.Addr
	if resolved.IP != nil && !resolved.IP.IsUnspecified() && resolved.Port != 0 {
		advertise = resolved
	}
	transport, err := newTransport(cfg.RaftAddr, advertise, cfg.Dial, cfg.TLS, clusterID, hlog)
	if err != nil {
		return nil, fmt.Errorf("raftstore: listen on raft address %q: %w", cfg.RaftAddr, err)
	}
	return transport, nil
}

// bootstrap writes the initial configuration cfg.Bootstrap when the data dir
// holds no raft state, and reports whether it held some (a restart).
func bootstrap(cfg Config, rc *raft.Config, d disk, transport raft.Transport, log *slog.Logger) (hasState bool, err error) {
	hasState, err = raft.HasExistingState(d.logs, d.logs, d.snaps)
	if err != nil {
		return false, fmt.Errorf("raftstore: inspect raft state: %w", err)
	}
	if hasState || len(cfg.Bootstrap) == 0 {
		return hasState, nil
	}
	if _, ok := cfg.Bootstrap[cfg.Name]; !ok {
		return false, fmt.Errorf("raftstore: initial cluster does not name this member %q", cfg.Name)
	}
	conf := raft.Configuration{}
	for name, addr := range cfg.Bootstrap {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(addr),
		})
	}
	if err := raft.BootstrapCluster(rc, d.logs, d.logs, d.snaps, transport, conf); err != nil {
		return false, fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	log.Info("bootstrapped raft cluster", "members", len(conf.Servers))
	return false, nil
}

func setDefaults(cfg *Config) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.HeartbeatTimeout, 500*time.Millisecond)
	def(&cfg.ElectionTimeout, 500*time.Millisecond)
	def(&cfg.LeaderLeaseTimeout, 250*time.Millisecond)
	def(&cfg.CommitTimeout, 2*time.Millisecond)
	def(&cfg.ApplyTimeout, 10*time.Second)
	def(&cfg.SnapshotInterval, 30*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = 8192
	}
}

// Close shuts raft down and closes the stores. It does not remove the member
// from the cluster.
func (s *Store) Close() error {
	// Consul's order: start the shutdown, close the transport so that no
	// worker waits on a peer, then wait for raft's goroutines.
	s.closeOnce.Do(func() { close(s.closed) })
	f := s.raft.Shutdown()
	terr := s.transport.Close()
	err := f.Error()
	if err == nil {
		err = terr
	}
	if cerr := s.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

// Name is this member's raft server ID.
func (s *Store) Name() string { return s.cfg.Name }

// RaftAddr is the address raft advertises.
func (s *Store) RaftAddr() string { return string(s.transport.LocalAddr()) }

// View is the current state at one revision, for a stale read: every read
// of it answers from that revision of one store, even if a command is
// applied or a snapshot restored meanwhile. Take one per answer.
func (s *Store) View() state.View { return s.fsm.state.Freeze() }

// Read returns one view of this member's state at consistency c (rqlite's
// read levels): STALE is this member's current state; LEADER is the
// leader's, without a quorum round trip, and fails with ErrNotLeader on a
// follower; LINEARIZABLE, the default, is a read-index read (ReadIndex)
// and fails as it does. Every read of the view answers from one revision.
func (s *Store) Read(ctx context.Context, c pb.Consistency) (state.View, error) {
	switch c {
	case pb.Consistency_CONSISTENCY_STALE:
	case pb.Consistency_CONSISTENCY_LEADER:
		if !s.IsLeader() {
			return state.View{}, fmt.Errorf("%w: leader read reached a follower", ErrNotLeader)
		}
	default:
		if err := s.ReadIndex(ctx); err != nil {
			return state.View{}, err
		}
	}
	return s.View(), nil
}

// ClusterID is the id of the cluster this member belongs to: the replicated
// state's, or before this member has it back after a restart, the one it
// persisted; "" for a new cluster or member that has not learnt it yet.
func (s *Store) ClusterID() string { return s.fsm.cluster.get() }

// IsLeader reports whether this member believes it is the leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the current leader's name and raft address, empty when unknown.
func (s *Store) Leader() (name, raftAddr string) {
	addr, id := s.raft.LeaderWithID()
	return string(id), string(addr)
}

// Propose commits a command through raft and returns its result. Only the
// leader can propose: other members get ErrNotLeader and forward. A command
// refused by the state machine is not an error here: it comes back in the
// result (CommandResult.Error), and the state is unchanged.
//
// The logged command carries this leader's clock in now_unix_nano, whatever
// cmd holds (cmd itself is not modified): time-based decisions in the state
// machine use the leader's time, never a client's.
//
// Before anything enters the log, Propose checks that every member can apply
// the command's op (see proposable) and stamps Command.ignorable from the
// op's registry entry. A halted member proposes nothing: it could not apply
// what it proposed.
func (s *Store) Propose(ctx context.Context, cmd *pb.Command) (*pb.CommandResult, error) {
	if s.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	if err := s.Halted(); err != nil {
		return nil, err
	}
	op, err := s.proposable(cmd)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("raftstore: encode command: %w", err)
	}
	data = stampNow(data, s.cfg.Now())
	if op.Ignorable || cmd.GetIgnorable() {
		data = stampIgnorable(data, op.Ignorable)
	}
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, ErrTimeout
		}
	}
	f := s.raft.Apply(data, timeout)
	if err := s.waitFuture(ctx, f); err != nil {
		return nil, err
	}
	res, ok := f.Response().(*pb.CommandResult)
	if !ok {
		return nil, fmt.Errorf("raftstore: unexpected apply response %T", f.Response())
	}
	return res, nil
}

// VerifyLeader confirms with a quorum that this member is still the leader.
func (s *Store) VerifyLeader(ctx context.Context) error {
	return s.waitFuture(ctx, s.raft.VerifyLeader())
}

// ReadIndex makes the next local read linearizable (rqlite and etcd's
// read-index): it captures the leader's last log index, confirms leadership
// with a quorum, then waits until the FSM has applied everything up to it.
// Only the leader can serve it.
func (s *Store) ReadIndex(ctx context.Context) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	// The last log index, not the commit index: a leader new in its term may
	// not yet know how far the previous term committed, but by leader
	// completeness every acknowledged write is in its log.
	last := s.raft.LastIndex()
	if err := s.VerifyLeader(ctx); err != nil {
		return err
	}
	return s.waitAppliedThrough(ctx, last)
}

// waitAppliedThrough waits until every entry at or below index that reaches
// the FSM has been applied. Entries that never reach the FSM (no-ops and
// barriers, like the one a new leader appends) must not make readers wait for
// the next write, so the target is the last FSM-bound entry at or below index.
func (s *Store) waitAppliedThrough(ctx context.Context, index uint64) error {
	applied, _ := s.fsm.applied.current()
	target := applied
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := s.logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				break // compacted into a snapshot, which is applied
			}
			return fmt.Errorf("raftstore: read log %d: %w", i, err)
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			target = i
			break
		}
	}
	return s.fsm.applied.wait(ctx, target)
}

// WaitApplied blocks until the FSM applied raft index (or revision) index.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	return s.fsm.applied.wait(ctx, index)
}

// Applied returns the raft index of the last entry the FSM processed.
func (s *Store) Applied() uint64 {
	idx, _ := s.fsm.applied.current()
	return idx
}

// Snapshot forces a raft snapshot now (tests and operators). A halted
// member takes none (see fsm).
func (s *Store) Snapshot() error {
	if err := s.Halted(); err != nil {
		return fmt.Errorf("raftstore: no snapshot while the state machine is halted: %w", err)
	}
	return translate(s.raft.Snapshot().Error())
}

func (s *Store) waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return translate(err)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}

// translate maps raft's errors onto this package's sentinels.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrLeadershipLost
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	default:
		return err
	}
}

// newHCLogger routes raft's hclog output into slog at warn level and above;
// raft is chatty at info.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: slogWriter{log: log.With("component", "raft")},
	})
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w.log.Warn(msg)
	return len(p), nil
}

// stampNow appends now_unix_nano to an encoded Command. Protobuf decoding
// keeps the last occurrence of a scalar field, so this overrides any value
// the command held, without copying or mutating the caller's message.
func stampNow(data []byte, now time.Time) []byte {
	data = protowire.AppendTag(data, nowUnixNanoField, protowire.VarintType)
	return protowire.AppendVarint(data, uint64(now.UnixNano()))
}

// nowUnixNanoField is Command.now_unix_nano's field number.
const nowUnixNanoField = 2

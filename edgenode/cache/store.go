package cache

import (
	"encoding/binary"
	"fmt"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// formatVersion changes whenever the layout below changes; a file of another
// version is treated as empty and rewritten by the next reset.
const formatVersion = "2"

var (
	bucketMeta       = []byte("meta")
	bucketTopology   = []byte("topology")
	bucketCells      = []byte("cells")
	bucketPlacements = []byte("placements")
	bucketMembers    = []byte("members")
	bucketBreakers   = []byte("breakers")
	bucketHealth     = []byte("health")
	bucketKeys       = []byte("keys")
	keyFormat        = []byte("format")
	keyRevision      = []byte("revision")
	keyClusterID     = []byte("cluster-id") // in meta; absent in files written before it: no id
	keyTopology      = []byte("topology")
)

var dataBuckets = [][]byte{bucketTopology, bucketCells, bucketPlacements, bucketMembers, bucketBreakers, bucketHealth, bucketKeys}

// statusBuckets were added to format 1 later: a file written before them
// lacks them, which reads as "no statuses" (every breaker closed) and gets
// them on the next write, so an upgrade keeps the cached state.
var statusBuckets = [][]byte{bucketBreakers, bucketHealth}

// Store is the bbolt file. Its methods are safe for concurrent use (bbolt
// serialises writers); Close must be called once nothing else uses it.
type Store struct {
	db   *bolt.DB
	path string
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Loader receives a stored state, record by record, without the whole state
// ever being held as one message. route.Builder implements it.
type Loader interface {
	SetClusterID(string)
	SetTopology(*pb.Topology)
	PutCell(*pb.Cell) error
	PutPlacement(key, cell string) error
	PutMember(*pb.Member) error
	PutBreaker(*pb.BreakerStatus) error
	PutHealth(*pb.HealthStatus) error
	PutKey(*pb.ApiKey) error
}

// Load feeds the stored state to l and returns its revision; 0 (and no call
// to l) when the file holds no state.
//
// A state that cannot be loaded (a record that does not decode, one that l
// refuses, or bbolt panicking on a page) fails with ErrCorrupt naming the
// file, after a copy of the file has been put aside (path.corrupt-*, as Open
// does) and the store emptied, so the edge starts without it and the next
// reset from a coordinator fills it again. l may then have received part of
// the state and must be discarded.
func (s *Store) Load(l Loader) (uint64, error) {
	var rev uint64
	err := guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			var err error
			rev, err = loadTx(tx, l)
			return err
		})
	})
	if err == nil {
		return rev, nil
	}
	aside, derr := s.discard()
	if derr != nil {
		return 0, fmt.Errorf("%w: %s: %w (and emptying it failed: %v; remove the file and restart the edge)", ErrCorrupt, s.path, err, derr)
	}
	return 0, fmt.Errorf("%w: %s: %w; emptied it, a copy is at %s", ErrCorrupt, s.path, err, aside)
}

// discard copies the file aside and removes the stored state.
func (s *Store) discard() (aside string, err error) {
	err = guard(func() error {
		aside = asideName(s.path)
		if err := s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(aside, fileMode) }); err != nil {
			return fmt.Errorf("copying it to %s: %w", aside, err)
		}
		pruneAside(s.path)
		return s.db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketMeta) == nil {
				return nil
			}
			return tx.DeleteBucket(bucketMeta)
		})
	})
	return aside, err
}

// loadTx reads the state in tx into l.
func loadTx(tx *bolt.Tx, l Loader) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || string(meta.Get(keyFormat)) != formatVersion {
		return 0, nil
	}
	var rev uint64
	if v := meta.Get(keyRevision); len(v) == 8 {
		rev = binary.BigEndian.Uint64(v)
	}
	if rev == 0 {
		return 0, nil
	}
	for _, name := range [][]byte{bucketTopology, bucketCells, bucketPlacements, bucketMembers} {
		if tx.Bucket(name) == nil {
			return 0, fmt.Errorf("bucket %s is missing", name)
		}
	}
	l.SetClusterID(string(meta.Get(keyClusterID)))
	topo := &pb.Topology{}
	if err := proto.Unmarshal(tx.Bucket(bucketTopology).Get(keyTopology), topo); err != nil {
		return 0, fmt.Errorf("topology: %w", err)
	}
	l.SetTopology(topo)
	if err := forEachMessage(tx, bucketCells, "cell", func(c *pb.Cell) error { return l.PutCell(c) }); err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketPlacements).ForEach(func(k, v []byte) error {
		return l.PutPlacement(string(k), string(v))
	}); err != nil {
		return 0, err
	}
	if err := forEachMessage(tx, bucketMembers, "member", func(m *pb.Member) error { return l.PutMember(m) }); err != nil {
		return 0, err
	}
	if err := forEachMessage(tx, bucketBreakers, "breaker", func(m *pb.BreakerStatus) error { return l.PutBreaker(m) }); err != nil {
		return 0, err
	}
	if err := forEachMessage(tx, bucketHealth, "health", func(m *pb.HealthStatus) error { return l.PutHealth(m) }); err != nil {
		return 0, err
	}
	if err := forEachMessage(tx, bucketKeys, "key", func(m *pb.ApiKey) error { return l.PutKey(m) }); err != nil {
		return 0, err
	}
	return rev, nil
}

// Revision is the revision of the stored state; 0 when there is none.
func (s *Store) Revision() (uint64, error) {
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil && string(meta.Get(keyFormat)) == formatVersion {
			if v := meta.Get(keyRevision); len(v) == 8 {
				rev = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	return rev, err
}

// Update is what one write transaction stores: optionally a whole state
// replacing everything, then changes in revision order, then the revision.
type Update struct {
	Reset    *pb.State
	Changes  []*pb.Change
	Revision uint64 // at least the last change's; raised by progress without changes
}

// revision is the revision the file holds once u is written.
func (u *Update) revision() uint64 {
	rev := u.Revision
	if u.Reset != nil {
		rev = max(rev, u.Reset.GetRevision())
	}
	if n := len(u.Changes); n > 0 {
		rev = max(rev, u.Changes[n-1].GetRevision())
	}
	return rev
}

// Write stores u in one transaction: after a crash the file holds either the
// state before u or the state after it.
func (s *Store) Write(u Update) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		fresh := meta == nil || string(meta.Get(keyFormat)) != formatVersion
		if u.Reset != nil || fresh {
			if err := resetBuckets(tx); err != nil {
				return err
			}
		}
		for _, name := range statusBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if u.Reset != nil {
			if err := putState(tx, u.Reset); err != nil {
				return err
			}
		} else if fresh {
			// Changes alone cannot describe a state; keep the file empty.
			return nil
		}
		for _, ch := range u.Changes {
			for _, ev := range ch.GetEvents() {
				if err := putEvent(tx, ev); err != nil {
					return fmt.Errorf("revision %d: %w", ch.GetRevision(), err)
				}
			}
		}
		var rev [8]byte
		binary.BigEndian.PutUint64(rev[:], u.revision())
		meta = tx.Bucket(bucketMeta)
		if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
			return err
		}
		return meta.Put(keyRevision, rev[:])
	})
}

func resetBuckets(tx *bolt.Tx) error {
	for _, name := range append([][]byte{bucketMeta}, dataBuckets...) {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

func putState(tx *bolt.Tx, st *pb.State) error {
	if id := st.GetClusterId(); id != "" {
		if err := tx.Bucket(bucketMeta).Put(keyClusterID, []byte(id)); err != nil {
			return err
		}
	}
	cfg := st.GetConfig()
	topo := &pb.Topology{Regions: cfg.GetRegions(), Latencies: cfg.GetLatencies(), DefaultCell: cfg.GetDefaultCell()}
	if err := putMessage(tx.Bucket(bucketTopology), keyTopology, topo); err != nil {
		return err
	}
	cells := tx.Bucket(bucketCells)
	for _, c := range cfg.GetCells() {
		if err := putMessage(cells, []byte(c.GetId()), c); err != nil {
			return err
		}
	}
	pl := tx.Bucket(bucketPlacements)
	for _, p := range cfg.GetPlacements() {
		if err := pl.Put([]byte(p.GetKey()), []byte(p.GetCell())); err != nil {
			return err
		}
	}
	members := tx.Bucket(bucketMembers)
	for _, m := range st.GetMembers() {
		if err := putMessage(members, []byte(m.GetName()), m); err != nil {
			return err
		}
	}
	for _, b := range st.GetBreakers() {
		if err := putMessage(tx.Bucket(bucketBreakers), []byte(b.GetEndpoint()), b); err != nil {
			return err
		}
	}
	for _, h := range st.GetHealth() {
		if err := putMessage(tx.Bucket(bucketHealth), []byte(h.GetEndpoint()), h); err != nil {
			return err
		}
	}
	for _, k := range st.GetKeys() {
		if err := putMessage(tx.Bucket(bucketKeys), []byte(k.GetId()), k); err != nil {
			return err
		}
	}
	return nil
}

func putEvent(tx *bolt.Tx, ev *pb.Event) error {
	switch k := ev.GetKind().(type) {
	case *pb.Event_PutCell:
		return putMessage(tx.Bucket(bucketCells), []byte(k.PutCell.GetId()), k.PutCell)
	case *pb.Event_DeleteCell:
		return tx.Bucket(bucketCells).Delete([]byte(k.DeleteCell))
	case *pb.Event_PutPlacement:
		return tx.Bucket(bucketPlacements).Put([]byte(k.PutPlacement.GetKey()), []byte(k.PutPlacement.GetCell()))
	case *pb.Event_DeletePlacement:
		return tx.Bucket(bucketPlacements).Delete([]byte(k.DeletePlacement))
	case *pb.Event_SetTopology:
		return putMessage(tx.Bucket(bucketTopology), keyTopology, k.SetTopology)
	case *pb.Event_PutMember:
		return putMessage(tx.Bucket(bucketMembers), []byte(k.PutMember.GetName()), k.PutMember)
	case *pb.Event_DeleteMember:
		return tx.Bucket(bucketMembers).Delete([]byte(k.DeleteMember))
	case *pb.Event_PutBreaker:
		return putMessage(tx.Bucket(bucketBreakers), []byte(k.PutBreaker.GetEndpoint()), k.PutBreaker)
	case *pb.Event_PutHealth:
		return putMessage(tx.Bucket(bucketHealth), []byte(k.PutHealth.GetEndpoint()), k.PutHealth)
	case *pb.Event_PutKey:
		return putMessage(tx.Bucket(bucketKeys), []byte(k.PutKey.GetId()), k.PutKey)
	case *pb.Event_SetClusterId:
		return tx.Bucket(bucketMeta).Put(keyClusterID, []byte(k.SetClusterId))
	default:
		return fmt.Errorf("event of unknown kind %T", k)
	}
}

func putMessage(b *bolt.Bucket, key []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// forEachMessage decodes every record of a bucket and passes it to fn. A
// missing bucket holds nothing.
func forEachMessage[M any, P interface {
	*M
	proto.Message
}](tx *bolt.Tx, bucket []byte, what string, fn func(P) error) error {
	b := tx.Bucket(bucket)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		m := P(new(M))
		if err := proto.Unmarshal(v, m); err != nil {
			return fmt.Errorf("%s %q: %w", what, k, err)
		}
		return fn(m)
	})
}

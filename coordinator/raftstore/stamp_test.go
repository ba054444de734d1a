package raftstore

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// An edge or a follower cannot choose the time a command applies at: the
// leader's stamp wins over any value the command carried.
func TestStampNowOverridesTheCallersClock(t *testing.T) {
	if n := (&pb.Command{}).ProtoReflect().Descriptor().Fields().ByName("now_unix_nano").Number(); n != nowUnixNanoField {
		t.Fatalf("now_unix_nano is field %d, stampNow writes %d", n, nowUnixNanoField)
	}
	cmd := &pb.Command{NowUnixNano: 42, Op: &pb.Command_Tick{Tick: &pb.TickOp{}}}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	leader := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	got := &pb.Command{}
	if err := proto.Unmarshal(stampNow(data, leader), got); err != nil {
		t.Fatal(err)
	}
	if got.GetNowUnixNano() != leader.UnixNano() || got.GetTick() == nil {
		t.Fatalf("decoded %v; want the tick stamped %d", got, leader.UnixNano())
	}
	if cmd.GetNowUnixNano() != 42 {
		t.Fatal("stamping modified the caller's command")
	}
}

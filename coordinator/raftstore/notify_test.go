package raftstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestIndexNotifierWakesWaitersAtTheirIndex(t *testing.T) {
	n := newIndexNotifier(3)
	if err := n.wait(context.Background(), 2); err != nil {
		t.Fatalf("an index already reached must not block: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.wait(context.Background(), 5) }()
	n.advance(4)
	select {
	case err := <-done:
		t.Fatalf("woke at index 4 waiting for 5: %v", err)
	default:
	}
	n.advance(5)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not woken at index 5")
	}
	n.advance(2) // never goes back
	if idx, _ := n.current(); idx != 5 {
		t.Fatalf("index went back to %d", idx)
	}
}

func TestIndexNotifierWaitHonoursContext(t *testing.T) {
	n := newIndexNotifier(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

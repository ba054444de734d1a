// Package watch owns the coordinator's publisher of state changes to edge
// Watch streams: a Hub that keeps the last changes in a ring buffer and runs
// one Serve loop per stream.
//
// The raft FSM calls Publish after each state change and Reset after a
// snapshot restore. Neither ever waits for a watcher (apply never waits): a
// watcher copies what it needs from the buffer under a short lock and sends
// outside it, so a stream stuck in gRPC flow control holds nothing but its own
// goroutine. When it comes back and the buffer has moved past it, it gets a
// reset: the whole state, then the changes after it.
//
// Publish wakes every waiting watcher at once by closing a channel and
// replacing it, so the delay from commit to every watcher is one goroutine
// wake-up plus the send, not a queue walk.
//
// Messages handed to send (changes and reset states) are shared between
// watchers: send may marshal them, concurrently with other watchers, but must
// never modify them.
package watch

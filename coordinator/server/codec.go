package server

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	// The proto codec this one falls back to.
	_ "google.golang.org/grpc/encoding/proto"
)

// encoded is a message already encoded, sent as its bytes: the watch hub
// encodes each change once for every caught-up watcher (Watches.Serve's
// wire), so a change to a thousand edges costs one encoding, not a
// thousand.
type encoded []byte

// codec is gRPC's proto codec, except that an encoded message is sent as
// it is. The bytes are shared by every stream they go to: gRPC only reads
// them (SliceBuffer's Free does nothing).
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return "proto" }

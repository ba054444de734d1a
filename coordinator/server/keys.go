package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// The API key RPCs. Ids and secrets are drawn here, before the log (apply
// must not be random); CreateKey and RotateKey run on the leader (see
// the method table), so that the key read back after the write is the one
// written, and the secret is shown once, in the reply.

// newKeyID returns "k_" and 16 random hex digits.
func newKeyID() string {
	var b [8]byte
	rand.Read(b[:])
	return "k_" + hex.EncodeToString(b[:])
}

// newSecret returns "sk_" and 256 random bits in unpadded base64url: the
// HMAC key is this string's bytes.
func newSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return "sk_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// CreateKey implements AdminService.
func (s *Server) CreateKey(ctx context.Context, req *pb.CreateKeyRequest) (*pb.CreateKeyResponse, error) {
	id := newKeyID()
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_CreateKey{CreateKey: &pb.CreateKeyOp{
		Id: id, Name: req.GetName(), Cells: req.GetCells(), Secret: newSecret(),
	}}})
	if err != nil {
		return nil, err
	}
	k, err := s.keyAt(id, rev)
	if err != nil {
		return nil, err
	}
	s.log.Info("api key created", "key", id, "name", req.GetName(), "revision", rev)
	return &pb.CreateKeyResponse{Key: k, Revision: rev}, nil
}

// RotateKey implements AdminService.
func (s *Server) RotateKey(ctx context.Context, req *pb.RotateKeyRequest) (*pb.RotateKeyResponse, error) {
	grace := time.Duration(req.GetGraceSeconds()) * time.Second
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_RotateKey{RotateKey: &pb.RotateKeyOp{
		Id: req.GetId(), Secret: newSecret(), GraceMs: uint32(min(grace.Milliseconds(), 1<<32-1)),
	}}})
	if err != nil {
		return nil, err
	}
	k, err := s.keyAt(req.GetId(), rev)
	if err != nil {
		return nil, err
	}
	s.log.Info("api key rotated", "key", req.GetId(), "grace", grace, "revision", rev)
	return &pb.RotateKeyResponse{Key: k, Revision: rev}, nil
}

// keyAt reads key id back from this member's state, which has applied rev.
func (s *Server) keyAt(id string, rev uint64) (*pb.ApiKey, error) {
	v := s.reader.View()
	keys, at := v.Keys(), v.Revision()
	for _, k := range keys {
		if k.GetId() == id {
			return k, nil
		}
	}
	return nil, status.Errorf(codes.Internal, "key %s written at revision %d is missing at revision %d", id, rev, at)
}

// RevokeKey implements AdminService.
func (s *Server) RevokeKey(ctx context.Context, req *pb.RevokeKeyRequest) (*pb.RevokeKeyResponse, error) {
	rev, err := s.write(ctx, &pb.Command{Op: &pb.Command_RevokeKey{RevokeKey: &pb.RevokeKeyOp{Id: req.GetId()}}})
	if err != nil {
		return nil, err
	}
	s.log.Info("api key revoked", "key", req.GetId(), "revision", rev)
	return &pb.RevokeKeyResponse{Revision: rev}, nil
}

// ListKeys implements AdminService; secrets never leave.
func (s *Server) ListKeys(ctx context.Context, req *pb.ListKeysRequest) (*pb.ListKeysResponse, error) {
	v, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	resp := &pb.ListKeysResponse{Revision: v.Revision()}
	for _, k := range v.Keys() {
		info := &pb.KeyInfo{
			Id: k.GetId(), Name: k.GetName(), Cells: k.GetCells(), Revoked: k.GetRevoked(),
			CreatedUnixMs: k.GetCreatedUnixMs(), RevokedUnixMs: k.GetRevokedUnixMs(),
			Secrets: uint32(len(k.GetSecrets())), ModRevision: k.GetModRevision(),
		}
		for _, sec := range k.GetSecrets() {
			if end := sec.GetNotAfterUnixMs(); end != 0 && (info.RotationEndsUnixMs == 0 || end < info.RotationEndsUnixMs) {
				info.RotationEndsUnixMs = end
			}
		}
		resp.Keys = append(resp.Keys, info)
	}
	return resp, nil
}

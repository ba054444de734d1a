package state

import (
	"errors"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/policy"
)

// validatePolicies checks a cell's auth, breaker and health-check policies
// and its panic threshold (internal/policy, which names the proto fields).
// Fields are relative to the cell ("breaker.max_ejection_ms").
func validatePolicies(c *pb.Cell) *pb.CommandError {
	var pe *policy.Error
	if !errors.As(policy.ValidateCell(c), &pe) {
		return nil
	}
	return invalid(pe.Field, "%s", pe.Reason)
}

// Policies are compared and copied with proto.Equal and proto.Clone: unlike
// endpoints and placements they are few (at most one each per cell), so
// reflection costs nothing that matters, and it cannot miss a new field.

func clonePolicy[M interface {
	proto.Message
	comparable
}](m M) M {
	var none M
	if m == none {
		return m
	}
	return proto.Clone(m).(M)
}

package configfile

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// FieldError says which line and which field of a file are wrong, and why.
// errors.Is(err, ErrInvalid) holds for every *FieldError.
type FieldError struct {
	// Line is the 1-based line in the file; 0 when unknown.
	Line int
	// Path names the field from the document root, e.g. "cells[0].endpoints[1].region";
	// empty for the document itself.
	Path string
	// Reason is what is wrong with it.
	Reason string
}

// Error reads "line 12: cells[0].endpoints[1].regoin: unknown field ...".
func (e *FieldError) Error() string {
	msg := e.Reason
	if e.Path != "" {
		msg = e.Path + ": " + msg
	}
	if e.Line > 0 {
		msg = fmt.Sprintf("line %d: %s", e.Line, msg)
	}
	return msg
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(n *yaml.Node, path, format string, args ...any) error {
	return &FieldError{Line: n.Line, Path: path, Reason: fmt.Sprintf(format, args...)}
}

// Package configfile owns the on-disk form of edgecell's declarative state: the
// routing config file that `edgecell apply -f` reads and `edgecell get config -o yaml`
// prints, and the JSON and YAML renderings of any API message that the CLI prints
// for scripts (-o json, -o yaml).
//
// Files are YAML (JSON is accepted too, being YAML). Field names are the proto
// field names in snake_case; the lowerCamel JSON names are accepted on input.
// Decoding is guided by the message descriptors, so an unknown or misplaced field
// is reported with its YAML line and its path (cells[0].endpoints[1].regoin), and
// a value that YAML reads as a number or a boolean is still taken as text where
// the field is a string (a routing key written as 123 is the key "123").
// protojson then performs the actual decoding, so the accepted forms of every
// value are those of the canonical proto3 JSON mapping.
package configfile

import "errors"

// ErrInvalid is the cause of every error that Load and Decode return for a document
// that is not a valid file: bad YAML syntax, an unknown field, a value of the wrong
// shape or type, or an empty document. Use errors.As with *FieldError to learn the
// line and the field.
var ErrInvalid = errors.New("invalid config file")

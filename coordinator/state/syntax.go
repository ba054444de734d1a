package state

import (
	"errors"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/names"
)

// Syntax limits. They are part of the API contract: the CLI and the docs
// describe the same rules (internal/names owns the id and region syntax).
const (
	// MaxRegionNameLen is the longest region name (a DNS label).
	MaxRegionNameLen = names.MaxRegionLen
	// MaxIDLen is the longest cell, endpoint or member id.
	MaxIDLen = names.MaxIDLen
	// MaxPlacementKeyLen is the longest routing key, in bytes.
	MaxPlacementKeyLen = 256
	// MaxWeight is the largest endpoint weight (0 means 1).
	MaxWeight = 10000
)

func checkRegionName(field, what, name string) *pb.CommandError {
	return checkName(field, what, name, names.ValidRegion, names.RegionRule)
}

func checkID(field, what, id string) *pb.CommandError {
	return checkName(field, what, id, names.ValidID, names.IDRule)
}

func checkName(field, what, name string, valid func(string) bool, rule string) *pb.CommandError {
	if name == "" {
		return invalid(field, "%s is required", what)
	}
	if !valid(name) {
		return invalid(field, "%s %q is invalid: %s", what, name, rule)
	}
	return nil
}

// checkPlacementKey allows 1..256 bytes of printable ASCII without spaces, so
// a key travels unchanged in an HTTP header and never contains the separator
// of the by-cell index.
func checkPlacementKey(field, key string) *pb.CommandError {
	if key == "" {
		return invalid(field, "placement key is required")
	}
	if len(key) > MaxPlacementKeyLen {
		return invalid(field, "placement key is %d bytes long; at most %d are allowed", len(key), MaxPlacementKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return invalid(field, "placement key %q has byte %q at offset %d: use printable ASCII without spaces", key, c, i)
		}
	}
	return nil
}

// checkEndpointURL allows absolute http and https URLs with a host and an
// optional path: the edge appends the request path and query itself, so a
// query, a fragment or credentials in the configured URL would be lost or leaked.
func checkEndpointURL(field, raw string) *pb.CommandError {
	if raw == "" {
		return invalid(field, "endpoint url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return invalid(field, "endpoint url %q is invalid: %v", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return invalid(field, "endpoint url %q must be an absolute http:// or https:// URL", raw)
	case u.Opaque != "" || u.Hostname() == "":
		return invalid(field, "endpoint url %q has no host; write it as http://host[:port][/path]", raw)
	case u.User != nil:
		return invalid(field, "endpoint url %q must not contain user information", raw)
	case u.RawQuery != "" || u.ForceQuery:
		return invalid(field, "endpoint url %q must not have a query; the edge forwards the request's own query", raw)
	case strings.ContainsRune(raw, '#'):
		return invalid(field, "endpoint url %q must not have a fragment", raw)
	}
	return nil
}

// checkHostPort requires host:port with a non-empty host and a port in 1..65535:
// members advertise these addresses to each other, so a wildcard like ":7101" is useless.
func checkHostPort(field, what, addr string) *pb.CommandError {
	if addr == "" {
		return invalid(field, "%s is required (host:port)", what)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalid(field, "%s %q is not host:port", what, addr)
	}
	if host == "" {
		return invalid(field, "%s %q has no host; give an address other members can reach", what, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return invalid(field, "%s %q has port %q; use a number in 1..65535", what, addr, port)
	}
	return nil
}

// unknownRegion explains which regions would have been accepted; the list is
// cut short so that a large topology does not flood the message.
func unknownRegion(field, what, name string, regions map[string]int) *pb.CommandError {
	if len(regions) == 0 {
		return invalid(field, "%s %q is not configured: no regions are configured", what, name)
	}
	names := make([]string, 0, len(regions))
	for r := range regions {
		names = append(names, r)
	}
	sort.Strings(names)
	const show = 10
	list := strings.Join(names[:min(show, len(names))], ", ")
	if len(names) > show {
		list += ", ... (" + strconv.Itoa(len(names)-show) + " more)"
	}
	return invalid(field, "%s %q is not configured; configured regions: %s", what, name, list)
}

// Package names owns the syntax of the names every part of edgecell shares:
// ids (cells, endpoints, members, edges) and region names. The coordinators
// validate configuration with it and certificates carry names that pass it,
// so a name a certificate holds is always one the state can hold.
package names

// Syntax limits. They are part of the API contract: the CLI and the docs
// describe the same rules.
const (
	// MaxRegionLen is the longest region name (a DNS label).
	MaxRegionLen = 63
	// MaxIDLen is the longest cell, endpoint, member or edge id.
	MaxIDLen = 128
)

// The rules as a user reads them in an error.
const (
	RegionRule = "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
	IDRule     = "use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"
)

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// ValidRegion reports whether name is a DNS label: [a-z0-9]([a-z0-9-]*[a-z0-9])?.
func ValidRegion(name string) bool {
	if name == "" || len(name) > MaxRegionLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isLowerAlnum(c) && (c != '-' || i == 0 || i == len(name)-1) {
			return false
		}
	}
	return true
}

// ValidID reports whether id matches [A-Za-z0-9][A-Za-z0-9._-]* within MaxIDLen.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen || !isAlnum(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

package cache

import "errors"

// Sentinel errors, wrapped with the file path or the failing record.
var (
	// ErrLocked: another process holds the cache file (another edge uses the
	// same data directory).
	ErrLocked = errors.New("cache file is locked by another process")
	// ErrCorrupt: the file could not be decoded. The caller should start
	// without a snapshot; the next reset from a coordinator rewrites the file.
	ErrCorrupt = errors.New("cache file is corrupt")
)

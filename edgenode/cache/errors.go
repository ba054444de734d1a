package cache

import "errors"

// Sentinel errors, wrapped with the file path or the failing record.
var (
	// ErrLocked: another process holds the cache file (another edge uses the
	// same data directory).
	ErrLocked = errors.New("cache file is locked by another process")
	// ErrCorrupt: the stored state could not be loaded (Load: the store was
	// emptied and a copy put aside), or a damaged file could not be moved
	// aside (Open). The caller starts without a snapshot; the next reset
	// from a coordinator rewrites the file.
	ErrCorrupt = errors.New("cache file is corrupt")
)

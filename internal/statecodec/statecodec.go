// Package statecodec is the one encoding of the values the coordinators'
// state machine keeps per endpoint (internal/breaker's Breaker,
// internal/health's State) in raft snapshots: versioned JSON,
//
//	{"V":<version>,"<key>":<the value's fields>}
//
// byte for byte what encoding/json gives for a struct {V int; <key> T}, so
// snapshots written before this package existed decode unchanged. Each
// package keeps its version, its key, its ErrCorrupt sentinel and the checks
// of what it decoded; this package owns only the envelope.
package statecodec

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Marshal encodes v under key in an envelope of version. key must be a
// plain identifier (it is written unescaped).
func Marshal(version int, key string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(`{"V":,"":}`)+20+len(key)+len(body))
	out = strconv.AppendInt(append(out, `{"V":`...), int64(version), 10)
	out = append(append(append(out, `,"`...), key...), `":`...)
	return append(append(out, body...), '}'), nil
}

// Unmarshal decodes into v the value that Marshal encoded under key with
// version. It fails on data that is not such an envelope (invalid JSON, a
// version other than version); a missing value leaves v as it was. Callers
// wrap the error with their own ErrCorrupt and then check what v holds.
func Unmarshal(data []byte, version int, key string, v any) error {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		return err
	}
	got := 0
	if raw, ok := env["V"]; ok {
		if err := json.Unmarshal(raw, &got); err != nil {
			return err
		}
	}
	if got != version {
		return fmt.Errorf("version %d, want %d", got, version)
	}
	if raw, ok := env[key]; ok {
		return json.Unmarshal(raw, v)
	}
	return nil
}

package clusterid

import (
	"strings"
	"testing"
)

func TestNewIDsAreValidAndDistinct(t *testing.T) {
	a, b := New(), New()
	if err := Validate(a); err != nil {
		t.Fatalf("New() = %q: %v", a, err)
	}
	if a == b {
		t.Fatalf("two New() calls returned the same id %q", a)
	}
}

func TestValidateNamesWhatIsWrong(t *testing.T) {
	for id, want := range map[string]string{
		"":                            "empty",
		strings.Repeat("a", MaxLen+1): "at most 64",
		"Prod":                        `"P" at byte 0`,
		"prod east":                   `" " at byte 4`,
		"prod\n":                      `"\n" at byte 4`,
	} {
		err := Validate(id)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want an error saying %s", id, err, want)
		}
	}
	if err := Validate("prod-eu-1"); err != nil {
		t.Errorf("Validate(prod-eu-1) = %v", err)
	}
}

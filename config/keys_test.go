package config

import (
	"strings"
	"testing"
)

// TestKeysDocumented: every key the configuration accepts has its text in
// keyDocs, and every text there names a key.
func TestKeysDocumented(t *testing.T) {
	keys := map[string]bool{}
	for _, k := range Keys() {
		keys[k.Path] = true
		if strings.TrimSpace(k.Doc) == "" {
			t.Errorf("key %s (%s) has no text in keyDocs", k.Path, k.Type)
		}
	}
	for path := range keyDocs() {
		if !keys[path] {
			t.Errorf("keyDocs has text for %s, which is no key of the configuration", path)
		}
	}
}

// TestKeysAreAccepted: a configuration that sets a key Keys lists is not
// refused as unknown (the list comes from the tags the checker uses).
func TestKeysAreAccepted(t *testing.T) {
	for _, k := range Keys() {
		if strings.Contains(k.Path, "[]") || strings.Contains(k.Path, "HOOK") {
			continue
		}
		parts := strings.Split(k.Path, ".")
		var b strings.Builder
		b.WriteString("plugins:\n  - {file: a.lua}\n")
		for i, p := range parts {
			b.WriteString(strings.Repeat("  ", i) + p + ":")
			if i < len(parts)-1 {
				b.WriteString("\n")
			}
		}
		b.WriteString(" ~\n") // null: the default applies
		_, err := Parse([]byte(b.String()), "luafw.yaml")
		if err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Errorf("%s: %v", k.Path, err)
		}
	}
}

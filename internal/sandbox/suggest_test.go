package sandbox

import "testing"

func TestClosest(t *testing.T) {
	names := []string{"ACCEPT", "DROP", "REJECT", "STOP", "REPEAT", "register", "ports", "rate", "set_mark"}
	for name, want := range map[string]string{
		"DORP":     "DROP", // a transposition
		"REJCT":    "REJECT",
		"regster":  "register",
		"port":     "ports",
		"rat":      "rate",
		"set_mrak": "set_mark",
		"DROP":     "", // itself is no suggestion
		"zzzz":     "",
		"x":        "",
	} {
		if got := Closest(name, names); got != want {
			t.Errorf("Closest(%q) = %q, want %q", name, got, want)
		}
	}
}

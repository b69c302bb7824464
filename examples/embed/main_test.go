package main

import (
	"strings"
	"testing"
)

func TestEmbed(t *testing.T) {
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"chain forward: priority -150 go/mgmt-allow",
		"chain forward: priority 0 guard/ssh-to-servers-only",
		"10.0.1.5 -> 10.0.2.10:22  accept",
		"10.0.1.5 -> 10.0.2.99:22  drop   by guard",
		"10.0.9.7 -> 10.0.2.99:22  stop   by go tags [mgmt]",
		"ssh to a non-server",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

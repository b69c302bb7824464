package daemon

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/luafw/luafw/config"
	"github.com/luafw/luafw/tests/lab"
)

func TestSameQueue(t *testing.T) {
	yes, no := true, false
	a := config.Queue{Balance: 2, FailOpen: &yes}
	b := config.Queue{Balance: 2, FailOpen: new(bool)}
	*b.FailOpen = true
	if !sameQueue(a, b) {
		t.Error("equal settings behind different pointers compare unequal")
	}
	if !sameQueue(config.Queue{}, config.Queue{FailOpen: &yes, GSO: &yes}) {
		t.Error("defaults and explicit defaults compare unequal")
	}
	if sameQueue(a, config.Queue{Balance: 2, FailOpen: &no}) || sameQueue(a, config.Queue{Balance: 1, FailOpen: &yes}) {
		t.Error("different settings compare equal")
	}
}

func TestCheckKernelNamesWhatIsMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		err := CheckKernel(context.Background(), true)
		if err == nil || !strings.Contains(err.Error(), "root") {
			t.Fatalf("not root: %v", err)
		}
		return
	}
	// Inside a lab namespace, root has everything luafw needs.
	l := lab.New(t, lab.Options{})
	if err := l.Router.Do(func() error { return CheckKernel(context.Background(), true) }); err != nil {
		t.Fatalf("CheckKernel as root: %v", err)
	}
}

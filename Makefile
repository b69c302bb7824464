# luafw — see README.md. `make demo` first, then `make test`.
GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
# staticcheck by its module version (v0.8.2 is the 2026.1 release; the
# module proxy refuses the 2026.1 form), installed under bin/ per version so
# that an older staticcheck on PATH or in GOBIN is never used.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
BIN       := bin/luafw
# VERSION: the release tag (v0.1.0 on the tagged commit; lightweight tags count
# too), or commit-derived text between releases. The tag is the one place a
# version is written; builds without -X (go install ...@v0.1.0) report the
# module version the go command stamps (cmd/luafw/version.go).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -X main.version=$(VERSION)
# install: DESTDIR stages, PREFIX is where the binary and unit live.
DESTDIR   ?=
PREFIX    ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR   ?= $(PREFIX)/lib/systemd/system

.PHONY: all build test test-race fmt-check lint bench bench-engine demo deps clean install verify-unit

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/luafw

# install puts the binary, the systemd unit (ExecStart names
# $(PREFIX)/bin/luafw) and an example configuration in place. An existing
# $(SYSCONFDIR)/luafw is left alone.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/luafw
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/luafw|$(PREFIX)/bin/luafw|g' \
	    -e 's|/etc/luafw/|$(SYSCONFDIR)/luafw/|g' \
	    -e 's|/usr/local/share/doc|$(PREFIX)/share/doc|g' \
	    dist/luafw.service > $(DESTDIR)$(UNITDIR)/luafw.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/luafw.service
	install -D -m 0644 docs/operating.md $(DESTDIR)$(PREFIX)/share/doc/luafw/operating.md
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/luafw/luafw.yaml ]; then \
	    echo "keeping $(DESTDIR)$(SYSCONFDIR)/luafw/luafw.yaml"; \
	else \
	    install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/luafw && \
	    install -m 0644 docs/examples/luafw.yaml docs/examples/no_telnet.lua docs/examples/ssh_guard.lua \
	        $(DESTDIR)$(SYSCONFDIR)/luafw/; \
	fi

# verify-unit checks dist/luafw.service with systemd-analyze, when present.
verify-unit:
	@if command -v systemd-analyze >/dev/null; then \
	    tmp=$$(mktemp -d) && cp dist/luafw.service $$tmp/ && \
	    sed -i "s|/usr/local/bin/luafw|$$(command -v true)|g" $$tmp/luafw.service && \
	    out=$$(systemd-analyze verify $$tmp/luafw.service 2>&1); rc=$$?; rm -rf $$tmp; \
	    [ -z "$$out" ] || { echo "$$out"; exit 1; }; exit $$rc; \
	else echo "systemd-analyze not found; skipping"; fi

# deps installs what the kernel-side tests and the demo need (root only).
deps:
	@bash scripts/deps.sh

# test runs everything: unit tests, plugin tests, (as root) the end-to-end
# tests on real network namespaces, and the patched gopher-lua's own tests.
test: deps build fmt-check
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	./$(BIN) test plugins/ docs/examples
	@$(GO) test -count=1 -v -run 'Corpus$$' ./internal/evasion | grep '^evasion corpus'

fmt-check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }


# lint: go vet on every package; staticcheck on every package except
# ./lua/..., the patched gopher-lua, which stays as close to its upstream
# release as possible so that the patches re-apply on an upgrade (go vet
# still covers it).
lint: fmt-check
	$(GO) vet ./...
	@test -x $(STATICCHECK) || GOFLAGS= GOBIN=$(CURDIR)/$(dir $(STATICCHECK)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) $$($(GO) list ./... | grep -Ev '^github.com/luafw/luafw/lua(/|$$)')

# test-race: the engine (internal/engine, its watchdog and sandbox, the
# host facade, host/state) and the daemon under the race detector.
test-race:
	$(GO) test -race -count=1 ./host/... ./internal/... ./daemon/...

bench-engine:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/engine/ ./host/...

bench: deps build bench-engine
	@bash scripts/bench.sh

demo: deps build
	@bash scripts/demo.sh

clean:
	rm -rf bin

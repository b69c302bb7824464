# luafw — see README.md. `make demo` first, then `make test`.
GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
# staticcheck by its module version (v0.8.2 is the 2026.1 release; the
# module proxy refuses the 2026.1 form), installed under bin/ per version so
# that an older staticcheck on PATH or in GOBIN is never used.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
BIN       := bin/luafw
# nfpm builds the Debian package (dist/nfpm.yaml), installed under bin/ by
# its module version like staticcheck.
NFPM_VERSION ?= v2.48.0
NFPM      := bin/tools/nfpm-$(NFPM_VERSION)/nfpm
# package: the architecture and where the .deb goes.
ARCH      ?= $(shell $(GO) env GOARCH)
PKGDIR    ?= dist/release
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

.PHONY: all build test test-race fmt-check lint bench bench-engine demo deps clean install verify-unit package release

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/luafw

# install puts in place the binary, the systemd unit (ExecStart names
# $(PREFIX)/bin/luafw), the shipped plugins and lists
# ($(PREFIX)/share/luafw/plugins), the docs, the man pages and completions
# (made by the binary), the editor and luacheck definitions of the Lua API
# ($(PREFIX)/share/luafw/editor), and the package's configuration (dist/luafw.yaml,
# which diverts only new inbound connections, to log them) with its paths
# under $(PREFIX). An existing $(SYSCONFDIR)/luafw/luafw.yaml is left alone.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/luafw
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/luafw|$(PREFIX)/bin/luafw|g' \
	    -e 's|/etc/luafw/|$(SYSCONFDIR)/luafw/|g' \
	    -e 's|/usr/local/share/doc|$(PREFIX)/share/doc|g' \
	    dist/luafw.service > $(DESTDIR)$(UNITDIR)/luafw.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/luafw.service
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/doc/luafw $(DESTDIR)$(PREFIX)/share/luafw/plugins/lists \
	    $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions \
	    $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/luafw/
	install -m 0644 plugins/README.md $$(ls plugins/*.lua | grep -v '_test\.lua$$') $(DESTDIR)$(PREFIX)/share/luafw/plugins/
	install -m 0644 plugins/lists/* $(DESTDIR)$(PREFIX)/share/luafw/plugins/lists/
	$(BIN) man --dir $(DESTDIR)$(PREFIX)/share/man/man8 && \
	    mv $(DESTDIR)$(PREFIX)/share/man/man8/luafw.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	$(BIN) completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/luafw
	$(BIN) completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_luafw
	$(BIN) completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/luafw.fish
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/luafw/editor
	install -m 0644 dist/editor/luafw.d.lua dist/editor/luacheckrc.lua $(DESTDIR)$(PREFIX)/share/luafw/editor/
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/luafw/luafw.yaml ]; then \
	    echo "keeping $(DESTDIR)$(SYSCONFDIR)/luafw/luafw.yaml"; \
	else \
	    install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/luafw && \
	    sed -e 's|/usr/share/luafw|$(PREFIX)/share/luafw|g' -e 's|/etc/luafw|$(SYSCONFDIR)/luafw|g' \
	        dist/luafw.yaml > $(DESTDIR)$(SYSCONFDIR)/luafw/luafw.yaml && \
	    chmod 0644 $(DESTDIR)$(SYSCONFDIR)/luafw/luafw.yaml; \
	fi

# package builds the Debian package for ARCH (default: this machine's) into
# PKGDIR: static stripped binary, unit, /etc/luafw/luafw.yaml (conffile),
# plugins, docs, man pages, completions (scripts/package.sh).
package: $(NFPM)
	@bash scripts/package.sh -v $(VERSION) -a $(ARCH) -o $(PKGDIR) -n $(NFPM)

# release VERSION=v0.x.y: static, stripped binaries for linux/amd64 and
# linux/arm64 (each built twice, from separate build caches, and compared),
# their .deb packages, SHA256SUMS and the release notes from CHANGELOG.md,
# in dist/release (scripts/release.sh).
release: $(NFPM)
	@bash scripts/release.sh -v $(VERSION) -n $(NFPM)

$(NFPM):
	GOFLAGS= GOBIN=$(CURDIR)/$(dir $(NFPM)) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

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
	rm -rf bin dist/release

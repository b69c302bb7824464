# luafw — see README.md. `make demo` first, then `make test`.
GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION ?= 2026.1
BIN       := bin/luafw

.PHONY: all build test fmt-check lint bench bench-engine demo deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/luafw

# deps installs what the kernel-side tests and the demo need (root only).
deps:
	@bash scripts/deps.sh

# test runs everything: unit tests, plugin tests, and (as root) the end-to-end
# tests on real network namespaces.
test: deps build fmt-check
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	./$(BIN) test plugins/ docs/examples

fmt-check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }


lint: fmt-check
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

bench-engine:
	$(GO) test -run '^$$' -bench . -benchmem ./host/...

bench: deps build bench-engine
	@bash scripts/bench.sh

demo: deps build
	@bash scripts/demo.sh

clean:
	rm -rf bin

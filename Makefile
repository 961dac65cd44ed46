# nfintercept — see README.md. All targets that touch the kernel need root and
# create their own network namespaces; none changes the root namespace.
GO      ?= go
BIN     ?= bin/nfintercept
CNI_BIN ?= bin/nfintercept-cni
FUZZTIME ?= 60s

.PHONY: all build deps tools test unit equivalence fuzz bench demo demo-cni lint clean

all: build

# Static, reproducible binary: what the benchmarks measure and what ships.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/nfintercept

# Debian packages the tests and the demo use (nft/iptables only as oracles).
deps:
	.ci/deps

# Reference binaries built from the Go module proxy (pilot-agent, the CNI
# reference plugins), outside the repo; see internal/tools.
tools:
	.ci/tools

# The test command CI runs: lint, every package's tests (unit, conformance,
# real-kernel integration, equivalence), then a bounded fuzz run.
test: deps tools lint
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 ./translate/ ./compat/ ./cmd/nfintercept/istioflags/

equivalence:
	$(GO) test -count=1 -timeout 30m -run 'Equivalence' -v ./integration/...

# Go fuzzes one target per run: option parsing/validation, then
# options → model → nft text and iptables view.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzOptionsConfig$$' -fuzztime $(FUZZTIME) ./cmd/nfintercept/istioflags/
	$(GO) test -run '^$$' -fuzz '^FuzzConfigText$$' -fuzztime $(FUZZTIME) ./translate/

bench: deps tools
	$(GO) run ./bench/cmd/benchdriver $(BENCHFLAGS)

demo: deps build
	$(GO) run ./integration/demo -bin $(BIN)

# The CNI plugin in the chain bridge+host-local -> loopback -> nfintercept-cni,
# run through libcni from a throwaway node namespace.
demo-cni: deps tools
	CGO_ENABLED=0 $(GO) build -trimpath -o $(CNI_BIN) ./cmd/nfintercept-cni
	$(GO) run ./integration/demo -cni $(CNI_BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin

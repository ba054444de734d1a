# edgecell: `make dev` runs a local three-region cluster, `make test` runs every test.
GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS_MOD := $(CURDIR)/tools/go.mod
BUF       := $(BIN)/buf

.PHONY: fuzz bench-signed-tls all build dev test test-short fault hostile soak fault-compose bench bench-proxy bench-idle loadtest-bench loadtest-report-check generate check-generated lint tools image clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/edgecell ./cmd/edgecell

dev: build
	$(BIN)/edgecell dev

test:
	$(GO) test -race -count=1 -timeout 30m ./...

test-short:
	$(GO) test -short -count=1 ./...

# The fault suite (test/fault, build tag fault): real coordinator and edge
# processes under a seeded nemesis, histories checked (porcupine, nonces,
# lost writes, crashed processes, static stability). Fixed seeds and one
# random seed, about three minutes; FAULT_SEED=N replays one seed's schedule.
# Partitions need root and iptables.
FAULT_SEED ?=
SOAK_RUNS  ?= 10
fault:
	FAULT_SEED=$(FAULT_SEED) $(GO) test -tags fault -count=1 -timeout 30m -v ./test/fault -run 'TestFault$$'

# The hostile-client suite: a real edge process over real sockets against
# request smuggling, header bombs, 10,000 slowloris connections, signed
# bodies announced and never sent, a hung upstream and revoked or idle
# tunnels (cmd/edgecell, TestHostile*). About a minute.
hostile:
	$(GO) test -count=1 -run 'TestHostile' ./cmd/edgecell

# SOAK_RUNS random seeds of the fault suite (about 40 s each), one line per
# run and a total line.
soak:
	SOAK_RUNS=$(SOAK_RUNS) $(GO) test -tags fault -count=1 -timeout 0 -v ./test/fault -run 'TestSoak$$'

# The compose deployment in Docker under faults a host of its own needs
# (docker network disconnect of the leader, docker kill of a member); builds
# its own image and tears everything down. About two minutes.
fault-compose:
	$(GO) test -tags compose -count=1 -v -timeout 15m ./test/compose

# Every fuzz target in the repository (each func Fuzz* in a _test.go file)
# for FUZZTIME each, starting from its seeds in testdata/fuzz; a finding
# fails the run and is written there as a new seed. For CI: make fuzz.
FUZZTIME ?= 10s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./gen/' | sort); do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz: $$name in $$(dirname $$f)"; \
			$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$(dirname $$f); \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-proxy: build
	bash deploy/bench/proxy.sh

# Memory of 10,000 idle keep-alive client connections (and of 10,000 that
# send nothing), the edge against nginx as a proxy, same run: RSS before and
# with them, per connection and the ratio edge/nginx. About a minute.
bench-idle:
	bash deploy/bench/idle.sh

# Signed traffic (a nonce check per request) through real processes with
# mutual TLS against the same with --insecure, alternating, same run.
bench-signed-tls: build
	bash deploy/bench/signed-tls.sh

# The load tool's own ceiling: 20,000 requests/s open-loop against a trivial server.
loadtest-bench:
	$(GO) test -run '^$$' -bench OpenLoop20k -benchtime 3x ./internal/harness/loadtest

# Renders a loadtest HTML report in headless Chromium (Debian: chromium); skips without it.
loadtest-report-check:
	$(GO) test -count=1 -v -run TestHTMLReportRendersInChromium ./internal/harness/loadtest

# The container image: FROM scratch around the static binary (no registry needed).
image: build
	rm -rf $(BIN)/image && mkdir -p $(BIN)/image/data $(BIN)/image/etc/ssl/certs
	cp $(BIN)/edgecell $(BIN)/image/edgecell
	cp /etc/ssl/certs/ca-certificates.crt $(BIN)/image/etc/ssl/certs/
	docker build -q -f deploy/Dockerfile -t edgecell:dev $(BIN)/image

# Pinned code generators, built from tools/go.mod so a fresh machine needs only Go.
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

$(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc: $(TOOLS_MOD)
	cd tools && $(GO) build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc

generate: tools
	rm -rf gen
	PATH=$(BIN):$$PATH $(BUF) generate

# Fails when gen/ differs from what the protos generate.
check-generated: generate
	@git diff --exit-code --stat -- gen || (echo "gen/ is stale: run 'make generate' and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen)" || (echo "gen/ has untracked files: run 'make generate' and commit" >&2; git status --porcelain -- gen; exit 1)

lint: tools
	$(BUF) lint
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'); echo "gofmt needed" >&2; exit 1)

clean:
	rm -rf $(BIN)

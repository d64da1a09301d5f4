# replicator — make targets. `make demo` and `make test` set up everything
# they need on a fresh Debian machine (see test/install-deps.sh).

GO      ?= go
BIN     := bin/replicator
VERSION := $(shell git describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null || echo dev)
COMMIT  := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DATE    := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
PKGS    := ./...

.PHONY: all build dist test-dist image deps demo test test-unit test-e2e test-matrix test-cluster chaos bench fuzz lint check-mod clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/replicator

# Release artifacts in $(DIST) for each of PLATFORMS: the static binary,
# a tar.gz, a deb and an rpm package (deploy/packages/nfpm.yaml), a
# CycloneDX SBOM, and SHA256SUMS over them all (see docs/releases.md).
# The packages' version comes from deploy/packages/version.sh. nfpm and
# cyclonedx-gomod are Go tool dependencies in tools/go.mod, built from the
# Go module proxy into $(TOOLS): nothing else is downloaded.
DIST        ?= dist
PLATFORMS   ?= linux/amd64 linux/arm64
PKG_VERSION := $(shell deploy/packages/version.sh 2>/dev/null || echo 0.0.0~unknown)
TOOLS       := .cache/tools
dist: $(TOOLS)/nfpm $(TOOLS)/cyclonedx-gomod
	GO="$(GO)" DIST="$(DIST)" VERSION="$(VERSION)" PKG_VERSION="$(PKG_VERSION)" LDFLAGS="$(LDFLAGS)" \
		NFPM=$(TOOLS)/nfpm CYCLONEDX=$(TOOLS)/cyclonedx-gomod deploy/packages/dist.sh $(PLATFORMS)
	@cat $(DIST)/SHA256SUMS

$(TOOLS)/nfpm $(TOOLS)/cyclonedx-gomod &: tools/go.mod tools/go.sum
	$(GO) build -modfile=tools/go.mod -o $(TOOLS)/ tool
	@touch $(TOOLS)/nfpm $(TOOLS)/cyclonedx-gomod

# make dist into a temporary directory, then its archives, checksums,
# SBOMs and packages checked with sha256sum, dpkg-deb and rpm.
test-dist:
	$(GO) test -count=1 -run '^TestDist' -v ./deploy/

# A minimal non-root image (from scratch: the static binary, CA
# certificates, /tmp) built with podman: $(IMAGE). Needs podman and runc
# (apt-get install -y podman runc); see deploy/container/Containerfile.
IMAGE ?= replicator:$(VERSION)
image:
	deploy/container/build.sh $(IMAGE) "$(LDFLAGS)"

# Installs Postgres 15 and ClickHouse from Debian's packages when missing.
deps:
	bash test/install-deps.sh

# Starts private Postgres and ClickHouse servers, creates public.events, runs
# setup and the daemon under a live workload, shows status and a query, and
# stops everything.
demo: deps build
	$(GO) run ./test/demo --binary $(BIN)

# Unit tests and end-to-end tests against real servers started by test/,
# on Debian's Postgres 15 (and 17 for failover slots, installed from the
# npm registry); then the core end-to-end tests (test-matrix) on
# TEST_PG_VERSIONS: 13, whose paths differ most (protocol 1, no logical
# messages, copies not split), about 90 s here. REPLICATOR_E2E=1 makes a
# missing server a failure instead of a skip.
TEST_PG_VERSIONS ?= 13
test: deps
	bash test/install-pg.sh 17 >/dev/null
	REPLICATOR_E2E=1 $(GO) test -count=1 -timeout 40m $(PKGS)
	@$(MAKE) --no-print-directory test-matrix PG_VERSIONS="$(TEST_PG_VERSIONS)"

# Unit tests only; needs no server.
test-unit:
	$(GO) test -short -count=1 $(PKGS)

test-e2e: deps
	REPLICATOR_E2E=1 $(GO) test -count=1 -timeout 25m -v ./test/

# The core end-to-end tests (MATRIX_TESTS: copy, kill -9, large and
# streamed transactions, a schema change, a partitioned table, a resync,
# heartbeats, a table added under every kind of publication, generated
# columns, prepared transactions) on each
# PostgreSQL version of PG_VERSIONS, one after the other (90-150 s each
# here); `make test` runs every test on Debian's 15
# and these on 13. test/install-pg.sh installs each version from the npm
# registry into .cache/postgres.
PG_VERSIONS  ?= 13 14 16 17 18
MATRIX_TESTS := ^(TestCopyInChunks|TestKill9DuringWorkload|TestLargeTransactionsOnEveryProtocol|TestStreamedTransactions|TestSchemaChangesWhileRunning|TestPartitionedTable|TestResyncMarksTheStream|TestHeartbeatAdvancesIdleSlot|TestAddTableAlreadyPublished|TestGeneratedColumns|TestPreparedTransactions)$$
test-matrix: deps
	@failed=""; for v in $(PG_VERSIONS); do \
		bash test/install-pg.sh $$v >/dev/null || exit 1; \
		echo "== PostgreSQL $$v"; start=$$(date +%s); \
		PG_VERSION=$$v REPLICATOR_E2E=1 $(GO) test -count=1 -timeout 20m -run '$(MATRIX_TESTS)' ./test/ || failed="$$failed $$v"; \
		echo "== PostgreSQL $$v: $$(( $$(date +%s) - start ))s"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-matrix failed on PostgreSQL$$failed"; exit 1; fi

# The cluster tests again and again (`make test` runs each once): the
# harness's cluster 20 times, then the replicator's cluster scenarios
# (a replica and the daemon killed under writers, replays on replicated
# storage) CLUSTER_COUNT times.
CLUSTER_COUNT ?= 5
test-cluster: deps
	REPLICATOR_E2E=1 $(GO) test -count=20 -timeout 20m -run '^TestCluster$$' ./test/harness/
	REPLICATOR_E2E=1 $(GO) test -count=$(CLUSTER_COUNT) -timeout 60m -run '^TestCluster' -v ./test/

# The long chaos run: >= 20 kill -9 (and a crash point between data and
# checkpoint), 3 ClickHouse restarts, ClickHouse unreachable for 30s, 3
# walsender terminations, a Postgres restart and a failover to a standby
# under a random workload.
# CHAOS_SEED=<n> replays a run.
chaos: deps
	CHAOS=long REPLICATOR_E2E=1 $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./test/

# Benchmark against the source-side limit (pg_recvlogical) measured in the
# same run; results in bench-results/ (see docs/benchmark.md). Each
# workload runs BENCH_RUNS times; every figure is the median of its runs.
BENCH_OUT  ?= bench-results/$(shell date -u +%Y%m%dT%H%M%SZ).txt
BENCH_RUNS ?= 3
bench: deps build
	$(GO) run ./test/bench --binary $(BIN) --out $(BENCH_OUT) --runs $(BENCH_RUNS)

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./replication
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzParseType$$' -fuzztime $(FUZZTIME) ./mapping
	$(GO) test -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime $(FUZZTIME) ./mapping
	$(GO) test -run '^$$' -fuzz '^FuzzBlock$$' -fuzztime $(FUZZTIME) ./mapping

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; skipped"; fi

check-mod:
	$(GO) mod tidy
	cd tools && $(GO) mod tidy
	git diff --exit-code go.mod go.sum tools/go.mod tools/go.sum

clean:
	rm -rf bin dist

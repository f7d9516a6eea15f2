# Toktra. `make run` starts the control plane on embedded defaults; `make test` runs every test.
GO ?= go
BIN := bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION := v0.8.2
GOBIN := $(shell $(GO) env GOPATH)/bin
DATA ?= ./toktra-data

.PHONY: all build run test proto proto-check lint tools bench

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/toktra-server run --data-dir $(DATA)

tools:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

proto:
	PATH="$(GOBIN):$$PATH" protoc -I proto \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/toktra/agent/v1/agent.proto

# Fails when the committed generated code is not what `make proto` makes.
# It generates into a temporary directory and changes nothing here.
proto-check:
	@tmp=$$(mktemp -d); \
	PATH="$(GOBIN):$$PATH" protoc -I proto \
		--go_out=$$tmp --go_opt=paths=source_relative \
		--go-grpc_out=$$tmp --go-grpc_opt=paths=source_relative \
		proto/toktra/agent/v1/agent.proto || { rm -rf $$tmp; exit 1; }; \
	for f in $$(cd $$tmp && find . -name '*.go'); do \
		if ! cmp -s $$tmp/$$f proto/$$f; then \
			echo "generated protobuf code is stale: run make proto and commit ($$f)"; rm -rf $$tmp; exit 1; fi; \
	done; rm -rf $$tmp

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

test: tools proto-check lint
	$(GO) test -race -count=1 -timeout 30m ./...

# Prints lock latency (API call to rule in force, p50/p99 over lock/override
# cycles with the real binaries) and the agent's idle RSS (needs root); usage
# ingestion into Postgres; anomaly detection for one user with 100k events;
# snapshot rendering; and the anomaly detector's precision and recall.
bench:
	$(GO) test -run '^$$' -bench BenchmarkLockLatency -benchtime 100x ./e2e
	$(GO) test -run '^$$' -bench . -benchtime 5x ./controlplane/store/pg/ ./controlplane/usage/ ./controlplane/anomaly/ ./controlplane/snapshot/
	$(GO) run ./cmd/toktra-eval

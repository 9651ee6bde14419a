# Sluice — the two commands that matter: `make run` and `make test`.
GO        ?= go
BIN       := bin/sluice
PKGS      := ./...

.PHONY: all help build run test test-short bench lint hygiene fuzz clean

all: build

## help: list the documented targets
help:
	@grep -E '^## [a-z-]+: ' $(MAKEFILE_LIST) | sed 's/^## //' | \
	  awk -F': ' '{ t = $$1; sub(/^[^:]*: /, ""); printf "  %-11s %s\n", t, $$0 }'

## build: build bin/sluice
build:
	$(GO) build -o $(BIN) ./cmd/sluice

## run: one working single node on :8000 (no Redis needed), rules from testdata/rules.json
run: build
	./$(BIN) serve --node-id n1 --data-dir ./sluice-data/n1

## test: vet + every test (unit, in-process clusters, real redis-server, real sluice processes)
test: lint
	$(GO) test -race -timeout 30m $(PKGS)

## test-short: every test except the multi-process system tests (cmd/sluice/systest)
test-short: lint
	$(GO) test -race -timeout 15m $$($(GO) list $(PKGS) | grep -v /cmd/sluice/systest)

## bench: Go benchmarks, `sluice bench` against a local 3-node cluster with Redis, warm keys with and without Redis (see docs/PERFORMANCE.md)
bench: build
	$(GO) test -run '^$$' -bench . -skip WarmKeys -benchmem -cpu 1,2 ./buckets/ ./api/ ./api/check/ ./node/...
	$(GO) test -run '^$$' -bench WarmKeys -benchtime 3000000x -timeout 15m ./node/engine/
	$(GO) test -run '^$$' -bench Renew -benchtime 20000x ./lua/
	./deploy/bench-local.sh
	./deploy/bench-warmkeys.sh

## lint: gofmt and go vet must be clean; no tracked binaries or files over 1 MB
lint: hygiene
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

## hygiene: fail if a tracked file is binary or over 1 MB
hygiene:
	./.ci/tracked-files

## fuzz: run each fuzz target for a minute
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./fsm/rules/
	$(GO) test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 60s ./api/check/
	$(GO) test -run '^$$' -fuzz FuzzDecodeBatch -fuzztime 60s ./api/check/

## clean: remove bin/ and sluice-data/
clean:
	rm -rf bin sluice-data

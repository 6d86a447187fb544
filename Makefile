# runbook: `make demo` runs the main job on the lab, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
LAB_DIR ?= .lab

.PHONY: all build lab setup test test-short test-lab bench lint fuzz demo demo-down clean

all: build

build:
	$(GO) build -o $(BIN)/runbook ./cmd/runbook

setup:
	./scripts/setup.sh

# The lab is a separate module (lab/go.mod): kube-apiserver and friends
# compile once (about 10 minutes cold on two cores), then come from Go's
# build cache.
lab:
	cd lab && $(GO) build -o ../$(BIN)/runbook-lab ./cmd/runbook-lab

# The fast loop: vet, unit tests, CLI scripts; no lab.
test-short: build
	$(GO) vet ./...
	$(GO) test -short -count=1 ./...

# Everything: unit tests, CLI scripts, the SSH transport against real sshd,
# and the lab's own tests against a running lab. The lab scripts of
# cmd/runbook take about 10 minutes on two cores (the crash test alone 6),
# past go test's default 10-minute limit.
test: setup build lab lint
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) test-lab

test-lab: setup lab
	cd lab && RUNBOOK_LAB_BIN=$(CURDIR)/$(BIN)/runbook-lab $(GO) test -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd lab && $(GO) vet ./...

bench: setup build lab
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./engine/ ./plans/
	./scripts/bench-plan.sh
	./scripts/bench-drain.sh
	$(GO) test -run TestPlanListsOncePerNode -v -count=1 ./steps/drain/ | grep requests
	$(GO) test -run '^$$' -bench 'BenchmarkRun$$' -benchtime 500x ./internal/sshconn/
	$(GO) test -run '^$$' -bench 'BenchmarkFleet' -benchtime 1x ./internal/sshconn/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./plans/

# The main job on the lab: start a lab, show the plan of the upgrade.
demo: setup build lab
	./scripts/demo.sh

demo-down:
	-$(BIN)/runbook-lab down --dir $(LAB_DIR)

clean: demo-down
	rm -rf $(BIN)

# The remediator and companion-api. `make run` starts both on embedded
# defaults; `make test` installs what the tests need and runs them.

GO        ?= go
DATA_DIR  ?= ./data
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build run run-remediator run-api test deps lint bench clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# run starts companion-api on 127.0.0.1:8080 in the background and the
# remediator on 127.0.0.1:9095 in the foreground; Ctrl-C stops both.
run: build
	./bin/companion-api --addr 127.0.0.1:8080 & api=$$!; \
	trap 'kill $$api 2>/dev/null' EXIT INT TERM; \
	./bin/remediator serve --config examples/remediator.yml --data-dir $(DATA_DIR)

run-remediator: build
	./bin/remediator serve --config examples/remediator.yml --data-dir $(DATA_DIR)

run-api: build
	./bin/companion-api --addr 127.0.0.1:8080

# deps installs the Debian packages the tests start for real, and builds
# etcd, kube-apiserver and kube-controller-manager from the Go module proxy
# into the user's cache (7 to 20 minutes the first time, instant after).
deps:
	./deploy/test/install-deps.sh
	bash remediator/kube/kubetest/tools/build.sh

test: deps
	$(GO) test -race -count=1 -timeout 40m ./...

# bench runs the benchmarks whose figures the README reports.
bench:
	$(GO) test -run '^$$' -bench Intake -benchtime 20000x -count 3 ./remediator/engine/
	$(GO) test -run '^$$' -bench Match ./remediator/playbook/
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 10m ./apiserver
	$(GO) test -count=1 -run TestAlertToFirstAPIRequestLatency -v ./remediator/kube/

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin $(DATA_DIR)

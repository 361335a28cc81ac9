# fedrisk developer tasks. `make help` lists them.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: help build test race check fmt vet bench fuzz rules ci clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/fedrisk
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/fedrisk ./cmd/fedrisk

test: ## run the tests (the README's test command)
	$(GO) test $(PKGS)

race: ## run the tests with the race detector
	$(GO) test -race $(PKGS)

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet
	$(GO) vet $(PKGS)

check: ## gofmt check, go vet and the tests: what CI runs
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	$(GO) test $(PKGS)

bench: ## run the Go benchmarks (numbers go to docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz: ## fuzz every FuzzXxx for FUZZTIME each (default 20s)
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} $$pkg || exit 1; \
	  done; \
	done

rules: ## promtool and amtool: check and unit-test the rule files, check prometheus.yml and alertmanager.yml
	promtool check rules deploy/monitoring/*_rules.yml
	promtool test rules deploy/monitoring/*_rules_test.yml
	promtool check config deploy/monitoring/prometheus.yml
	amtool check-config deploy/monitoring/alertmanager.yml

ci: ## run .ci/run (starts PostgreSQL and Redis if needed)
	bash .ci/run

clean: ## remove build output and the default data directory
	rm -rf bin fedrisk-data

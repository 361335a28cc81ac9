# fedrisk developer tasks. `make help` lists them.
GO      ?= go
PKGS    ?= ./...
# BUILD_VERSION, not VERSION: the runbook's VERSION (stable/canary) may be
# set in an operator's shell and must not become the image tag.
BUILD_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE   ?= localhost/fedrisk:$(BUILD_VERSION)
PODMAN  ?= podman
STATICCHECK ?= staticcheck
STATICCHECK_VERSION ?= v0.8.2

.PHONY: help build test race check fmt vet lint bench fuzz rules ci clean image image-check deploy-test contract

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/fedrisk
	$(GO) build -ldflags "-X main.version=$(BUILD_VERSION)" -o bin/fedrisk ./cmd/fedrisk

test: ## run the tests (the README's test command)
	$(GO) test $(PKGS)

race: ## run the tests with the race detector
	$(GO) test -race $(PKGS)

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet
	$(GO) vet $(PKGS)

lint: ## staticcheck on both modules (go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION))
	$(STATICCHECK) $(PKGS)
	cd deploy && $(STATICCHECK) ./...

check: ## gofmt check, go vet, staticcheck and the tests
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	$(MAKE) lint
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

image: ## container image with podman: static binary built here, copied onto scratch (Dockerfile)
	rm -rf bin/image && mkdir -p bin/image/etc/ssl/certs bin/image/data bin/image/tmp
	CGO_ENABLED=0 $(GO) build -tags nodemodata -trimpath -ldflags "-s -w -X main.version=$(BUILD_VERSION)" -o bin/image/fedrisk ./cmd/fedrisk
	cp /etc/ssl/certs/ca-certificates.crt bin/image/etc/ssl/certs/ca-certificates.crt
	printf 'root:x:0:0:root:/:/sbin/nologin\nfedrisk:x:65532:65532:fedrisk:/data:/sbin/nologin\n' > bin/image/etc/passwd
	printf 'root:x:0:\nfedrisk:x:65532:\n' > bin/image/etc/group
	chmod 0750 bin/image/data && chmod 1777 bin/image/tmp
	$(PODMAN) build --format docker --build-arg VERSION=$(BUILD_VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -t $(IMAGE) -t localhost/fedrisk:latest .

image-check: ## check the built image by its contents: config, size, non-root, /health and version of its entrypoint
	$(PODMAN) save --format docker-archive -o bin/fedrisk-image.tar $(IMAGE)
	cd deploy && FEDRISK_TEST_IMAGE_ARCHIVE=$(CURDIR)/bin/fedrisk-image.tar FEDRISK_TEST_IMAGE_VERSION=$(BUILD_VERSION) \
	  $(GO) test -count=1 -run '^TestImage$$' -v ./validate/

deploy-test: ## the deploy module's tests: compose-go, helm render + lint, strict decoding, semantics against a real node
	cd deploy && $(GO) test -count=1 ./...

contract: ## the README's run command in a fresh clone, exactly as written, stopped with SIGINT
	bash scripts/readme-contract.sh check-run

clean: ## remove build output and the default data directory
	rm -rf bin fedrisk-data

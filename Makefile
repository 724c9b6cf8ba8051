# Gatehouse build and test entry points. `make run` and `make test` are the
# two commands the README promises work on a fresh machine.

GO       ?= go
BIN      := bin/gatehouse
DATA_DIR ?= ./data
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

# Tests run against PostgreSQL too; scripts/test-deps.sh installs what the
# tests need (Debian packages, as root) and starts PostgreSQL if needed.
export GATEHOUSE_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable

.PHONY: build run test test-deps test-race bench bench-hooks bench-mosquitto lint fmt tidy clean mosquitto-plugin

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gatehouse

# First run: creates the CA, the SQLite database and prints the admin token,
# UI password and hook secret. Later runs reuse ./data (init --if-missing only
# adds a hook secret to a data dir made before init generated one).
run: build
	./$(BIN) init --data-dir $(DATA_DIR) --if-missing
	./$(BIN) serve --data-dir $(DATA_DIR)

test: test-deps
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -timeout 10m -tags pkcs11 -run SoftHSM ./ca ./cmd/gatehouse

# A no-op when everything is there; `make test-deps DRY_RUN=1` only prints.
test-deps:
	bash scripts/test-deps.sh $(if $(DRY_RUN),--dry-run)

test-race: test-deps
	$(GO) test -count=1 -race -timeout 45m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

# EMQX authz over HTTP vs a no-op echo handler (needs wrk and taskset).
bench-hooks:
	bash tools/hookbench/run.sh 10

# Mosquitto CONNECT storm (N=1000, 10000) and publish throughput, plain TLS
# vs the gatehouse plugin when built (scripts/bench-mosquitto.sh).
bench-mosquitto:
	bash scripts/bench-mosquitto.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff

# The gatehouse-mosquitto plugin (brokers/mosquitto), for Mosquitto 2.x.
# Needs Debian's mosquitto-dev, libmosquitto-dev, libcurl4-openssl-dev, libcjson-dev, libssl-dev.
MOSQ_PLUGIN := brokers/mosquitto/gatehouse-mosquitto.so
MOSQ_CFLAGS ?= -O2 -g
MOSQ_CFLAGS += -std=gnu11 -fPIC -Wall -Wextra -Werror -fvisibility=hidden -D_GNU_SOURCE
MOSQ_PKGS   := libcurl libcjson openssl

mosquitto-plugin: $(MOSQ_PLUGIN)

$(MOSQ_PLUGIN): brokers/mosquitto/gatehouse_plugin.c
	$(CC) $(MOSQ_CFLAGS) $$(pkg-config --cflags $(MOSQ_PKGS)) -shared -o $@ $< \
		$$(pkg-config --libs $(MOSQ_PKGS)) -lpthread

clean:
	rm -rf bin $(MOSQ_PLUGIN)

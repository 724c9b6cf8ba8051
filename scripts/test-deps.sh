#!/usr/bin/env bash
# Everything `make test` needs on a Debian machine (12 "bookworm" or later),
# set up here so a fresh machine needs only Go and this checkout:
#
#   openssl              ca, api and e2e tests verify chains, CRLs and OCSP with it
#   postgresql(-client)  every store/api test runs on SQLite and PostgreSQL
#   rabbitmq-server      private RabbitMQ nodes for the broker e2e tests
#   mosquitto(-clients)  private Mosquitto brokers and mosquitto_pub/_sub
#   mosquitto-dev, libmosquitto-dev, libcurl4-openssl-dev, libcjson-dev, libssl-dev, gcc,
#   libc6-dev, pkg-config  build the gatehouse-mosquitto plugin
#                        (`make mosquitto-plugin`, brokers/mosquitto)
#   softhsm2, opensc     the PKCS#11 issuing-key tests (-tags pkcs11): a SoftHSM2
#                        token each test makes, checked with pkcs11-tool
#   chromium             the headless web UI test (cmd/gatehouse/ui_e2e_test.go)
#   nodejs               runs ui/static/dom.js in ui/security_test.go
#   make                 this entry point
#
# It looks first and installs only what is missing, so on a machine that has
# everything it is a fast no-op (a few stat calls and one PostgreSQL ping).
# Installing needs root; otherwise it names the packages and the command and
# exits 1. It then makes sure the PostgreSQL that GATEHOUSE_TEST_POSTGRES
# points at answers, starting the local cluster when it is on loopback.
#
#   scripts/test-deps.sh            check, install what is missing, start PostgreSQL
#   scripts/test-deps.sh --dry-run  only print what it would do; exit 0
set -euo pipefail

dry=false
case "${1:-}" in
  --dry-run|-n) dry=true ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

say() { echo "test-deps: $*" >&2; }
is_root() { [ "$EUID" -eq 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }
is_exec() { [ -x "$1" ] && [ ! -d "$1" ]; }

# ---------------------------------------------------------------------------
# Packages. Each check looks where the tests look (internal/testbroker,
# cmd/gatehouse/ui_e2e_test.go); sbin may be missing from a non-root PATH.

need=()
add() { local p; for p in "$@"; do [[ " ${need[*]-} " == *" $p "* ]] || need+=("$p"); done; }

have openssl || add openssl
have make || add make
# ps: the broker tests check that no process is left behind.
have ps || add procps
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && have pg_ctlcluster || add postgresql
have pg_isready && have psql || add postgresql-client
is_exec /usr/lib/rabbitmq/bin/rabbitmq-server && is_exec /usr/lib/rabbitmq/bin/rabbitmqctl || add rabbitmq-server
have epmd || is_exec /usr/bin/epmd || add erlang-base
have mosquitto || is_exec /usr/sbin/mosquitto || add mosquitto
have mosquitto_pub && have mosquitto_sub || add mosquitto-clients
[ -f /usr/include/mosquitto_plugin.h ] && [ -f /usr/include/mosquitto_broker.h ] || add mosquitto-dev
# mosquitto-dev does not pull in mosquitto.h, which the plugin includes too.
[ -f /usr/include/mosquitto.h ] || add libmosquitto-dev
compgen -G '/usr/include/*/curl/curl.h' >/dev/null || [ -f /usr/include/curl/curl.h ] || add libcurl4-openssl-dev
[ -f /usr/include/cjson/cJSON.h ] || add libcjson-dev
[ -f /usr/include/openssl/ssl.h ] || add libssl-dev
have gcc || add gcc
[ -f /usr/include/stdio.h ] || add libc6-dev
have pkg-config || add pkg-config
[ -f /usr/lib/softhsm/libsofthsm2.so ] && have softhsm2-util || add softhsm2
have pkcs11-tool || add opensc
{ [ -n "${GATEHOUSE_CHROMIUM:-}" ] && is_exec "$GATEHOUSE_CHROMIUM"; } || is_exec /usr/bin/chromium ||
  is_exec /usr/bin/chromium-browser || add chromium
have node || add nodejs

installed_postgres=false
if [ "${#need[@]}" -gt 0 ]; then
  cmd="apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${need[*]}"
  if $dry; then
    say "missing: ${need[*]}"
    say "would run: $cmd"
  elif ! is_root; then
    say "missing Debian packages: ${need[*]}"
    say "install them as root, then run make test again:"
    say "  sudo bash scripts/test-deps.sh      (= sudo sh -c '$cmd')"
    exit 1
  else
    say "installing: ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
    [[ " ${need[*]} " == *" postgresql "* ]] && installed_postgres=true
  fi
fi

# ---------------------------------------------------------------------------
# PostgreSQL. Tests skip it only when GATEHOUSE_TEST_POSTGRES is empty (and CI
# is unset); a server elsewhere is the caller's to run.

dsn="${GATEHOUSE_TEST_POSTGRES-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
[ -n "$dsn" ] || { say "GATEHOUSE_TEST_POSTGRES is empty: PostgreSQL tests will be skipped"; exit 0; }

# host and port of a postgres:// URL (the only form the Makefile and CI use).
rest="${dsn#*://}"; rest="${rest#*@}"; hostport="${rest%%[/?]*}"
case "$hostport" in
  \[*\]:*) host="${hostport%%]*}"; host="${host#[}"; port="${hostport##*]:}" ;;
  \[*\]) host="${hostport#[}"; host="${host%]}"; port=5432 ;;
  *:*) host="${hostport%:*}"; port="${hostport##*:}" ;;
  *) host="$hostport"; port=5432 ;;
esac
# Only Debian's default cluster (port 5432 on loopback) is ours to start.
case "$host:$port" in
  127.0.0.1:5432|localhost:5432|::1:5432) local_pg=true ;;
  *) local_pg=false ;;
esac

if $dry; then
  if $local_pg; then
    say "would start the local PostgreSQL cluster on $host:$port if it is not answering"
  else
    say "PostgreSQL at $host:$port is not local: not managed here"
  fi
  exit 0
fi
$local_pg || exit 0

pg_ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }
# The client binary itself: Debian's /usr/bin/psql is a Perl wrapper that
# costs more than the query.
psql=$(compgen -G '/usr/lib/postgresql/*/bin/psql' | sort -V | tail -n 1) || true
pg_login() { PGCONNECT_TIMEOUT=5 "${psql:-psql}" "$dsn" -w -Atqc 'select 1' >/dev/null 2>&1; }

# The usual case, up and letting the test DSN in: one round trip.
pg_login && exit 0

if ! pg_ready; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1) || true
  if [ -z "$version" ] || [ ! -d "/etc/postgresql/$version/main" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    is_root || { say "no PostgreSQL cluster: run as root: pg_createcluster $version main --start"; exit 1; }
    say "creating PostgreSQL $version cluster main"
    pg_createcluster "$version" main
  fi
  if ! is_root && [ "$(id -un)" != postgres ]; then
    say "PostgreSQL is not answering on $host:$port; start it as root:"
    say "  sudo pg_ctlcluster $version main start"
    exit 1
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
  pg_ready || { say "PostgreSQL did not come up on $host:$port"; exit 1; }
fi

if ! pg_login; then
  # A fresh Debian cluster asks for a password on TCP, and the test DSN has
  # none. Only a cluster this run installed is changed (trust for the
  # postgres role on loopback, a test machine's setting); an existing
  # server's authentication is the owner's to decide.
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if $installed_postgres && is_root && ! grep -q 'gatehouse test-deps' "$hba"; then
    say "letting the postgres role in over loopback without a password ($hba)"
    { printf '%s\n' \
        '# gatehouse test-deps: the test DSN logs in as postgres over loopback without a password' \
        'host all postgres 127.0.0.1/32 trust' \
        'host all postgres ::1/128 trust'
      cat "$hba"; } >"$hba.new"
    chown --reference="$hba" "$hba.new"; chmod --reference="$hba" "$hba.new"
    mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 0.5
  fi
  pg_login || {
    say "cannot log in with GATEHOUSE_TEST_POSTGRES=$(printf '%s' "$dsn" | sed -E 's#//([^:@/]*):[^@/]*@#//\1:***@#')"
    say "give it a password (postgres://postgres:PASSWORD@...) or, on a test machine, add to $hba:"
    say "  host all postgres 127.0.0.1/32 trust"
    exit 1
  }
fi

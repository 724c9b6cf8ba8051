#!/usr/bin/env bash
# Starts the local services the test suite needs when they are not running.
# Tests that need a private broker instance start and stop their own.
set -euo pipefail

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! pg_ready; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "test-services: PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 1
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "test-services: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
  pg_ready || { echo "test-services: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
fi

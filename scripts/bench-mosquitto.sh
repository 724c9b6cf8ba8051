#!/usr/bin/env bash
# Mosquitto CONNECT storm and publish throughput, one command:
#
#   bash scripts/bench-mosquitto.sh            # N=1000 and N=10000, QoS 0 and 1
#   BENCH_NS="1000" BENCH_DURATION=5s bash scripts/bench-mosquitto.sh
#
# It starts its own `gatehouse serve` (fresh data dir) and its own private
# mosquitto instances on free loopback ports, checks that the PIDs it
# measures are the processes it started (nonce in their command line, the
# PID owning the listening port), fails if any start fails, and stops them
# by PID. Two brokers run side by side, identical but for the auth plugin:
#
#   plain   TLS only: require_certificate true, use_identity_as_username true
#   plugin  the same but use_identity_as_username false, plus the gatehouse-mosquitto
#           plugin (the README's configuration), when its .so exists
#
# Environment:
#   BENCH_NS            storm sizes (default "1000 10000")
#   BENCH_SPOOF         spoofing clients per storm (default 10)
#   BENCH_REVOKED       revoked devices per storm (default 10)
#   BENCH_PUBLISHERS    publishers in the throughput runs (default 20)
#   BENCH_DURATION      publishing time per run (default 10s)
#   BENCH_TIMEOUT       per-connection limit in the storms (default 30s)
#   BENCH_STORM_ARGS    extra connect-storm flags
#   BENCH_PACED         after each all-at-once storm, the same storm with at most
#                       this many connection attempts in flight (default 100; 0: skip)
#   BENCH_RECONNECT     after the storms, restart each broker and let the largest
#                       storm's devices reconnect (paced as BENCH_PACED; default 1;
#                       0: skip): the broker's caches are empty, Gatehouse's are warm
#   BENCH_DEVICES_DIR   enrolled-device cache (default: in the work dir);
#                       only reused while the same Gatehouse CA vouches for it
#   GATEHOUSE_MOSQ_PLUGIN       plugin .so (default brokers/mosquitto/gatehouse-mosquitto.so)
#   GATEHOUSE_MOSQ_PLUGIN_OPTS  plugin_opt_* lines; {{HOOKS_URL}}, {{HOOKS_SECRET_FILE}},
#                               {{HOOKS_SECRET}} and {{API_URL}} are substituted
#   BENCH_KEEP=1        keep the work dir
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
NS=${BENCH_NS:-"1000 10000"}
SPOOF=${BENCH_SPOOF:-10}
REVOKED=${BENCH_REVOKED:-10}
PUBLISHERS=${BENCH_PUBLISHERS:-20}
DURATION=${BENCH_DURATION:-10s}
PLUGIN=${GATEHOUSE_MOSQ_PLUGIN:-$ROOT/brokers/mosquitto/gatehouse-mosquitto.so}
PLUGIN_OPTS=${GATEHOUSE_MOSQ_PLUGIN_OPTS:-$'plugin_opt_url {{HOOKS_URL}}\nplugin_opt_secret_file {{HOOKS_SECRET_FILE}}'}

# Ten thousand client sockets here and as many in the broker.
# N client sockets in the bench process and as many in each broker.
ulimit -n "$(ulimit -Hn)"
max=$PUBLISHERS
for n in $NS; do [ "$n" -gt "$max" ] && max=$n; done
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((max + 1000)) ]; then
	echo "bench: open-file limit $(ulimit -n) is too low for N=$max (raise the hard limit)" >&2
	exit 1
fi

WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
NONCE=$(basename "$WORK")
PIDS=()
cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [ "${BENCH_KEEP:-}" = 1 ] || [ $rc -ne 0 ]; then
		echo "bench: work dir kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT INT TERM
die() { echo "bench: $*" >&2; exit 1; }

# free_port picks an unused loopback port (bound by nobody right now; a
# start that loses the race fails loudly below).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range the clients use
		if ! ss -ltnH "sport = :$p" | grep -q .; then echo "$p"; return; fi
	done
}

# check_proc PID PORT: PID is alive, its command line holds the nonce, and
# it is the process listening on PORT.
check_proc() {
	local pid=$1 port=$2 what=$3
	kill -0 "$pid" 2>/dev/null || die "$what (pid $pid) is not running"
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$NONCE" || die "$what: pid $pid is not the process started here"
	ss -ltnpH "sport = :$port" | grep -q "pid=$pid," || die "$what: port $port is not served by pid $pid: $(ss -ltnpH "sport = :$port")"
}

wait_port() {
	local pid=$1 port=$2 what=$3 log=$4
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; die "$what exited during start"; }
		if ss -ltnH "sport = :$port" | grep -q .; then return; fi
		sleep 0.1
	done
	tail -20 "$log" >&2
	die "$what did not listen on $port within 15 s"
}

echo "bench: building gatehouse…" >&2
BIN=$WORK/gatehouse
go build -o "$BIN" ./cmd/gatehouse

# Gatehouse: fresh data dir, free ports.
DATA=$WORK/data
API_PORT=$(free_port); HOOKS_PORT=$(free_port); DIAG_PORT=$(free_port)
export GATEHOUSE_CA_PASSPHRASE= GATEHOUSE_ADMIN_TOKEN= GATEHOUSE_HOOKS_SECRET= GATEHOUSE_HOOKS_SECRET_FILE=
"$BIN" init --data-dir "$DATA" >"$WORK/init.out" 2>"$WORK/init.err" || { cat "$WORK/init.err" >&2; die "gatehouse init failed"; }
ADMIN_TOKEN=$(sed -n 's/^admin-token: //p' "$WORK/init.out")
HOOKS_SECRET=$(sed -n 's/^hooks-secret: //p' "$WORK/init.out")
[ -n "$ADMIN_TOKEN" ] || die "gatehouse init printed no admin token"
GATEHOUSE_API_ADDR=127.0.0.1:$API_PORT "$BIN" serve --data-dir "$DATA" \
	--hooks-addr "127.0.0.1:$HOOKS_PORT" --diag-addr "127.0.0.1:$DIAG_PORT" >"$WORK/serve.log" 2>&1 &
GH_PID=$!
PIDS+=("$GH_PID")
wait_port "$GH_PID" "$API_PORT" "gatehouse serve" "$WORK/serve.log"
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$DIAG_PORT/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://127.0.0.1:$DIAG_PORT/readyz" >/dev/null || die "gatehouse is not ready"
check_proc "$GH_PID" "$API_PORT" "gatehouse serve"
SERVER=http://127.0.0.1:$API_PORT
echo "bench: gatehouse pid $GH_PID on $SERVER (data $DATA)" >&2

# The broker trusts Gatehouse's root and intermediate for client
# certificates; its own server certificate comes from a throwaway CA.
cat "$DATA/ca/root_ca.crt" "$DATA/ca/intermediate_ca.crt" >"$WORK/gatehouse-ca.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/broker-ca.key" 2>/dev/null
openssl req -x509 -new -key "$WORK/broker-ca.key" -subj "/CN=bench broker CA" -days 2 -out "$WORK/broker-ca.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/broker.key" 2>/dev/null
openssl req -new -key "$WORK/broker.key" -subj "/CN=localhost" -out "$WORK/broker.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$WORK/broker.ext"
openssl x509 -req -in "$WORK/broker.csr" -CA "$WORK/broker-ca.crt" -CAkey "$WORK/broker-ca.key" -CAcreateserial \
	-days 2 -extfile "$WORK/broker.ext" -out "$WORK/broker.crt" 2>/dev/null

# start_mosquitto NAME [PLUGIN]: a private broker; sets PORT_<NAME>, PID_<NAME>.
start_mosquitto() {
	local name=$1 plugin=${2:-} dir=$WORK/mosquitto-$1 port
	mkdir -p "$dir"
	port=$(free_port)
	{
		echo "# gatehouse bench $NONCE $name"
		echo "per_listener_settings false"
		echo "persistence false"
		echo "log_dest file $dir/mosquitto.log"
		# Errors and warnings only: logging 10,000 connections would
		# measure the logger.
		echo "log_type error"
		echo "log_type warning"
		echo "connection_messages false"
		echo "allow_anonymous false"
		[ "$(id -u)" = 0 ] && echo "user root"
		echo "listener $port 127.0.0.1"
		echo "max_connections -1"
		# One subscriber takes every publisher's messages: let it have more
		# than 20 unacknowledged QoS 1 messages and a deeper queue, so the
		# QoS 1 run measures the broker rather than the round trip.
		echo "max_inflight_messages 1000"
		echo "max_queued_messages 100000"
		echo "cafile $WORK/gatehouse-ca.pem"
		echo "certfile $WORK/broker.crt"
		echo "keyfile $WORK/broker.key"
		echo "require_certificate true"
		if [ -n "$plugin" ]; then
			# Not use_identity_as_username: with it Mosquitto never asks
			# the plugin at CONNECT (README, Mosquitto plugin section).
			echo "use_identity_as_username false"
			echo "plugin $plugin"
			local opts=${PLUGIN_OPTS//'{{HOOKS_URL}}'/http://127.0.0.1:$HOOKS_PORT}
			opts=${opts//'{{HOOKS_SECRET_FILE}}'/$DATA/hooks-secret}
			opts=${opts//'{{HOOKS_SECRET}}'/$HOOKS_SECRET}
			opts=${opts//'{{API_URL}}'/$SERVER}
			printf '%s\n' "$opts"
		else
			echo "use_identity_as_username true"
		fi
	} >"$dir/mosquitto.conf"
	mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.out" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$pid" "$port" "mosquitto $name" "$dir/mosquitto.out"
	check_proc "$pid" "$port" "mosquitto $name"
	printf -v "PORT_$name" %s "$port"
	printf -v "PID_$name" %s "$pid"
	echo "bench: mosquitto $name pid $pid on 127.0.0.1:$port (nofile $(awk '/Max open files/{print $4}' "/proc/$pid/limits"))" >&2
}

# restart_mosquitto NAME [PLUGIN]: stop the broker by its PID and start it
# again (fresh config, new port): every cache inside it is gone.
restart_mosquitto() {
	local name=$1 pidvar=PID_$1 pid
	pid=${!pidvar}
	kill -TERM "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && die "mosquitto $name (pid $pid) did not stop"
	local keep=()
	for p in "${PIDS[@]}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
	PIDS=("${keep[@]}")
	start_mosquitto "$@"
}

BROKERS=(plain)
start_mosquitto plain
if [ -f "$PLUGIN" ]; then
	start_mosquitto plugin "$PLUGIN"
	BROKERS+=(plugin)
else
	echo "bench: no plugin at $PLUGIN: plain TLS baseline only" >&2
fi

# With an auth plugin the publish bench's counting subscriber needs a grant
# to read every publisher's telemetry: the default policy plus one rule for
# devices of the bench-monitor profile (a profile, not a role: roles need a
# CA-configured certificate OID).
api() {
	curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
		"$SERVER$2" ${3:+--data-binary "$3"}
}
api POST /api/v1/profiles '{"name":"bench-monitor","key_types":["P-256"],"validity":"30d"}' >/dev/null \
	|| die "creating the bench-monitor profile failed"
MONITOR_RULE='
# gatehouse bench: the publish benchmark subscriber reads its fleet telemetry.
grants contains {"action": "subscribe", "filter": concat("/", ["fleets", input.device.fleet, "devices", "+", "telemetry", "#"]), "rule": "bench-monitor"} if {
	input.device.profile == "bench-monitor"
}'
body=$(jq -n --rawfile p policy/default.rego --rawfile tests policy/default_test.rego --arg r "$MONITOR_RULE" \
	'{policy: ($p + $r), tests: $tests, comment: "gatehouse bench: monitor role reads fleet telemetry"}')
version=$(api POST /api/v1/policies "$body" | jq -r .version) || die "creating the bench policy failed"
api POST "/api/v1/policies/$version/activate" >/dev/null || die "activating bench policy $version failed"
echo "bench: policy $version active (default + bench-monitor subscriber grant)" >&2

DEVICES=${BENCH_DEVICES_DIR:-$WORK/devices}
bench() {
	local sub=$1 name=$2
	shift 2
	local port=PORT_$name pid=PID_$name
	GATEHOUSE_ADMIN_TOKEN=$ADMIN_TOKEN "$BIN" bench "$sub" --server "$SERVER" --devices-dir "$DEVICES" \
		--broker "127.0.0.1:${!port}" --broker-ca "$WORK/broker-ca.crt" \
		--broker-pid "${!pid}" --gatehouse-pid "$GH_PID" "$@"
}

# Enroll every device once up front: the storms then measure connecting.
echo "bench: enrolling up to $max devices…" >&2
bench enroll plain -n "$max" --revoked "$REVOKED" --subscriber-profile bench-monitor || die "enrollment of $max devices failed"

status=0
# storm NAME N [FLAGS…]: one connect storm. Without the plugin, spoofs and
# revoked devices getting in is the finding, not a failure of the run; with
# it, any wrong decision is.
storm() {
	local name=$1 n=$2
	shift 2
	if ! bench connect-storm "$name" -n "$n" --spoof "$SPOOF" --revoked "$REVOKED" --timeout "${BENCH_TIMEOUT:-30s}" "$@" ${BENCH_STORM_ARGS:-}; then
		[ "$name" = plain ] && echo "(expected of the plain broker: it checks the certificate chain only)" || status=1
	fi
	# Let the broker close the storm's sockets.
	sleep 2
}

for name in "${BROKERS[@]}"; do
	for n in $NS; do
		echo
		echo "=== connect storm: broker=$name N=$n spoof=$SPOOF revoked=$REVOKED"
		storm "$name" "$n"
		if [ "${BENCH_PACED:-100}" != 0 ]; then
			# The same storm with at most BENCH_PACED connection attempts in
			# flight (Mosquitto's listen backlog is 100).
			echo
			echo "=== connect storm, paced: broker=$name N=$n --max-inflight ${BENCH_PACED:-100}"
			storm "$name" "$n" --max-inflight "${BENCH_PACED:-100}"
		fi
	done
done

# Reconnect storm: the largest storm's devices again, after a broker restart.
if [ "${BENCH_RECONNECT:-1}" != 0 ]; then
	for name in "${BROKERS[@]}"; do
		if [ "$name" = plugin ]; then restart_mosquitto plugin "$PLUGIN"; else restart_mosquitto "$name"; fi
		# The plugin's event stream must be live before its first decision
		# can be cached (it asks Gatehouse either way).
		sleep 2
		echo
		echo "=== reconnect storm after a broker restart: broker=$name N=$max --max-inflight ${BENCH_PACED:-100}"
		storm "$name" "$max" --max-inflight "${BENCH_PACED:-100}"
	done
fi

declare -A RATE SENT
for qos in 0 1; do
	for name in "${BROKERS[@]}"; do
		echo
		echo "=== publish throughput: broker=$name QoS $qos, $PUBLISHERS publishers, $DURATION"
		out=$(bench publish "$name" --publishers "$PUBLISHERS" --duration "$DURATION" --qos "$qos" --label "$name" --subscriber-profile bench-monitor) || { echo "$out"; status=1; continue; }
		echo "$out"
		RATE[$name.$qos]=$(sed -n 's/^result: .* delivered_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
		SENT[$name.$qos]=$(sed -n 's/^result: .* acked_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
	done
	if [ -n "${RATE[plugin.$qos]:-}" ] && [ -n "${RATE[plain.$qos]:-}" ]; then
		awk -v a="${RATE[plugin.$qos]}" -v b="${RATE[plain.$qos]}" -v c="${SENT[plugin.$qos]}" -v d="${SENT[plain.$qos]}" -v q="$qos" \
			'BEGIN { printf "QoS %s ratio plugin/plain: delivered %.2f (%s / %s msg/s), processed from publishers %.2f (%s / %s msg/s)\n",
				q, (b > 0 ? a / b : 0), a, b, (d > 0 ? c / d : 0), c, d }'
	fi
done

for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "bench: pid $pid died during the run" >&2; status=1; }; done
exit $status

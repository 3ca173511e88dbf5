#!/usr/bin/env bash
# The local Apache Kafka broker used by the tests and the demo.
#
#   deploy/kafka/kafka.sh start    fetch (once), format (once) and start; wait until it answers
#   deploy/kafka/kafka.sh stop     stop the broker this script started, by its PID
#   deploy/kafka/kafka.sh kill     kill it at once (SIGKILL), as a crash would
#   deploy/kafka/kafka.sh status   say whether it runs, and where
#   deploy/kafka/kafka.sh fetch    only fetch the jars
#
# One combined broker+controller KRaft node, bound to 127.0.0.1 only.
# Jars come from Maven Central through pom.xml into a cache folder outside the
# repo ($NCP_KAFKA_HOME, default ~/.cache/ncp-exchange/kafka-<version>); the
# data, the PID file and the log live there too. A second start reuses it all.
#
# Settings (environment): NCP_KAFKA_PORT (9092), NCP_KAFKA_CONTROLLER_PORT
# (9093), NCP_KAFKA_HOME, NCP_KAFKA_START_TIMEOUT_S (60), NCP_KAFKA_HEAP
# ("-Xms256m -Xmx1g").
#
# A secured broker (the production shape): NCP_KAFKA_SECURITY=sasl_ssl. The client
# listener is then SASL_SSL (SCRAM-SHA-512), the controller listener TLS with client
# certificates, the authorizer Kafka's StandardAuthorizer (no ACL: no access), and
#   NCP_KAFKA_USERS_FILE   required: one "NAME PASSWORD" line per SCRAM user (one per
#                          member, the operator); created when the storage is formatted,
#                          so a change needs `reset` (or kafka-configs.sh on a live one)
#   NCP_KAFKA_OPERATOR     the operator's user name, a super user (default: operator)
#   NCP_KAFKA_TLS_DIR      ca.pem and <NCP_KAFKA_TLS_NAME>.pem (PEM keystore); default
#                          $run/tls, made by deploy/tls/dev-certs.sh when missing
#   NCP_KAFKA_TLS_NAME     the broker certificate's name (default: kafka-broker)
# The broker's own SCRAM user ("broker", random password in $run/broker.secret) carries
# broker-to-broker traffic. Passwords are read from files, never from a command line.
#
# One node of a cluster (deploy/kafka/cluster.sh sets these): NCP_KAFKA_NODE_ID (1),
# NCP_KAFKA_VOTERS ("1@127.0.0.1:9093,2@..."; empty: a standalone node),
# NCP_KAFKA_CLUSTER_ID (the same on every node), NCP_KAFKA_REPLICATION (replication of
# Kafka's internal topics and the default RF: 1), NCP_KAFKA_MIN_ISR (1).
#
# Topic auto-creation: NCP_KAFKA_AUTO_CREATE (default false, as on the federation's
# cluster): topics come from `exchange admin provision`, a node's ensure_topics, or a
# test's create_topics. A typo in a topic name is then an error, not a new topic.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
port=${NCP_KAFKA_PORT:-9092}
cport=${NCP_KAFKA_CONTROLLER_PORT:-9093}
home=${NCP_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ncp-exchange/kafka-$version}
run="$home/run-$port"
libs="$home/libs"
pidfile="$run/kafka.pid"
log="$run/kafka.log"
timeout_s=${NCP_KAFKA_START_TIMEOUT_S:-60}
heap=${NCP_KAFKA_HEAP:--Xms256m -Xmx1g}
security=${NCP_KAFKA_SECURITY:-plaintext}
node_id=${NCP_KAFKA_NODE_ID:-1}
voters=${NCP_KAFKA_VOTERS:-}
replication=${NCP_KAFKA_REPLICATION:-1}
min_isr=${NCP_KAFKA_MIN_ISR:-1}
operator=${NCP_KAFKA_OPERATOR:-operator}
tls_dir=${NCP_KAFKA_TLS_DIR:-$run/tls}
tls_name=${NCP_KAFKA_TLS_NAME:-kafka-broker}
case "$security" in
  plaintext | sasl_ssl) ;;
  *) echo "kafka.sh: NCP_KAFKA_SECURITY must be plaintext or sasl_ssl, not $security" >&2; exit 2 ;;
esac
auto_create=${NCP_KAFKA_AUTO_CREATE:-false}

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: install $2 (Debian: apt-get install -y $2)"
}

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  need java openjdk-17-jre-headless
  need mvn maven
  mkdir -p "$home"
  echo "kafka.sh: fetching Apache Kafka $version from Maven Central into $libs" >&2
  rm -rf "$libs"
  if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >"$home/fetch.log" 2>&1; then
    die "Maven could not fetch Kafka; see $home/fetch.log"
  fi
  touch "$libs/.complete"
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# True once the broker answers a Metadata request listing at least one broker.
# A Java admin client would cost a JVM start each poll; a few bytes of the
# Kafka protocol from python3 cost nothing.
answers() {
  if [ "$security" = sasl_ssl ]; then
    answers_tls
    return
  fi
  python3 - "$port" <<'PY' 2>/dev/null
import socket, struct, sys
port = int(sys.argv[1])
# Metadata v1 request for all topics: api_key=3, api_version=1, correlation=7,
# client_id "probe", topics=null (-1 array length).
body = struct.pack(">hhih", 3, 1, 7, 5) + b"probe" + struct.pack(">i", -1)
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    s.sendall(struct.pack(">i", len(body)) + body)
    head = s.recv(8)
    size, corr = struct.unpack(">ii", head)
    data = b""
    while len(data) < size - 4:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    # Response: brokers array; at least one broker means the node is serving.
    (nbrokers,) = struct.unpack(">i", data[:4])
    sys.exit(0 if corr == 7 and nbrokers >= 1 else 1)
PY
}

# The secured listener: true once a TLS handshake (against the CA) succeeds and the broker
# answers an ApiVersions request, which Kafka serves before authentication.
answers_tls() {
  python3 - "$port" "$tls_dir/ca.pem" <<'PY' 2>/dev/null
import socket, ssl, struct, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
body = struct.pack(">hhih", 18, 0, 9, 5) + b"probe"
with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size, corr = struct.unpack(">ii", s.recv(8))
        sys.exit(0 if corr == 9 else 1)
PY
}

# The SCRAM users to create at format time (the users file's and the broker's own), as
# StorageTool arguments, one a line.
scram_args() {
  [ -n "${NCP_KAFKA_USERS_FILE:-}" ] || die "NCP_KAFKA_SECURITY=sasl_ssl needs NCP_KAFKA_USERS_FILE"
  [ -f "$NCP_KAFKA_USERS_FILE" ] || die "no such users file: $NCP_KAFKA_USERS_FILE"
  local name password rest
  while read -r name password rest; do
    case "$name" in '' | '#'*) continue ;; esac
    [ -n "$password" ] || die "$NCP_KAFKA_USERS_FILE: user $name has no password"
    case "$name$password" in *[],=[]*) die "$NCP_KAFKA_USERS_FILE: user $name: no , = [ ] in names or passwords" ;; esac
    printf '%s\n' "--add-scram" "SCRAM-SHA-512=[name=$name,password=$password]"
  done <"$NCP_KAFKA_USERS_FILE"
  printf '%s\n' "--add-scram" "SCRAM-SHA-512=[name=broker,password=$(cat "$run/broker.secret")]"
}

write_config() {
  mkdir -p "$run/data"
  local quorum="controller.quorum.bootstrap.servers=127.0.0.1:$cport"
  [ -z "$voters" ] || quorum="controller.quorum.voters=$voters"
  cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=$node_id
$quorum
controller.listener.names=CONTROLLER
log.dirs=$run/data
num.partitions=3
default.replication.factor=$replication
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replication
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=$auto_create
log.retention.hours=-1
EOF
  if [ "$security" = plaintext ]; then
    cat >>"$run/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
    return
  fi
  [ -f "$tls_dir/$tls_name.pem" ] || "$here/../tls/dev-certs.sh" "$tls_dir" "$tls_name" >&2
  [ -f "$run/broker.secret" ] || python3 -c 'import secrets; print(secrets.token_hex(24))' >"$run/broker.secret"
  chmod 600 "$run/broker.secret"
  # Clients: SASL_SSL with SCRAM-SHA-512. Controllers: TLS with client certificates (the
  # certificate's CN is the principal). Brokers talk to each other as the user "broker".
  cat >>"$run/server.properties" <<EOF
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(cat "$run/broker.secret")";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$tls_dir/$tls_name.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:$tls_name;User:$operator
EOF
  chmod 600 "$run/server.properties"
  cat >"$run/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    File:
      name: file
      fileName: "$log"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: file
    Logger:
      - name: kafka
        level: WARN
      - name: org.apache.kafka
        level: WARN
EOF
}

java_cmd() {
  # shellcheck disable=SC2086 # the heap options are words
  java $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$run/log4j2.yaml" -cp "$libs/*" "$@"
}

start() {
  if running; then
    echo "kafka.sh: already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"
    return 0
  fi
  # Something else (another broker, another NCP_KAFKA_HOME) already serves this
  # port: starting would fail to bind, or worse, the probe would answer for it.
  if answers; then
    die "127.0.0.1:$port already answers, but not from a broker this script started ($pidfile)"
  fi
  fetch
  need java openjdk-17-jre-headless
  # Each port has its own run folder, so brokers on different ports run side
  # by side. KRaft records the controller's address when it formats the
  # storage: a start with another controller port needs freshly formatted data.
  if [ -f "$run/data/meta.properties" ] && [ -f "$run/controller.port" ] \
      && [ "$(cat "$run/controller.port")" != "$cport" ]; then
    echo "kafka.sh: controller port changed to $cport; re-formatting $run/data" >&2
    rm -rf "$run/data"
  fi
  write_config
  echo "$cport" >"$run/controller.port"
  if [ ! -f "$run/data/meta.properties" ]; then
    # A cluster id: a random UUID in URL-safe base64. One in 64 of those starts with "-",
    # which the tool's option parser takes for an option (the format then fails): draw
    # until it does not.
    local cluster_id=${NCP_KAFKA_CLUSTER_ID:-}
    [ -n "$cluster_id" ] || cluster_id=$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        break
print(s)')
    local args=(format -t "$cluster_id" -c "$run/server.properties")
    [ -n "$voters" ] || args+=(--standalone)
    if [ "$security" = sasl_ssl ]; then
      local extra
      mapfile -t extra < <(scram_args)
      [ "${#extra[@]}" -gt 0 ] || exit 1
      args+=("${extra[@]}")
    fi
    java_cmd kafka.tools.StorageTool "${args[@]}" >"$run/format.log" 2>&1 \
      || die "formatting KRaft storage failed; see $run/format.log"
  fi
  : >"$log"
  # setsid: the broker gets its own session, so a Ctrl-C in the caller's
  # terminal does not reach it; it is stopped by PID only.
  setsid bash -c "exec java $heap -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile='$run/log4j2.yaml' -cp '$libs/*' kafka.Kafka '$run/server.properties'" \
    >>"$run/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local waited=0
  until answers; do
    if ! running; then
      echo "kafka.sh: the broker exited during start; its log: $log (and $run/stdout.log)" >&2
      tail -n 20 "$run/stdout.log" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    if [ "$waited" -ge $((timeout_s * 4)) ]; then
      echo "kafka.sh: no answer on 127.0.0.1:$port after ${timeout_s}s; its log: $log" >&2
      stop
      exit 1
    fi
    sleep 0.25
    waited=$((waited + 1))
  done
  echo "kafka.sh: Apache Kafka $version answers on 127.0.0.1:$port (pid $(cat "$pidfile"), log $log)"
}

stop() {
  if ! running; then
    rm -f "$pidfile"
    echo "kafka.sh: not running"
    return 0
  fi
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker $pid did not stop in 30 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "kafka.sh: stopped (pid $pid)"
}

status() {
  if running; then
    echo "running: pid $(cat "$pidfile"), 127.0.0.1:$port, log $log"
  else
    echo "not running (home $home)"
    return 3
  fi
}

# Kill the broker at once (SIGKILL), as a crash would: for failure tests.
kill_now() {
  if ! running; then
    rm -f "$pidfile"
    echo "kafka.sh: not running"
    return 0
  fi
  local pid
  pid=$(cat "$pidfile")
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$pidfile"
  echo "kafka.sh: killed (pid $pid)"
}

reset() {
  running && die "stop it first"
  rm -rf "$run"
  echo "kafka.sh: data removed ($run)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) kill_now ;;
  status) status ;;
  fetch) fetch ;;
  reset) reset ;;
  *) echo "usage: $0 start|stop|kill|status|fetch|reset" >&2; exit 2 ;;
esac

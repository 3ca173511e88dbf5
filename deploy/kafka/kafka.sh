#!/usr/bin/env bash
# The local Apache Kafka broker used by the tests and the demo.
#
#   deploy/kafka/kafka.sh start    fetch (once), format (once) and start; wait until it answers
#   deploy/kafka/kafka.sh stop     stop the broker this script started, by its PID
#   deploy/kafka/kafka.sh status   say whether it runs, and where
#   deploy/kafka/kafka.sh fetch    only fetch the jars
#
# One combined broker+controller KRaft node, bound to 127.0.0.1 only.
# Jars come from Maven Central through pom.xml into a cache folder outside the
# repo ($NCP_KAFKA_HOME, default ~/.cache/ncp-exchange/kafka-<version>); the
# data, the PID file and the log live there too. A second start reuses it all.
#
# Settings (environment): NCP_KAFKA_PORT (9092), NCP_KAFKA_CONTROLLER_PORT
# (9093), NCP_KAFKA_HOME, NCP_KAFKA_START_TIMEOUT_S (60).
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

write_config() {
  mkdir -p "$run/data"
  cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=-1
EOF
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
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
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
    local cluster_id
    cluster_id=$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        break
print(s)')
    java_cmd kafka.tools.StorageTool format --standalone \
      -t "$cluster_id" \
      -c "$run/server.properties" >"$run/format.log" 2>&1 \
      || die "formatting KRaft storage failed; see $run/format.log"
  fi
  : >"$log"
  # setsid: the broker gets its own session, so a Ctrl-C in the caller's
  # terminal does not reach it; it is stopped by PID only.
  setsid bash -c "exec java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
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

reset() {
  running && die "stop it first"
  rm -rf "$run"
  echo "kafka.sh: data removed ($run)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch ;;
  reset) reset ;;
  *) echo "usage: $0 start|stop|status|fetch|reset" >&2; exit 2 ;;
esac

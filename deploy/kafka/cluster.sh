#!/usr/bin/env bash
# A three-broker KRaft cluster on loopback, from the same cached jars as kafka.sh.
#
#   deploy/kafka/cluster.sh start          format (once) and start the three nodes; wait
#                                          until each answers
#   deploy/kafka/cluster.sh stop           stop all three (by their PIDs)
#   deploy/kafka/cluster.sh kill NODE      kill node 1, 2 or 3 at once (SIGKILL)
#   deploy/kafka/cluster.sh restart NODE   start it again (after kill or stop); wait
#   deploy/kafka/cluster.sh status         each node's state
#   deploy/kafka/cluster.sh reset          remove the data of all three (stopped)
#   deploy/kafka/cluster.sh bootstrap      print the bootstrap servers
#
# Each node is a combined broker + controller (the three are the controller quorum), run
# by kafka.sh with node id 1..3, replication 3 for Kafka's own topics and
# min.insync.replicas 2; topic auto-creation is off. Ports (environment):
#   NCP_CLUSTER_PORTS             client ports, comma-separated (29092,29093,29094)
#   NCP_CLUSTER_CONTROLLER_PORTS  controller ports (29192,29193,29194)
#   NCP_CLUSTER_HEAP              each JVM's heap ("-Xms256m -Xmx768m": 3 of them)
# Everything else passes through to kafka.sh: NCP_KAFKA_SECURITY=sasl_ssl with
# NCP_KAFKA_USERS_FILE makes a secured cluster (one CA and one broker certificate per node
# in $NCP_KAFKA_TLS_DIR, default the cluster's folder), NCP_KAFKA_HOME, timeouts.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IFS=, read -r -a ports <<<"${NCP_CLUSTER_PORTS:-29092,29093,29094}"
IFS=, read -r -a cports <<<"${NCP_CLUSTER_CONTROLLER_PORTS:-29192,29193,29194}"
[ "${#ports[@]}" -eq 3 ] && [ "${#cports[@]}" -eq 3 ] \
  || { echo "cluster.sh: need three client and three controller ports" >&2; exit 2; }
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
home=${NCP_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ncp-exchange/kafka-$version}
dir="$home/cluster-${ports[0]}"
voters="1@127.0.0.1:${cports[0]},2@127.0.0.1:${cports[1]},3@127.0.0.1:${cports[2]}"

node_env() {
  local i=$1
  echo NCP_KAFKA_PORT="${ports[$((i - 1))]}" NCP_KAFKA_CONTROLLER_PORT="${cports[$((i - 1))]}" \
    NCP_KAFKA_NODE_ID="$i" NCP_KAFKA_VOTERS="$voters" NCP_KAFKA_CLUSTER_ID="$(cluster_id)" \
    NCP_KAFKA_REPLICATION=3 NCP_KAFKA_MIN_ISR=2 NCP_KAFKA_HEAP="'${NCP_CLUSTER_HEAP:--Xms256m -Xmx768m}'" \
    NCP_KAFKA_TLS_DIR="'${NCP_KAFKA_TLS_DIR:-$dir/tls}'" NCP_KAFKA_TLS_NAME="kafka-broker-$i"
}

cluster_id() {
  mkdir -p "$dir"
  if [ ! -s "$dir/cluster.id" ]; then
    python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        break
print(s)' >"$dir/cluster.id"
  fi
  cat "$dir/cluster.id"
}

on_node() {  # on_node I COMMAND: kafka.sh COMMAND for node I
  local i=$1 cmd=$2
  case "$i" in 1 | 2 | 3) ;; *) echo "cluster.sh: NODE is 1, 2 or 3, not $i" >&2; exit 2 ;; esac
  eval "env $(node_env "$i") \"$here/kafka.sh\" $cmd"
}

certs() {
  if [ "${NCP_KAFKA_SECURITY:-plaintext}" = sasl_ssl ]; then
    "$here/../tls/dev-certs.sh" "${NCP_KAFKA_TLS_DIR:-$dir/tls}" kafka-broker-1 kafka-broker-2 kafka-broker-3 >&2
  fi
}

start() {
  cluster_id >/dev/null
  certs
  "$here/kafka.sh" fetch
  # The three start together: none serves clients before the quorum has a leader.
  local pids=() i failed=0
  for i in 1 2 3; do
    on_node "$i" start &
    pids+=($!)
  done
  for i in 0 1 2; do wait "${pids[$i]}" || failed=1; done
  [ "$failed" -eq 0 ] || { echo "cluster.sh: a node did not start; stopping the others" >&2; stop; exit 1; }
  echo "cluster.sh: three brokers answer on $(bootstrap)"
}

stop() {
  local i
  for i in 1 2 3; do on_node "$i" stop || true; done
}

status() {
  local i rc=0
  for i in 1 2 3; do
    printf 'node %s: ' "$i"
    on_node "$i" status || rc=3
  done
  return $rc
}

bootstrap() {
  echo "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
}

reset() {
  local i
  for i in 1 2 3; do on_node "$i" reset; done
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) on_node "${2:?usage: cluster.sh kill NODE}" kill ;;
  restart) on_node "${2:?usage: cluster.sh restart NODE}" start ;;
  status) status ;;
  reset) reset ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 start|stop|kill NODE|restart NODE|status|reset|bootstrap" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Entrypoint of a broker in compose.yaml: format once (with the SCRAM users from the
# mounted users file, one "NAME PASSWORD" line each), then start. The same settings as
# deploy/kafka/kafka.sh with NCP_KAFKA_SECURITY=sasl_ssl, for three nodes.
set -euo pipefail
: "${NODE_ID:?}" "${CLUSTER_ID:?}" "${HOSTNAME_ADVERTISED:?}"
conf=/var/lib/kafka/server.properties
mkdir -p /var/lib/kafka/data
cat >"$conf" <<CONF
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093
controller.listener.names=CONTROLLER
listeners=SASL_SSL://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
advertised.listeners=SASL_SSL://$HOSTNAME_ADVERTISED:9092
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(cat /run/secrets/broker_password)";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=/etc/kafka/tls/kafka-$NODE_ID.pem
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/tls/ca.pem
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:kafka-1;User:kafka-2;User:kafka-3;User:operator
log.dirs=/var/lib/kafka/data
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
auto.create.topics.enable=false
unclean.leader.election.enable=false
log.retention.hours=-1
CONF
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  args=()
  while read -r name password _; do
    case "$name" in '' | '#'*) continue ;; esac
    args+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$password]")
  done </run/secrets/kafka_users
  args+=(--add-scram "SCRAM-SHA-512=[name=broker,password=$(cat /run/secrets/broker_password)]")
  /opt/kafka/bin/kafka-storage.sh format -t "$CLUSTER_ID" -c "$conf" "${args[@]}"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf"

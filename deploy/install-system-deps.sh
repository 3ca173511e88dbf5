#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing:
#   Java 17+ and Maven (fetch and run Apache Kafka), PostgreSQL's server (store tests).
# Runs as root (or through sudo when it is there).
set -euo pipefail
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(postgresql); fi
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# BIND's named-checkzone: the blacklist tests check every RPZ zone they write.
command -v named-checkzone >/dev/null 2>&1 || missing+=(bind9-utils)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# A development CA and broker certificates for the SASL_SSL listeners (openssl).
#
#   deploy/tls/dev-certs.sh DIR [BROKER_NAME ...]
#
# Writes into DIR (created, mode 0700):
#   ca.pem, ca.key                    the development CA (10 years); clients trust ca.pem
#   <name>.pem                        the broker's certificate chain and its unencrypted
#                                     PKCS#8 key, in one file: Kafka's PEM keystore
#   <name>.crt, <name>.key            the same, apart
# Default broker name: "kafka-broker". Each certificate names localhost and 127.0.0.1
# (loopback) plus the broker name as subjectAltNames, and serves both as a TLS server
# certificate (client listeners) and a client certificate (the controllers' mutual TLS).
# A second run keeps the CA and every certificate that exists: only missing ones are made.
#
# For production use your organisation's CA: the brokers need a keystore (PEM or PKCS#12)
# whose certificate names their advertised host, the clients need the CA's certificate.
set -euo pipefail

dir=${1:?usage: dev-certs.sh DIR [BROKER_NAME ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(kafka-broker)
command -v openssl >/dev/null || { echo "dev-certs.sh: openssl not found (apt-get install -y openssl)" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
umask 077

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/O=ncp-exchange dev/CN=ncp-exchange dev CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

for name in "${names[@]}"; do
  [ -f "$dir/$name.pem" ] && continue
  openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" \
    -subj "/O=ncp-exchange dev/CN=$name" 2>/dev/null
  cat >"$dir/$name.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,DNS:$name,IP:127.0.0.1
EXT
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  # Kafka's PEM keystore: the certificate chain, then the key in PKCS#8.
  openssl pkcs8 -topk8 -nocrypt -in "$dir/$name.key" -out "$dir/$name.p8"
  cat "$dir/$name.crt" "$dir/ca.pem" "$dir/$name.p8" >"$dir/$name.pem"
  rm -f "$dir/$name.csr" "$dir/$name.ext" "$dir/$name.p8"
done
chmod 644 "$dir/ca.pem"
echo "dev-certs.sh: CA and certificates for ${names[*]} in $dir"

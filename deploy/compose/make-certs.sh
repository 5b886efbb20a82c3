#!/usr/bin/env bash
# Certificates for the secure compose cluster (docker-compose.secure.yml), made with openssl:
# a CA, one certificate per broker (subject CN broker-<id>, server and client auth, for the
# broker's private address, its hostname, localhost and 127.0.0.1) and an `admin` client
# certificate. Usage: deploy/compose/make-certs.sh [DIR]  (default: deploy/compose/tls)
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")" && pwd)/tls}
mkdir -p "$dir"
cd "$dir"
days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -keyout ca.key -out ca.crt -subj "/CN=silt compose CA" 2>/dev/null
sign() { # name cn extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
for id in 1 2 3; do
  sign "broker-$id" "broker-$id" "subjectAltName=IP:172.28.0.1$id,DNS:b$id,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
done
sign admin admin "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 0600 ./*.key
# The brokers run as uid 10001 in the image: they must read their keys.
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 broker-*.key
else
  chmod 0644 broker-*.key
  echo "note: not root, so the broker keys are world-readable (fine for a local cluster only)" >&2
fi
echo "certificates in $dir; connect with:"
echo "  silt -b 127.0.0.1:9300 --tls-ca $dir/ca.crt --tls-cert $dir/admin.crt --tls-key $dir/admin.key cluster info"

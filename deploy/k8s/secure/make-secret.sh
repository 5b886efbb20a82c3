#!/usr/bin/env bash
# Certificates for the secure Kubernetes variant, printed as the Secret `silt-tls` (YAML on
# stdout; the admin's client certificate and key, and the CA, stay in DIR for `silt`):
# a CA, one certificate per pod silt-N (subject CN broker-<N+1>, server and client auth, for the
# pod's headless-service DNS names and the client Service) and an `admin` client certificate.
# Usage: deploy/k8s/secure/make-secret.sh NAMESPACE [DIR] | kubectl apply -f -
set -euo pipefail
ns=${1:?usage: make-secret.sh NAMESPACE [DIR]}
dir=${2:-$(pwd)/silt-tls}
mkdir -p "$dir"
cd "$dir"
days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -keyout ca.key -out ca.crt -subj "/CN=silt Kubernetes CA" 2>/dev/null
sign() { # name cn extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
for n in 0 1 2; do
  host=silt-$n.silt-headless.$ns.svc.cluster.local
  sign "silt-$n" "broker-$((n + 1))" "subjectAltName=DNS:$host,DNS:silt.$ns.svc.cluster.local,DNS:silt.$ns.svc,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth"
done
sign admin admin "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 0600 ./*.key
b64() { base64 -w0 < "$1"; }
cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: silt-tls
  namespace: $ns
type: Opaque
data:
  ca.crt: $(b64 ca.crt)
  silt-0.crt: $(b64 silt-0.crt)
  silt-0.key: $(b64 silt-0.key)
  silt-1.crt: $(b64 silt-1.crt)
  silt-1.key: $(b64 silt-1.key)
  silt-2.crt: $(b64 silt-2.crt)
  silt-2.key: $(b64 silt-2.key)
YAML
echo "certificates in $dir (keep ca.key offline); connect as the super user with:" >&2
echo "  silt -b HOST:9300 --tls-ca $dir/ca.crt --tls-cert $dir/admin.crt --tls-key $dir/admin.key cluster info" >&2

#!/usr/bin/env bash
# Generates a throwaway certificate authority and a server certificate it
# signs, for TLS tests and test deployments (never for production: the CA key
# sits next to the certificates, unencrypted).
#
#   scripts/gen-test-ca.sh OUT_DIR [NAME...]
#
# Writes into OUT_DIR (created if needed):
#   ca.pem, ca.key          the CA (give ca.pem to clients: SSL_CAFILE=ca.pem)
#   server.pem, server.key  the server certificate and key, for
#                           `parsec-server run --ssl-certfile server.pem --ssl-keyfile server.key`
# The server certificate is valid for localhost, 127.0.0.1 and ::1, plus each
# NAME (a host name, or an IP address). EC P-256 keys, SHA-256 signatures,
# valid for PARSEC_TEST_CA_DAYS days (default 30). Needs the openssl CLI.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -ge 1 ] && exit 0 || exit 2
fi
out="$1"
shift
days="${PARSEC_TEST_CA_DAYS:-30}"
command -v openssl >/dev/null || { echo "gen-test-ca.sh: the openssl command is needed" >&2; exit 1; }

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
    san+=",IP:$name"
  else
    san+=",DNS:$name"
  fi
done

mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
umask 077 # keys readable by their owner only

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -days "$days" -subj "/O=Parsec test/CN=Parsec test CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.pem" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
  -subj "/O=Parsec test/CN=${1:-localhost}" \
  -keyout "$out/server.key" -out "$tmp/server.csr" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }

cat >"$tmp/ext.cnf" <<CNF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
CNF
openssl x509 -req -sha256 -days "$days" -in "$tmp/server.csr" \
  -CA "$out/ca.pem" -CAkey "$out/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
  -extfile "$tmp/ext.cnf" -out "$out/server.pem" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }

chmod 644 "$out/ca.pem" "$out/server.pem"
openssl verify -CAfile "$out/ca.pem" "$out/server.pem" >/dev/null
echo "CA: $out/ca.pem; server certificate: $out/server.pem (key $out/server.key) for $san"

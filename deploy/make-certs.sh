#!/usr/bin/env bash
# make-certs.sh DIR NAME...: a throw-away CA in DIR/ca.pem and, per NAME, a
# P-256 certificate DIR/NAME.pem (key DIR/NAME-key.pem) valid for the host
# name NAME, localhost and 127.0.0.1, for both server and client use: one
# file serves as a node's --http-cert and --node-cert. An existing CA in DIR
# is reused, so running it again rotates the node certificates only.
# For production use your own CA (cert-manager, Vault, ...).
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -subj "/CN=sluice CA" 2>/dev/null
fi
for name in "$@"; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/$name-key.pem.new" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 365 -extfile "$dir/$name.ext" -out "$dir/$name.pem.new" 2>/dev/null
  # Key first, then certificate: a node reloading in between keeps its old pair.
  mv "$dir/$name-key.pem.new" "$dir/$name-key.pem"
  mv "$dir/$name.pem.new" "$dir/$name.pem"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
done
# Readable by the image's non-root user; keep DIR itself private.
chmod 644 "$dir"/*.pem
echo "CA $dir/ca.pem; certificates for: $*"

#!/usr/bin/env bash
# Test certificates for the TLS tests, generated fresh into DIR (a temporary
# directory of the test run; nothing here is ever reused or committed).
#
# Usage: certs.sh DIR
#
# Writes, each as NAME.pem (certificate) and NAME-key.pem (PKCS#8 key):
#   ca, other-ca        two unrelated CAs: "other" plays the wrong CA
#   server              signed by ca, for 127.0.0.1 and localhost
#   other-server        the same, signed by other-ca: the server after a CA
#                       rotation
#   expired-server      the same, valid only in 2020
#   cn-only-server      signed by ca, naming localhost in its Common Name
#                       alone (no subjectAltName): an old server's
#                       certificate, which Go matches to no host name
#   client              signed by ca, for client authentication
#   expired-client      the same, valid only in 2020
#   other-client        a client certificate signed by other-ca
# and server-keystore.pem (key then certificate), the form Cassandra's
# PEMBasedSslContextFactory reads.
#
# `openssl ca` signs rather than `openssl x509 -req` because only it sets an
# arbitrary validity window on OpenSSL 3.0 (x509 refuses a negative -days),
# and an expired certificate is one of the cases the tests need.
set -euo pipefail

DIR=${1:?usage: certs.sh DIR}
mkdir -p "$DIR"
cd "$DIR"
command -v openssl >/dev/null || { echo "certs.sh: openssl is needed" >&2; exit 1; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1-key.pem" 2>/dev/null; }

# ca NAME: a self-signed CA valid for a day.
ca() {
  key "$1"
  openssl req -x509 -new -key "$1-key.pem" -out "$1.pem" -days 1 -subj "/CN=nvcf-autoscaler test $1" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

# sign NAME CA USAGE START END [CN]: NAME's key and certificate, signed by
# CA, valid from START to END (openssl ca's YYYYMMDDHHMMSSZ), for USAGE
# serverAuth or clientAuth. With CN, the certificate's Common Name is CN
# and it has no subjectAltName; without, it is for 127.0.0.1 and localhost.
sign() {
  local name=$1 ca=$2 usage=$3 start=$4 end=$5 cn=${6:-} db san="subjectAltName = IP:127.0.0.1,DNS:localhost"
  if [[ -n $cn ]]; then san=""; fi
  key "$name"
  openssl req -new -key "$name-key.pem" -out "$name.csr" -subj "/CN=${cn:-$name}" 2>/dev/null
  db=$(mktemp -d "$DIR/.ca.XXXXXX")
  : > "$db/index.txt"
  cat > "$db/ca.cnf" <<CNF
[ca]
default_ca = ca_default
[ca_default]
dir = $db
database = $db/index.txt
new_certs_dir = $db
rand_serial = yes
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = $usage
$san
CNF
  openssl ca -batch -notext -config "$db/ca.cnf" -extensions ext -cert "$ca.pem" -keyfile "$ca-key.pem" \
    -in "$name.csr" -out "$name.pem" -startdate "$start" -enddate "$end" 2>/dev/null
  rm -rf "$db" "$name.csr"
}

now=$(date -u +%s)
start=$(date -u -d "@$((now - 3600))" +%Y%m%d%H%M%SZ)
end=$(date -u -d "@$((now + 86400))" +%Y%m%d%H%M%SZ)

ca ca
ca other-ca
sign server ca serverAuth "$start" "$end"
sign other-server other-ca serverAuth "$start" "$end"
sign expired-server ca serverAuth 20200101000000Z 20200102000000Z
sign cn-only-server ca serverAuth "$start" "$end" localhost
sign client ca clientAuth "$start" "$end"
sign expired-client ca clientAuth 20200101000000Z 20200102000000Z
sign other-client other-ca clientAuth "$start" "$end"
cat server-key.pem server.pem > server-keystore.pem
chmod 600 ./*-key.pem server-keystore.pem

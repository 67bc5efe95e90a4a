#!/bin/sh
# A private CA and one link certificate per node for mutual TLS between nodes. Each
# certificate names its node id in subjectAltName, as a node requires of its peers (and of
# itself at start). Writes ./certs/{ca.pem,NODE.pem,NODE-key.pem}; keep ca-key.pem offline.
#
#   ./make-certs.sh n1 n2 n3
set -eu
[ "$#" -gt 0 ] || set -- n1 n2 n3
mkdir -p certs
cd certs
if [ ! -f ca.pem ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
        -subj "/CN=stomp-cluster link CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
fi
for node in "$@"; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$node" -keyout "$node-key.pem" -out "$node.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$node" > "$node.ext"
    openssl x509 -req -in "$node.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 \
        -extfile "$node.ext" -out "$node.pem" 2>/dev/null
    rm -f "$node.csr" "$node.ext"
    # The image runs as uid 10001; compose mounts file secrets with the file's own mode.
    chmod 0644 "$node-key.pem"
    echo "certs/$node.pem names $node"
done

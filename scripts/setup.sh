#!/usr/bin/env bash
# Installs what svcnet and its tests need on a fresh Debian machine.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have nft || need+=(nftables)
have iptables || need+=(iptables)
have dig || need+=(dnsutils)
have etcd || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have protoc || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/*.proto), which etcd-client's
# protos import; Debian ships them apart from the compiler, as a
# recommendation that --no-install-recommends leaves out.
[ -f /usr/include/google/protobuf/descriptor.proto ] ||
  [ -f /usr/local/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
have ip || need+=(iproute2)
have conntrack || need+=(conntrack)
have curl || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "svcnet setup: missing packages ${need[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "svcnet setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The official Python client, used by the API server's client tests.
if ! python3 -c 'import kubernetes' >/dev/null 2>&1; then
  echo "svcnet setup: installing the Python kubernetes client"
  python3 -m pip install -q kubernetes >/dev/null 2>&1 || python3 -m pip install -q --break-system-packages kubernetes >/dev/null
fi

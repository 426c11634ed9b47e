#!/bin/bash
# Install everything sbx-image needs to build, test and run, from Debian's
# packages by name.  Idempotent; needs root.
set -euo pipefail
PKGS=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libcurl4-openssl-dev libssl-dev libzstd-dev libarchive-dev libyaml-dev
  libjansson-dev libsqlite3-dev zlib1g-dev libisal-dev libcmocka-dev
  # runtime: OCI runtimes, the platform base image
  crun runc runsc debootstrap
  # the steps' isolated network (outbound NAT without the host's loopback)
  slirp4netns
  # tests: registry, fixtures, harness tools
  docker-registry busybox-static zstd sqlite3 openssl apache2-utils
  python3 python3-cryptography curl jq util-linux e2fsprogs iproute2 strace
  # benchmarks and load's tests: the real alternatives (buildah writes
  # layouts and archives load must read; bench/push pushes with it)
  skopeo umoci buildah
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "sbx-image: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

#!/bin/bash
# The steps' network.  By default (isolated) a step has a namespace of its
# own with outbound access through slirp4netns: a service this test starts
# on the host's 127.0.0.1 is out of reach (as 127.0.0.1, and as slirp's
# 10.0.2.2 alias of the host's loopback), 169.254.0.0/16 is unreachable, raw
# sockets are not allowed, and the host's /etc/resolv.conf is not the
# step's; --network host reaches the service, --network none has loopback
# only.  No step leaves a network namespace, a slirp4netns or a mount
# behind.  (apt_install from Debian's archive through the isolated network:
# test_build_debian.sh.)
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_private_mounts "$0" "$@"
b_init
b_busybox_image busybox:test >/dev/null
command -v slirp4netns >/dev/null || b_die "missing slirp4netns (scripts/deps.sh)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/www"
echo "host-secret-service" >"$T/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$port" >"$T/http.log" 2>&1 &
HTTP_PID=$!
trap 'kill $HTTP_PID 2>/dev/null; b_cleanup' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
gets() { grep -c "GET / " "$T/http.log" || true; }

ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/probe.yaml" <<YAML
image: busybox:test
steps:
  - run_cmd: |
      get() { printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "\$1" "\$2" 2>/dev/null | grep -q '200 OK'; }
      if get 127.0.0.1 $port; then echo "loopback: reached"; else echo "loopback: refused"; fi
      if get 10.0.2.2 $port; then echo "host alias: reached"; else echo "host alias: refused"; fi
      if get 169.254.169.254 80; then echo "metadata: reached"; else echo "metadata: refused"; fi
      if ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; then echo "raw: allowed"; else echo "raw: denied"; fi
      echo "resolv: \$(grep -c '^nameserver 10.0.2.3' /etc/resolv.conf)"
      echo "iface: \$(ls /sys/class/net | tr '\n' ' ')"
      echo "run $RANDOM" > /probe
YAML
line() { grep -o "^ *$1: .*" "$T/err" | head -n 1 | sed 's/^ *//'; }

echo "=== isolated (the default)"
n0=$(gets)
sbx build --no-cache "$ctx/probe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "isolated build failed"; }
[[ $(line loopback) == "loopback: refused" ]] || { cat "$T/err"; b_die "an isolated step reached the host's 127.0.0.1"; }
[[ $(line "host alias") == "host alias: refused" ]] || { cat "$T/err"; b_die "an isolated step reached the host's loopback through 10.0.2.2"; }
[[ $(line metadata) == "metadata: refused" ]] || { cat "$T/err"; b_die "an isolated step reached 169.254.169.254"; }
[[ $(line raw) == "raw: denied" ]] || { cat "$T/err"; b_die "an isolated step may use raw sockets"; }
[[ $(line resolv) == "resolv: 1" ]] || { cat "$T/err"; b_die "an isolated step does not use slirp's DNS"; }
[[ $(line iface) == *tap0* ]] || { cat "$T/err"; b_die "no tap0 in the isolated step"; }
[[ $(gets) == "$n0" ]] || b_die "the host's service saw a request from an isolated step"
b_assert_clean
pgrep -f "slirp4netns.*$STORE" >/dev/null && b_die "a slirp4netns outlived its step"

echo "=== isolated under runsc (gVisor)"
if command -v runsc >/dev/null; then
    n1=$(gets)
    sbx build --no-cache --runtime runsc "$ctx/probe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "isolated runsc build failed"; }
    [[ $(line loopback) == "loopback: refused" ]] || { cat "$T/err"; b_die "an isolated runsc step reached the host's 127.0.0.1"; }
    [[ $(line "host alias") == "host alias: refused" ]] || { cat "$T/err"; b_die "an isolated runsc step reached 10.0.2.2"; }
    [[ $(line metadata) == "metadata: refused" ]] || { cat "$T/err"; b_die "an isolated runsc step reached 169.254.169.254"; }
    [[ $(gets) == "$n1" ]] || b_die "the host's service saw a request from an isolated runsc step"
    b_assert_clean
fi

echo "=== host"
sbx build --no-cache --network host "$ctx/probe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "host build failed"; }
[[ $(line loopback) == "loopback: reached" ]] || { cat "$T/err"; b_die "--network host did not reach the host's service"; }
(($(gets) > n0)) || b_die "the host's service saw nothing from --network host"

echo "=== none"
sbx build --no-cache --network none "$ctx/probe.yaml" >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "none build failed"; }
[[ $(line iface) == "iface: lo " ]] || { cat "$T/err"; b_die "--network none has more than lo"; }
[[ $(line loopback) == "loopback: refused" ]] || b_die "--network none reached the host's service"

echo "=== a step killed with its builder leaves no slirp4netns"
cat >"$ctx/sleep.yaml" <<YAML
image: busybox:test
steps:
  - run_cmd: sleep 60 # $RANDOM
YAML
"$SBX_BIN" --store "$STORE" build "$ctx/sleep.yaml" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do pgrep -f "slirp4netns.*$STORE" >/dev/null && break; sleep 0.1; done
pgrep -f "slirp4netns.*$STORE" >/dev/null || b_die "no slirp4netns while the step runs"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
for _ in $(seq 50); do pgrep -f "slirp4netns.*$STORE" >/dev/null || break; sleep 0.1; done
! pgrep -f "slirp4netns.*$STORE" >/dev/null || b_die "slirp4netns outlived its killed builder"
# the next build reaps the dead one's container, namespace and bundle
sbx build --network none "$ctx/probe.yaml" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "build after a kill failed"; }
b_assert_clean
b_pass "isolated network by default: no host loopback, no link-local, no raw sockets; host and none as asked"

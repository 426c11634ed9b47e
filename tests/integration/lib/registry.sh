# Registry test harness, sourced by tests/integration/test_registry_*.sh.
#
# Starts real services on loopback for one test script and removes them when it
# exits: the Debian docker-registry (plain, htpasswd, token auth, TLS), the
# token issuer, the fault proxy and a blob server on 127.0.0.2 (lib/*.py), and
# builds the fixture images (lib/fixtures.py, cached per build dir).  Every
# test gets its own temp dir $T, store $STORE, DOCKER_CONFIG and certs dir.
# A missing service is a failure, never a skip.  See docs/testing.md.
#
# Functions set variables named after the service: after `reg_start r1 token
# tls`, $r1_HOST is 127.0.0.1:PORT, $r1_URL the base URL, $r1_DIR its files.

set -euo pipefail

: "${SBX_BIN:?SBX_BIN must name the sbx-image binary}"
: "${SBX_SOURCE_DIR:?SBX_SOURCE_DIR must name the source tree}"
HLIB=$SBX_SOURCE_DIR/tests/integration/lib
PY=/usr/bin/python3              # Debian's python3, with python3-cryptography
T_PIDS=()
T_FAILED=0
TEST_USER=sbxuser
TEST_PASS=""

t_die() { echo "harness: $*" >&2; exit 1; }

t_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || t_die "missing '$c' (scripts/deps.sh installs it)"
    done
}

t_cleanup() {
    local rc=$? pid
    # a subshell that fails (fail inside $(...)) must not tear down the test
    [[ $BASHPID == "$T_MAINPID" ]] || exit "$rc"
    for pid in "${T_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${T_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((rc != 0)); then
        echo "---- harness logs (last lines) ----"
        local f
        for f in "$T"/*/registry.log "$T"/*/proxy.err "$T"/*/token.err; do
            [[ -s $f ]] && { echo "== $f"; tail -n 8 "$f" | cut -c1-400; }
        done
    fi
    [[ -n ${T_KEEP:-} ]] && echo "kept $T" || rm -rf "$T"
    exit "$rc"
}

# t_init [SCRIPT-ARGS]: temp dir, private store, DOCKER_CONFIG, certs dir;
# cleanup on exit.  Pass the script's arguments (they survive the re-exec).
t_init() {
    # Hermetic network: re-run the test in a new network namespace that has
    # only loopback, so nothing can reach past 127.0.0.0/8 whatever the
    # client does, and a private mount namespace (for fake_hosts).  (Needs
    # root; otherwise the proxy variables below guard.)
    if [[ -z ${SBX_TEST_NETNS:-} ]] && command -v ip >/dev/null && unshare -n -m true 2>/dev/null; then
        export SBX_TEST_NETNS=1
        exec unshare -n -m --propagation private -- \
            bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
    fi
    t_need docker-registry curl jq openssl htpasswd zstd skopeo "$PY"
    [[ -x $SBX_BIN ]] || t_die "SBX_BIN '$SBX_BIN' is not executable"
    T=$(mktemp -d /tmp/sbx-regtest.XXXXXX)
    T_MAINPID=$BASHPID
    trap t_cleanup EXIT
    STORE=$T/store
    export DOCKER_CONFIG=$T/docker
    mkdir -p "$DOCKER_CONFIG" "$T/certs.d"
    export SBX_CERTS_DIR=$T/certs.d
    export SBX_REGISTRIES_CONFIG=$T/registries.json   # absent unless a test writes it
    # the auth files podman's order reads: the test's own, none to begin with
    export XDG_RUNTIME_DIR=$T/xdg-run XDG_CONFIG_HOME=$T/xdg-config
    unset REGISTRY_AUTH_FILE
    export SBX_RETRY_BASE_MS=${SBX_RETRY_BASE_MS:-50}
    if [[ -z ${SBX_TEST_NETNS:-} ]]; then
        # No namespace: any traffic that is not for loopback goes to a dead
        # local port instead of the Internet (libcurl honours these variables).
        export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9
        export HTTP_PROXY=$http_proxy HTTPS_PROXY=$https_proxy
        export no_proxy=127.0.0.1,127.0.0.2,localhost NO_PROXY=127.0.0.1,127.0.0.2,localhost
    else
        unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
    fi
    TEST_PASS=pw-$(openssl rand -hex 12)
}

# free_port [IP]: a port that was free a moment ago on IP (default 127.0.0.1).
free_port() {
    "$PY" -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' \
        "${1:-127.0.0.1}"
}

# wait_file FILE [SECONDS] [PID]: until FILE exists (a service's port file).
wait_file() {
    local f=$1 n=$(( ${2:-15} * 10 )) pid=${3:-}
    while [[ ! -s $f ]]; do
        ((n-- > 0)) || t_die "timed out waiting for $f"
        [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || t_die "service for $f exited"
        sleep 0.1
    done
}

# ------------------------------------------------------------------ services

# token_start NAME: the token issuer; sets NAME_URL (realm base), NAME_DIR.
# Users: $TEST_USER:$TEST_PASS, or the identity token idt-$TEST_PASS;
# anonymous pull only under "public/".
token_start() {
    local name=$1 dir=$T/tok-$1
    mkdir -p "$dir"
    "$PY" "$HLIB/tokenserver.py" --dir "$dir" --user "$TEST_USER:$TEST_PASS" \
        --refresh "$TEST_USER:idt-$TEST_PASS" \
        --anon-prefix public/ --expires "${TOKEN_EXPIRES:-300}" >"$dir/token.err" 2>&1 &
    T_PIDS+=($!)
    wait_file "$dir/token.port" 20 $!
    printf -v "${name}_URL" 'http://127.0.0.1:%s' "$(cat "$dir/token.port")"
    printf -v "${name}_DIR" '%s' "$dir"
}

# make_tls DIR [IP [DNS-NAME...]]: a CA and a server cert for IP (default
# 127.0.0.1), localhost and the names, signed by it.
make_tls() {
    local d=$1 ip=${2:-127.0.0.1} san n
    shift 2 || shift $#
    san="IP:$ip,DNS:localhost"
    for n in "$@"; do san+=",DNS:$n"; done
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sbx test CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$ip" \
        -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/ext" -out "$d/server.crt" 2>/dev/null
}

# reg_start NAME [plain|htpasswd|token] [tls]: a docker-registry on 127.0.0.1
# (or on $REG_IP, an address the test added to lo inside its namespace; on
# $REG_PORT instead of a free port; $REG_DNS: extra names for its cert).
# Sets NAME_HOST (127.0.0.1:PORT), NAME_URL, NAME_DIR, NAME_AUTH, NAME_CA
# (the CA file for tls, else empty).  For tls the CA also goes to
# $SBX_CERTS_DIR/127.0.0.1:PORT/ca.crt.  For token, a token issuer named
# NAME_tok is started first.
reg_start() {
    local name=$1 auth=${2:-plain} tls=${3:-} dir=$T/reg-$1 try port scheme=http
    local ip=${REG_IP:-127.0.0.1}
    mkdir -p "$dir/storage"
    local auth_yaml=""
    case $auth in
    plain) ;;
    htpasswd)
        htpasswd -Bbc "$dir/htpasswd" "$TEST_USER" "$TEST_PASS" 2>/dev/null
        auth_yaml="auth:
  htpasswd:
    realm: sbx-test
    path: $dir/htpasswd" ;;
    token)
        token_start "${name}_tok"
        local tdir tok_url
        tdir=${name}_tok_DIR; tok_url=${name}_tok_URL
        auth_yaml="auth:
  token:
    realm: ${!tok_url}/token
    service: sbx-test-registry
    issuer: sbx-test-issuer
    rootcertbundle: ${!tdir}/token.crt" ;;
    *) t_die "reg_start: unknown auth '$auth'" ;;
    esac
    local tls_yaml=""
    if [[ $tls == tls ]]; then
        # shellcheck disable=SC2086
        make_tls "$dir/tls" "$ip" ${REG_DNS:-}
        scheme=https
        tls_yaml="  tls:
    certificate: $dir/tls/server.crt
    key: $dir/tls/server.key"
    fi
    for try in 1 2 3; do
        port=${REG_PORT:-$(free_port "$ip")}
        cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $ip:$port
  secret: sbx-test-secret
$tls_yaml
$auth_yaml
EOF
        docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
        local pid=$!
        T_PIDS+=($pid)
        local n=150 code=000
        while ((n-- > 0)); do
            kill -0 "$pid" 2>/dev/null || break
            code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 \
                ${tls:+--cacert "$dir/tls/ca.crt"} "$scheme://$ip:$port/v2/" || true)
            [[ $code == 200 || $code == 401 ]] && break
            sleep 0.1
        done
        if [[ $code == 200 || $code == 401 ]]; then
            printf -v "${name}_HOST" '%s:%s' "$ip" "$port"
            printf -v "${name}_URL" '%s://%s:%s' "$scheme" "$ip" "$port"
            printf -v "${name}_DIR" '%s' "$dir"
            printf -v "${name}_AUTH" '%s' "$auth"
            printf -v "${name}_CA" '%s' "${tls:+$dir/tls/ca.crt}"
            printf -v "${name}_PID" '%s' "$pid"
            if [[ $tls == tls ]]; then
                mkdir -p "$SBX_CERTS_DIR/$ip:$port"
                cp "$dir/tls/ca.crt" "$SBX_CERTS_DIR/$ip:$port/ca.crt"
            fi
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        grep -q 'address already in use' "$dir/registry.log" || break
    done
    tail -n 20 "$dir/registry.log" >&2 || true
    t_die "docker-registry '$name' ($auth${tls:+, tls}) did not come up"
}

# reg_stop NAME: stop a registry (a test of what works without it).
reg_stop() {
    local p=${1}_PID
    kill "${!p}" 2>/dev/null || true
    wait "${!p}" 2>/dev/null || true
}

# proxy_start NAME REG: the fault proxy in front of registry REG (plain HTTP).
# Sets NAME_HOST, NAME_DIR; faults via proxy_mode, requests in $NAME_DIR/proxy.log.
proxy_start() {
    local name=$1 reg=$2 dir=$T/proxy-$1 up
    up=${reg}_URL
    mkdir -p "$dir"
    "$PY" "$HLIB/faultproxy.py" proxy --upstream "${!up}" --dir "$dir" >"$dir/proxy.err" 2>&1 &
    T_PIDS+=($!)
    wait_file "$dir/proxy.port" 20 $!
    printf -v "${name}_HOST" '127.0.0.1:%s' "$(cat "$dir/proxy.port")"
    printf -v "${name}_DIR" '%s' "$dir"
}

# proxy_mode NAME JSON: set the fault (see faultproxy.py); counters restart.
proxy_mode() {
    local d=${1}_DIR
    printf '%s\n' "$2" >"${!d}/mode.json.tmp"
    mv "${!d}/mode.json.tmp" "${!d}/mode.json"
}

# proxy_reqs NAME JQFILTER: count proxy log entries matching a jq filter.
proxy_reqs() {
    local d=${1}_DIR
    [[ -s ${!d}/proxy.log ]] || { echo 0; return; }
    jq -s "[.[] | select($2)] | length" "${!d}/proxy.log"
}

# blobsrv_start NAME: serves the fixture blobs on 127.0.0.2 (another "host");
# sets NAME_URL, NAME_DIR; requests in $NAME_DIR/blobs.log.
blobsrv_start() {
    local name=$1 dir=$T/blobs-$1
    mkdir -p "$dir"
    "$PY" "$HLIB/faultproxy.py" blobs --blobs "$FX/blobs/sha256" --host 127.0.0.2 \
        --dir "$dir" >"$dir/blobs.err" 2>&1 &
    T_PIDS+=($!)
    wait_file "$dir/blobs.port" 20 $!
    printf -v "${name}_URL" 'http://127.0.0.2:%s' "$(cat "$dir/blobs.port")"
    printf -v "${name}_DIR" '%s' "$dir"
}

# ------------------------------------------------------------------ fixtures

# fx_build: build (or reuse) the fixture images; sets FX to the OCI layout.
# Cached in the build dir, keyed by the builder script and busybox.
fx_build() {
    local key base
    key=$(cat "$HLIB/fixtures.py" /bin/busybox | sha256sum | cut -c1-16)
    if [[ -n ${SBX_BUILD_DIR:-} && -d ${SBX_BUILD_DIR:-} ]]; then
        base=$SBX_BUILD_DIR/registry-fixtures
    else
        base=$T/fixtures
    fi
    mkdir -p "$base"
    FX=$base/$key
    (
        flock 9
        if [[ ! -s $FX/facts.json ]]; then
            rm -rf "$FX.tmp"
            "$PY" "$HLIB/fixtures.py" build "$FX.tmp"
            mv "$FX.tmp" "$FX"
        fi
    ) 9>"$base/.lock"
    [[ -s $FX/facts.json ]] || t_die "fixture build failed"
}

# fx_push REG NAME=REPO:TAG ...: push fixture images to registry REG.
fx_push() {
    local reg=$1; shift
    local url=${reg}_URL auth=${reg}_AUTH ca=${reg}_CA args=()
    [[ ${!auth} == plain ]] || args+=(--user "$TEST_USER" --password "$TEST_PASS")
    [[ -z ${!ca} ]] || args+=(--cacert "${!ca}")
    "$PY" "$HLIB/fixtures.py" push "$FX" "${!url}" "$@" "${args[@]}" ||
        t_die "pushing $* to $reg failed"
}

# fx IMAGE JQPATH: a fact about a fixture image, e.g. fx oci-multi .digest
fx() { jq -r ".[\"$1\"] | $2" "$FX/facts.json"; }

# fake_debootstrap: a stand-in `debootstrap` first on PATH that makes a
# busybox tree with a random host id (two calls give two different bases, as
# two real debootstraps do) and logs each call; `runs` counts them.
fake_debootstrap() {
    mkdir -p "$T/fakebin"
    cat >"$T/fakebin/debootstrap" <<'SH'
#!/bin/sh
# debootstrap --variant=V SUITE TARGET MIRROR (a stand-in for the tests)
echo "$*" >>"$FAKE_DEBOOTSTRAP_LOG"
t=$3
mkdir -p "$t/bin" "$t/etc" "$t/tmp" && cp /bin/busybox "$t/bin/busybox" &&
    ln -s busybox "$t/bin/sh" && ln -s busybox "$t/bin/echo" && ln -s busybox "$t/bin/cat" &&
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$t/etc/host-id"
SH
    chmod +x "$T/fakebin/debootstrap"
    export FAKE_DEBOOTSTRAP_LOG=$T/debootstrap.log PATH=$T/fakebin:$PATH
    : >"$FAKE_DEBOOTSTRAP_LOG"
}
runs() { wc -l <"$FAKE_DEBOOTSTRAP_LOG"; }

# ------------------------------------------------------------------ running sbx-image

# sbx VERB ARGS...: run sbx-image on the test's store; stdout in $T/out,
# stderr in $T/err, exit status in RC.  Sanitizer reports fail the test.
sbx() {
    local verb=$1; shift
    echo "+ sbx-image $verb $*"
    set +e
    "$SBX_BIN" "$verb" --store "$STORE" "$@" >"$T/out" 2>"$T/err"
    RC=$?
    set -e
    cat "$T/out" "$T/err" >>"$T/all-output"
    ((RC == 0)) || echo "  -> exit $RC: $(tail -n 1 "$T/err" | cut -c1-400)"
    if grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$T/err"; then
        cat "$T/err"
        fail "sanitizer report from sbx-image $verb"
    fi
}

fail() {
    echo "FAIL: $*"
    if [[ -f $T/err ]]; then echo "-- stderr:"; tail -n 20 "$T/err"; fi
    if [[ -f $T/out ]]; then echo "-- stdout:"; head -c 2000 "$T/out"; echo; fi
    exit 1
}

# ok VERB ARGS...: must exit 0.
ok() { sbx "$@"; ((RC == 0)) || fail "sbx-image $* exited $RC, expected 0"; }

# fails VERB ARGS...: must exit 1 with an error on stderr and nothing on stdout.
fails() {
    sbx "$@"
    ((RC == 1)) || fail "sbx-image $* exited $RC, expected 1"
    [[ -s $T/err ]] || fail "sbx-image $* failed without a message"
    [[ ! -s $T/out ]] || fail "sbx-image $* failed but printed on stdout"
}

# err_has ERE / out_has ERE / err_lacks ERE: assertions on the last run's output.
err_has() { grep -qiE -- "$1" "$T/err" || fail "stderr does not match /$1/"; }
err_lacks() { ! grep -qiE -- "$1" "$T/err" || fail "stderr matches /$1/"; }
out_has() { grep -qiE -- "$1" "$T/out" || fail "stdout does not match /$1/"; }
out_is() {
    local got
    got=$(cat "$T/out")
    [[ $got == "$1" ]] || fail "stdout is '$got', expected '$1'"
}
# jq_is FILTER VALUE: a jq filter over the last stdout (JSON) gives VALUE.
jq_is() {
    local got
    got=$(jq -r "$1" "$T/out" 2>&1) || fail "stdout is not JSON for '$1'"
    [[ $got == "$2" ]] || fail "jq '$1' gave '$got', expected '$2'"
}

assert_eq() { [[ $1 == "$2" ]] || fail "${3:-value}: got '$1', expected '$2'"; }

# case_ TEXT: start a named case (shows in ctest output).
case_() { echo; echo "=== [${SECONDS}s] $*"; }

# docker_login REG: write $DOCKER_CONFIG/config.json with base64 auth for REG.
docker_login() {
    local h=${1}_HOST
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "${!h}" \
        "$(printf '%s:%s' "$TEST_USER" "$TEST_PASS" | base64 -w0)" >"$DOCKER_CONFIG/config.json"
}

# no_secrets: nothing sbx-image printed in this test holds the password or a JWT.
no_secrets() {
    [[ -f $T/all-output ]] || return 0
    ! grep -qF -- "$TEST_PASS" "$T/all-output" || fail "sbx-image printed the password"
    ! grep -qE 'eyJ[A-Za-z0-9_-]{10,}\.' "$T/all-output" || fail "sbx-image printed a token"
    ! grep -qE 'Basic [A-Za-z0-9+/=]{8,}' "$T/all-output" || fail "sbx-image printed basic credentials"
    ! grep -qF -- "$(printf '%s:%s' "$TEST_USER" "$TEST_PASS" | base64 -w0)" "$T/all-output" ||
        fail "sbx-image printed the base64 credentials"
}

# add_ip ADDR: put another address on lo (only inside the test's network
# namespace), for a registry that is not on 127.0.0.0/8.
add_ip() {
    [[ -n ${SBX_TEST_NETNS:-} ]] || t_die "add_ip needs the test's network namespace (run as root)"
    ip addr add "$1/32" dev lo
}

# fake_hosts LINE...: replace /etc/hosts for this test (its own mount
# namespace), e.g. to point registry-1.docker.io at a registry on 10.99.0.x.
fake_hosts() {
    [[ -n ${SBX_TEST_NETNS:-} ]] || t_die "fake_hosts needs the test's namespaces (run as root)"
    printf '127.0.0.1 localhost\n' >"$T/hosts"
    printf '%s\n' "$@" >>"$T/hosts"
    mount --bind "$T/hosts" /etc/hosts
}

# t_pass: the end of a test: nothing printed held a secret, then PASS.
t_pass() {
    no_secrets
    echo PASS
}

# store_lacks DIGEST: no file or record in the store mentions DIGEST.
store_lacks() {
    local hex=${1#sha256:}
    [[ ! -d $STORE ]] || ! grep -rqa -- "$hex" "$STORE" ||
        fail "the store holds '$1' ($(grep -rla -- "$hex" "$STORE" | head -3 | tr '\n' ' '))"
}

# fsck_clean: sbx-image fsck finds nothing wrong in the store.
fsck_clean() { ok fsck; }

# check_pulled IMAGE [PLATFORM]: the last stdout is `pull --json` of fixture
# IMAGE (the platform's entry for an index) and matches its facts: manifest
# and config digests, and every layer's digest, diff_id, size and media type.
check_pulled() {
    local img=$1 plat=${2:-} res
    res=$(jq -r --slurpfile f "$FX/facts.json" --arg img "$img" --arg plat "$plat" '
        ($f[0][$img] | if $plat == "" then . else .platforms[$plat] end) as $w
        | [.layers[]? | {digest, diff_id, size, media_type}] as $got
        | ($w.layers | map({digest, diff_id, size, media_type})) as $want
        | [ (if .digest != $w.digest then "digest \(.digest) != \($w.digest)" else empty end),
            (if .config != $w.config then "config \(.config) != \($w.config)" else empty end),
            (if $got != $want then "layers \($got | tostring) != \($want | tostring)"
             else empty end) ]
        | if length == 0 then "ok" else join("; ") end' "$T/out" 2>&1) ||
        fail "pull --json output is not JSON: $res"
    [[ $res == ok ]] || fail "pulled $img${plat:+ ($plat)}: $res"
}

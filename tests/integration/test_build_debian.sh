#!/bin/bash
# End-to-end on the debootstrap base (base: sbx, built once per build dir):
#  - apt_install from Debian's archive (python3-pip, npm, hello);
#  - pip_install from a PEP 503 index served on 127.0.0.1 with a wheel this
#    test makes by hand (Debian's python3 is externally managed: PEP 668),
#    behind a token the recipe gets as a build secret (PIP_INDEX_URL), which
#    a later run_cmd echoes: the token is then in no blob, layer, metadata,
#    log or output line;
#  - npm_install of one small package from the npm registry, global and
#    into the working directory.  Debian's npm package pulls ~390 packages
#    (110 s of apt here), so the image gets Debian's nodejs and npm itself
#    from the npm registry's tarball;
#  - python: VERSION from apt when the archive has it, and naming what is
#    available when it has not.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_sbx_base

# ---- a PEP 503 index with a wheel made here -----------------------------
idx=$T/index
mkdir -p "$idx/simple/sbx-tiny" "$idx/files"
python3 - "$idx/files" <<'PY'
import base64, hashlib, sys, zipfile
out = sys.argv[1]
name, ver = "sbx_tiny", "1.0"
files = {
    f"{name}/__init__.py": b'VALUE = "tiny 1.0"\n',
    f"{name}-{ver}.dist-info/METADATA": b"Metadata-Version: 2.1\nName: sbx-tiny\nVersion: 1.0\nSummary: test wheel\n",
    f"{name}-{ver}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def rec(data):
    d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={d},{len(data)}"
record = "".join(f"{p},{rec(d)}\n" for p, d in files.items()) + f"{name}-{ver}.dist-info/RECORD,,\n"
files[f"{name}-{ver}.dist-info/RECORD"] = record.encode()
whl = f"{out}/{name}-{ver}-py3-none-any.whl"
with zipfile.ZipFile(whl, "w", zipfile.ZIP_DEFLATED) as z:
    for p, d in files.items():
        z.writestr(zipfile.ZipInfo(p, (1980, 1, 1, 0, 0, 0)), d)
PY
whl=sbx_tiny-1.0-py3-none-any.whl
sum=$(sha256sum "$idx/files/$whl" | cut -d' ' -f1)
printf '<!DOCTYPE html><html><body><a href="sbx-tiny/">sbx-tiny</a></body></html>\n' >"$idx/simple/index.html"
printf '<!DOCTYPE html><html><body><a href="../../files/%s#sha256=%s">%s</a></body></html>\n' \
    "$whl" "$sum" "$whl" >"$idx/simple/sbx-tiny/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# the index wants a token (basic auth, as private indexes do): the recipe
# gets it only as a build secret
TOKEN="pypi-token-$RANDOM$RANDOM-$(date +%s%N)"
python3 - "$idx" "$port" "$TOKEN" >"$T/http.log" 2>&1 <<'PY' &
import base64, functools, http.server, sys
root, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
want = "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="index"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(H, directory=root)).serve_forever()
PY
HTTP_PID=$!
trap 'kill $HTTP_PID 2>/dev/null; b_cleanup' EXIT
for _ in $(seq 50); do curl -fsS -u "__token__:$TOKEN" "http://127.0.0.1:$port/simple/" >/dev/null 2>&1 && break; sleep 0.1; done
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/simple/") == 401 ]] || b_die "the index answers without its token"
printf 'http://__token__:%s@127.0.0.1:%s/simple\n' "$TOKEN" "$port" >"$T/pypi-url"

ctx=$T/ctx
mkdir -p "$ctx"
# This host reaches the npm registry through a TLS-inspecting egress proxy
# that only the host's trust store knows; hand that store to node and npm in
# the image (a copy step, so it is part of the recipe like any other input).
cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca.crt"
cat >"$ctx/recipe.yaml" <<YAML
base: sbx
steps:
  - apt_install: [python3-pip, nodejs, hello]
  - copy: {src: host-ca.crt, dest: /etc/ssl/host-ca.crt, mode: "0644"}
  - env: {NODE_EXTRA_CA_CERTS: /etc/ssl/host-ca.crt, npm_config_cafile: /etc/ssl/host-ca.crt}
  - pip_install: {packages: [sbx-tiny], secrets: [{id: pypi, env: PIP_INDEX_URL}]}
  - run_cmd: |
      node -e 'require("https").get("https://registry.npmjs.org/npm/-/npm-10.9.2.tgz", r => { if (r.statusCode != 200) process.exit(1); r.pipe(require("fs").createWriteStream("/tmp/npm.tgz")); })'
      mkdir -p /usr/local/lib/node_modules/npm
      tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1
      ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
      rm /tmp/npm.tgz
  - npm_install: {packages: [is-number@7.0.0], global: true}
  - python: "3.11"
  - workdir: /srv/app
  - npm_install: [is-odd@3.0.1]
  - run_cmd:
      - hello --version | head -n 1
      - python3.11 -c 'import sys; print("python", sys.version_info[:2])'
      - python3 -c 'import sbx_tiny; assert sbx_tiny.VALUE == "tiny 1.0"; print("pip ok")'
      - node -e 'const n = require(process.argv[1] + "/is-number"); if (!n(5)) process.exit(1); console.log("npm -g ok")' "\$(npm root -g)"
      - node -e 'const o = require("/srv/app/node_modules/is-odd"); if (!o(3)) process.exit(1); console.log("npm local ok")'
      - test ! -e /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease
  - run_cmd:
      commands: ['test -s /run/secrets/pypi && echo "index: \$(cat /run/secrets/pypi)"']
      secrets: [pypi]
YAML
# --network host: the package index is on this host's 127.0.0.1, which the
# default isolated network keeps steps away from (the python: 3.99 build
# below runs isolated and needs Debian's archive)
sbx build --network host --secret id=pypi,src="$T/pypi-url" "$ctx/recipe.yaml" >"$T/out" 2>"$T/err" ||
    { tail -n 60 "$T/err"; b_die "debian build failed"; }
# the token is nowhere: blobs, layers (decompressed), metadata, build logs, events
for f in $(find "$STORE" -name '*.zst' -o -name '*.gz'); do # zstd(1) reads gzip too
    ! zstd -dc "$f" 2>/dev/null | grep -qaF -- "$TOKEN" || b_die "the index token is in layer $f"
done
! grep -rqaF -- "$TOKEN" "$STORE" || b_die "the index token is in $(grep -rlaF -- "$TOKEN" "$STORE" | head -3)"
! sqlite3 "$STORE/meta.db" .dump | grep -qF -- "$TOKEN" || b_die "the index token is in the metadata"
! grep -qF -- "$TOKEN" "$T/out" "$T/err" || b_die "the index token is in the build's output"
grep -q 'index: \*\*\*\*' "$T/err" || { tail -n 20 "$T/err"; b_die "the step's echo of the secret was not shown as ****"; }
grep -q '^\[1/11\] apt_install python3-pip nodejs hello' "$T/err" || b_die "no apt step line"
[[ $(head -n 1 "$T/err") == "[base] sbx (debian bookworm minbase)" ]] || { head -n 2 "$T/err"; b_die "no '[base] sbx (debian bookworm minbase)' line"; }
grep -q '      pip ok' "$T/err" || { tail -n 30 "$T/err"; b_die "pip package not importable"; }
grep -q '      npm -g ok' "$T/err" || b_die "global npm package missing"
grep -q '      npm local ok' "$T/err" || b_die "local npm package missing"
grep -q 'Hello, World\|GNU Hello\|hello (GNU' "$T/err" || b_die "hello did not run"
grep -q "GET /simple/sbx-tiny/" "$T/http.log" || b_die "pip did not use the local index"
grep -q '      python (3, 11)' "$T/err" || b_die "python: 3.11 step did not give python3.11"

# npm_install without packages: the project's package.json (npm install),
# then a copy of it with its lockfile (npm ci)
d1=$(cat "$T/out")
cat >"$ctx/proj.yaml" <<YAML
image: $d1
steps:
  - run_cmd: mkdir -p /srv/proj && printf '{"name":"proj","version":"1.0.0","dependencies":{"is-number":"7.0.0"}}\\n' > /srv/proj/package.json
  - workdir: /srv/proj
  - npm_install: {}
  - run_cmd: cp -r /srv/proj /srv/proj2 && rm -rf /srv/proj2/node_modules && test -f /srv/proj2/package-lock.json
  - workdir: /srv/proj2
  - npm_install: {}
  - run_cmd: node -e 'require("/srv/proj/node_modules/is-number"); require("/srv/proj2/node_modules/is-number"); console.log("npm project ok")'
  - run_cmd: python3 -m pip uninstall -y --break-system-packages sbx-tiny && useradd -m pipuser
  - user: pipuser
  - pip_install: {packages: [sbx-tiny], user: true, secrets: [{id: pypi, env: PIP_INDEX_URL}]}
  - run_cmd: python3 -c 'import sbx_tiny; assert sbx_tiny.__file__.startswith("/home/pipuser/.local/"), sbx_tiny.__file__; print("pip user ok")'
YAML
sbx build --network host --secret id=pypi,src="$T/pypi-url" "$ctx/proj.yaml" >/dev/null 2>"$T/err" ||
    { tail -n 40 "$T/err"; b_die "npm_install without packages, pip_install user: true failed"; }
grep -q '      pip user ok' "$T/err" || { tail -n 20 "$T/err"; b_die "pip_install user: true did not install into the user's home"; }
grep -q 'npm_install: npm install (package.json, no lockfile)' "$T/err" && grep -q 'npm_install: npm ci (the lockfile)' "$T/err" &&
    grep -q '      npm project ok' "$T/err" || { tail -n 40 "$T/err"; b_die "npm_install without packages: not npm install then npm ci"; }
b_pass "apt_install, pip_install (local PEP 503 index behind a token given as a build secret, found nowhere after), npm_install global, local, and a project's package.json (npm install, then npm ci), pip_install user: true (pip --user) on base: sbx"

# python: a version the archive does not have fails, naming what it has: the
# list comes from apt-get update against Debian's archive, through the
# default isolated network.
cat >"$ctx/py.yaml" <<'YAML'
base: sbx
steps:
  - python: "3.99"
YAML
b_state >"$T/before"
rc=0; sbx build "$ctx/py.yaml" >/dev/null 2>"$T/err" || rc=$?
[[ $rc == 1 ]] || b_die "python 3.99 did not fail"
grep -q 'python 3.99 is not available from apt; available: 3\.' "$T/err" || { tail "$T/err"; b_die "no list of available versions"; }
b_state >"$T/after"
diff "$T/before" "$T/after" >&2 || b_die "failed python step changed the store"
b_assert_clean
b_pass "python: unavailable version names what apt has (Debian's archive reached from the isolated network)"

# python: 3.12 on the bookworm base, which has 3.11 only: apt-get update
# (isolated network) finds no python3.12, and the standalone CPython comes
# from a pinned source served here (an archive this test makes; its
# python3.12 is a stub for glibc that answers --version).
grep -q 'and no standalone CPython 3.99 is pinned for' "$T/err" || { tail -n 3 "$T/err"; b_die "3.99: no word on standalone pins"; }
mkdir -p "$T/pbs"
sum=$(b_pbs_archive "$T/pbs" 3.12.99)
b_http_serve "$T/pbs"
b_pbs_pins "$T/pins.json" "$HTTP_URL/" 3.12.99 "$sum"
cat >"$ctx/py312.yaml" <<'YAML'
base: sbx
steps:
  - python: "3.12"
  - run_cmd: python3 --version && python3.12 --version && ls -l /usr/local/bin/python3
YAML
SBX_PYTHON_PINS=$T/pins.json sbx build "$ctx/py312.yaml" >/dev/null 2>"$T/err" ||
    { tail -n 20 "$T/err"; b_die "python: 3.12 on bookworm failed"; }
grep -q 'python 3.12 is not available from apt; available: 3\.11' "$T/err" || { cat "$T/err"; b_die "3.12 came from apt?"; }
grep -q "standalone CPython 3.12.99 (x86_64-gnu) from $HTTP_URL/" "$T/err" || { cat "$T/err"; b_die "no standalone download"; }
[[ $(grep -c '      Python 3.12.99$' "$T/err") == 2 ]] || { cat "$T/err"; b_die "python3 is not the standalone 3.12"; }
b_assert_clean
b_pass "python: 3.12 on bookworm (apt has 3.11): a standalone CPython from the pinned local source"

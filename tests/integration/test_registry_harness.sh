#!/bin/bash
# The registry test harness checked with independent clients (curl, skopeo),
# so that a failure in the sbx-image tests points at sbx-image, not at the
# harness: fixtures push and read back with the exact digests in facts.json,
# token/basic auth and TLS behave like a real registry, and every fault-proxy
# mode does what it says.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build

C=(curl -sS --noproxy '*' --max-time 20)
ACCEPT='Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json'
ALL=(oci-single oci-multi oci-zstd oci-tar oci-mixed docker-single docker-multi oci-index
     docker-list foreign-index bad-diffid)

case_ "plain registry: every fixture pushes and reads back byte for byte"
reg_start r plain
specs=()
for i in "${ALL[@]}"; do specs+=("$i=test/$i:v1"); done
fx_push r "${specs[@]}"
for i in "${ALL[@]}"; do
    got=$(skopeo inspect --raw --tls-verify=false "docker://$r_HOST/test/$i:v1" | sha256sum | cut -d' ' -f1)
    assert_eq "sha256:$got" "$(fx "$i" .digest)" "skopeo inspect --raw test/$i"
    hdr=$("${C[@]}" -I -H "$ACCEPT" "$r_URL/v2/test/$i/manifests/v1" | tr -d '\r' |
        sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
    assert_eq "$hdr" "$(fx "$i" .digest)" "Docker-Content-Digest of test/$i"
done
# skopeo reads every blob and checks its digest on the way
skopeo copy -q --src-tls-verify=false "docker://$r_HOST/test/oci-multi:v1" "oci:$T/copy:x"
skopeo copy -q --src-tls-verify=false "docker://$r_HOST/test/docker-multi:v1" "oci:$T/copy:y"
skopeo copy -q --src-tls-verify=false "docker://$r_HOST/test/oci-zstd:v1" "oci:$T/copy:z"
skopeo copy -q --src-tls-verify=false --override-arch arm64 \
    "docker://$r_HOST/test/oci-index:v1" "oci:$T/copy:arm"
arm=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="arm") | .digest' "$T/copy/index.json")
assert_eq "$arm" "$(fx oci-index '.platforms["linux/arm64/v8"].digest')" "skopeo's arm64 choice"
# each layer's diff_id in facts is the sha256 of the uncompressed tar
l=$(fx oci-zstd '.layers[1].digest')
got=$(zstd -dc "$FX/blobs/sha256/${l#sha256:}" | sha256sum | cut -d' ' -f1)
assert_eq "sha256:$got" "$(fx oci-zstd '.layers[1].diff_id')" "diff_id of the zstd layer"

case_ "token auth: anonymous denied on private repos, allowed on public/, credentials work"
reg_start tr token
fx_push tr oci-single=private/img:v1 oci-single=public/img:v1
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" "$tr_URL/v2/private/img/manifests/v1")
assert_eq "$code" 401 "anonymous manifest GET"
"${C[@]}" -D- -o /dev/null -H "$ACCEPT" "$tr_URL/v2/private/img/manifests/v1" |
    grep -qi 'www-authenticate: Bearer realm="http://127.0.0.1:[0-9]*/token",service="sbx-test-registry",scope="repository:private/img:pull"' ||
    fail "challenge does not name realm, service and scope"
tok=$("${C[@]}" "$tr_tok_URL/token?service=sbx-test-registry&scope=repository:private/img:pull" | jq -r .token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" -H "Authorization: Bearer $tok" \
    "$tr_URL/v2/private/img/manifests/v1")
assert_eq "$code" 401 "anonymous token on a private repo"
tok=$("${C[@]}" "$tr_tok_URL/token?service=sbx-test-registry&scope=repository:public/img:pull" | jq -r .token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" -H "Authorization: Bearer $tok" \
    "$tr_URL/v2/public/img/manifests/v1")
assert_eq "$code" 200 "anonymous token on a public repo"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -u "$TEST_USER:wrong" \
    "$tr_tok_URL/token?service=sbx-test-registry&scope=repository:private/img:pull")
assert_eq "$code" 401 "token request with a wrong password"
tok=$("${C[@]}" -u "$TEST_USER:$TEST_PASS" \
    "$tr_tok_URL/token?service=sbx-test-registry&scope=repository:private/img:pull" | jq -r .token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" -H "Authorization: Bearer $tok" \
    "$tr_URL/v2/private/img/manifests/v1")
assert_eq "$code" 200 "token with credentials"
skopeo inspect --raw --tls-verify=false --creds "$TEST_USER:$TEST_PASS" \
    "docker://$tr_HOST/private/img:v1" >/dev/null
! grep -q -- "$TEST_PASS" "$tr_tok_DIR/token.log" || fail "the token log holds the password"
jq -se 'map(select(.creds_given and .status == 200)) | length >= 2' "$tr_tok_DIR/token.log" >/dev/null ||
    fail "token log does not record credentialed requests"

case_ "htpasswd basic auth"
reg_start br htpasswd
fx_push br oci-single=private/img:v1
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" "$br_URL/v2/private/img/manifests/v1")
assert_eq "$code" 401 "manifest GET without credentials"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" -u "$TEST_USER:$TEST_PASS" \
    "$br_URL/v2/private/img/manifests/v1")
assert_eq "$code" 200 "manifest GET with credentials"

case_ "TLS with the test's CA; refused without it"
reg_start sr plain tls
fx_push sr oci-single=test/img:v1
[[ -s $SBX_CERTS_DIR/$sr_HOST/ca.crt ]] || fail "CA not in \$SBX_CERTS_DIR/$sr_HOST"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' --cacert "$sr_CA" "https://$sr_HOST/v2/")
assert_eq "$code" 200 "TLS with the CA"
if "${C[@]}" -o /dev/null "https://$sr_HOST/v2/" 2>/dev/null; then fail "TLS verified without the CA"; fi
skopeo inspect --raw --cert-dir "$SBX_CERTS_DIR/$sr_HOST" "docker://$sr_HOST/test/img:v1" >/dev/null
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "http://$r_HOST/v2/")
assert_eq "$code" 200 "plain registry over HTTP"

case_ "fault proxy: every mode as seen by curl"
proxy_start p r
blobsrv_start cdn
P=http://$p_HOST
blob=$(fx oci-single '.layers[0].digest')
size=$(fx oci-single '.layers[0].size')
burl=$P/v2/test/oci-single/blobs/$blob
want=${blob#sha256:}
got=$("${C[@]}" "$burl" | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$want" "blob through the proxy, no fault"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$ACCEPT" "$P/v2/test/oci-index/manifests/v1")
assert_eq "$code" 200 "manifest through the proxy"

proxy_mode p '{"mode":"status","status":429,"retry_after":"2","count":1}'
"${C[@]}" -D "$T/h" -o /dev/null "$burl"
grep -q '^HTTP/1.1 429' "$T/h" || fail "429 mode: $(head -1 "$T/h")"
grep -qi '^Retry-After: 2' "$T/h" || fail "429 mode: no Retry-After"
got=$("${C[@]}" "$burl" | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$want" "after the counted faults the proxy passes through"

proxy_mode p '{"mode":"status","status":500,"count":-1}'
for _ in 1 2 3; do
    code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$burl")
    assert_eq "$code" 500 "500 mode, count -1"
done

proxy_mode p '{"mode":"reset","fraction":0.5}'
set +e; "${C[@]}" -o "$T/part" "$burl" 2>/dev/null; rc=$?; set -e
((rc == 18 || rc == 56)) || fail "reset mode: curl exit $rc, expected 18 or 56"
part=$(stat -c %s "$T/part")
((part > 0 && part < size)) || fail "reset mode sent $part of $size bytes"
# the resume a client makes: Range from where it stopped, 206 from the registry
"${C[@]}" -D "$T/h" -H "Range: bytes=$part-" -o "$T/rest" "$burl"
grep -q '^HTTP/1.1 206' "$T/h" || fail "Range through the proxy: $(head -1 "$T/h")"
grep -qi "^Content-Range: bytes $part-" "$T/h" || fail "Content-Range does not start at $part"
got=$(cat "$T/part" "$T/rest" | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$want" "resumed blob"

proxy_mode p '{"mode":"stall","fraction":0.3,"stall":30}'
set +e; "${C[@]}" --max-time 2 -o /dev/null "$burl" 2>/dev/null; rc=$?; set -e
assert_eq "$rc" 28 "stall mode: curl exit code (timeout)"

proxy_mode p '{"mode":"corrupt"}'
got=$("${C[@]}" "$burl" | sha256sum | cut -d' ' -f1)
[[ $got != "$want" ]] || fail "corrupt mode served the right bytes"
bad=$(jq -rs 'map(select(.fault=="corrupt")) | last | .sha256' "$p_DIR/proxy.log")
assert_eq "$bad" "sha256:$got" "corrupt mode logs the digest of what it sent"

proxy_mode p '{"mode":"tamper","match":"/manifests/"}'
"${C[@]}" -D "$T/h" -o "$T/m" -H "$ACCEPT" "$P/v2/test/oci-single/manifests/v1"
jq -e . "$T/m" >/dev/null || fail "tamper mode broke the JSON"
got=$(sha256sum <"$T/m" | cut -d' ' -f1)
[[ sha256:$got != "$(fx oci-single .digest)" ]] || fail "tamper mode left the manifest unchanged"
grep -qi "^Docker-Content-Digest: $(fx oci-single .digest)" "$T/h" || fail "tamper mode changed the header"

proxy_mode p "{\"mode\":\"redirect\",\"target\":\"$cdn_URL\",\"count\":-1}"
"${C[@]}" -D "$T/h" -o /dev/null "$burl"
grep -q '^HTTP/1.1 307' "$T/h" || fail "redirect mode: $(head -1 "$T/h")"
grep -qi "^Location: http://127.0.0.2:[0-9]*/blobs/$blob" "$T/h" || fail "redirect Location"
got=$("${C[@]}" -L -H "Authorization: Bearer secret-token" "$burl" | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$want" "blob via the redirect target"
# curl drops a custom Authorization header when it follows to another host
jq -se 'map(select(.path | startswith("/blobs/"))) | length >= 1 and all(.auth == false)' \
    "$cdn_DIR/blobs.log" >/dev/null || fail "redirect target saw an Authorization header from curl"
"${C[@]}" -o /dev/null -H "Authorization: Bearer x" "$cdn_URL/blobs/$blob"
jq -se 'last | .auth == true' "$cdn_DIR/blobs.log" >/dev/null ||
    fail "redirect target does not record Authorization"

proxy_mode p '{"mode":"huge","match":"/manifests/"}'
"${C[@]}" --max-time 5 -D "$T/h" -o /dev/null --max-filesize 1000000 -H "$ACCEPT" \
    "$P/v2/test/oci-single/manifests/v1" 2>/dev/null || true
grep -qi '^Content-Length: 1073741824' "$T/h" || fail "huge mode does not claim 1 GiB"

proxy_mode p '{"mode":"reset","count":0,"on_range":"ignore"}'
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H 'Range: bytes=100-' "$burl")
assert_eq "$code" 200 "on_range ignore: status of a Range request"
proxy_mode p '{"mode":"reset","count":0,"on_range":"misalign"}'
"${C[@]}" -D "$T/h" -o /dev/null -H 'Range: bytes=100-' "$burl"
grep -qi '^Content-Range: bytes 0-' "$T/h" || fail "on_range misalign: $(grep -i content-range "$T/h")"

proxy_mode p '{"mode":"slow","rate":2000000,"count":1}'
t0=$(date +%s%N)
got=$("${C[@]}" "$burl" | sha256sum | cut -d' ' -f1)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq "$got" "$want" "blob at a slow rate"
((ms >= 400)) || fail "slow mode sent $size bytes at 2 MB/s in $ms ms"

proxy_mode p '{"mode":"accept","accept":"application/vnd.docker.distribution.manifest.v1+prettyjws","match":"/manifests/"}'
"${C[@]}" -D "$T/h" -o /dev/null -H "$ACCEPT" "$P/v2/test/docker-single/manifests/v1"
grep -qi '^Content-Type: application/vnd.docker.distribution.manifest.v1+prettyjws' "$T/h" ||
    fail "accept mode: the registry did not serve schema1"

proxy_mode p '{"mode":"pass"}'
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://$p_HOST/v2/" 2>/dev/null || true)
grep -q tls_probe "$p_DIR/proxy.log" || fail "proxy did not answer a TLS probe"

echo "PASS"

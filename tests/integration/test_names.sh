#!/bin/bash
# One naming model (sbx_image_lookup): what build --tag names, pull names
# and every command finds are the same normalized refs; `images`' short
# digests are accepted everywhere a name is; rm takes the same words.
set -euo pipefail
source "${SBX_SOURCE_DIR:?}/tests/integration/lib/build_lib.sh"
b_init
b_busybox_image busybox:test >/dev/null
ctx=$T/ctx
mkdir -p "$ctx"
printf 'image: busybox:test\nsteps:\n  - run_cmd: echo one > /one\n' >"$ctx/app.yaml"

d=$(sbx build --tag app "$ctx/app.yaml" 2>"$T/err") || { cat "$T/err"; b_die "build --tag app failed"; }
sbx images >"$T/images"
grep -q "^docker.io/library/app:latest " "$T/images" || { cat "$T/images"; b_die "--tag app is not named docker.io/library/app:latest"; }
! grep -q "^app " "$T/images" || b_die "a second, literal name 'app'"
for words in app app:latest docker.io/library/app docker.io/library/app:latest; do
    printf 'image: %s\nsteps:\n  - run_cmd: test -f /one\n' "$words" >"$ctx/on.yaml"
    sbx build "$ctx/on.yaml" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "a recipe's image: $words did not find the built image"; }
    rm -rf "$T/u"
    sbx unpack "$words" "$T/u" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "unpack $words"; }
    [[ -f $T/u/one ]] || b_die "unpack $words: not the built image"
done
b_pass "build --tag app names docker.io/library/app:latest; every spelling finds it"

short=$(awk '$1 == "docker.io/library/app:latest" {print $2}' "$T/images")
[[ ${#short} == 12 ]] || b_die "images prints no 12-hex digest: $(cat "$T/images")"
rm -rf "$T/u"
sbx unpack "$short" "$T/u" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "unpack $short"; }
sbx inspect --json "$short" | jq -e --arg d "$d" '.digest == $d' >/dev/null || b_die "inspect $short"
printf 'image: %s\nsteps:\n  - run_cmd: test -f /one\n' "$short" >"$ctx/short.yaml"
sbx build "$ctx/short.yaml" >/dev/null 2>"$T/err" || { cat "$T/err"; b_die "image: $short"; }
if sbx unpack "${short:0:11}" "$T/u2" 2>"$T/err"; then b_die "11 hex digits were taken for a digest"; fi
b_pass "the 12-hex digest images prints works for unpack, inspect and a recipe's image"

sbx tag "$short" app2 127.0.0.1:5000/team/app2:v1 >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "tag"; }
[[ $(cat "$T/out") == $'docker.io/library/app2:latest\n127.0.0.1:5000/team/app2:v1' ]] || b_die "tag printed: $(cat "$T/out")"
rm -rf "$T/u"
sbx unpack app2 "$T/u" >/dev/null 2>"$T/err" && [[ -f $T/u/one ]] || { cat "$T/err"; b_die "unpack of a tag"; }
rc=0; sbx tag app "x@$d" 2>"$T/err" || rc=$?
[[ $rc == 2 ]] && grep -q "names no digest" "$T/err" || b_die "tag with a digest: exit $rc $(cat "$T/err")"
cfg=$(sbx inspect --json app | jq -r .config)
rc=0; sbx tag "$cfg" app4 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q "no image manifest" "$T/err" || b_die "tag of a config digest: exit $rc $(cat "$T/err")"
rc=0; sbx tag nope app3 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && grep -q "no such image" "$T/err" || b_die "tag of an unknown image: exit $rc $(cat "$T/err")"
b_pass "tag IMAGE NEW... names an image by any of the words; refusals are clear"

sbx build --tag app --tag 127.0.0.1:5000/team/app "$ctx/app.yaml" >/dev/null 2>&1
sbx rm 127.0.0.1:5000/team/app >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "rm of a registry ref"; }
grep -qx "127.0.0.1:5000/team/app:latest" "$T/out" || b_die "rm did not say the name it removed: $(cat "$T/out")"
sbx rm app >"$T/out" 2>"$T/err" || { cat "$T/err"; b_die "rm app"; }
! sbx images | grep -q "app:latest" || b_die "rm app left a name"
if sbx rm "$d" 2>"$T/err"; then b_die "rm of a digest removed something"; fi
grep -q "rm removes names" "$T/err" || { cat "$T/err"; b_die "rm of a digest: unclear"; }
b_pass "rm takes the words build and pull take, and names what it removed"

rc=0; sbx unpack --json nope "$T/u3" >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 && $(wc -l <"$T/err") == 1 ]] || b_die "--json error: exit $rc, $(cat "$T/err")"
jq -e '.event == "error" and .code == "not found" and .where == "nope"' "$T/err" >/dev/null ||
    b_die "--json error is not one JSON object: $(cat "$T/err")"
rc=0; sbx --json rm nope >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] && jq -e '.event == "error"' "$T/err" >/dev/null || b_die "--json rm error: $(cat "$T/err")"
b_pass "--json errors are one JSON object on stderr"
b_assert_clean

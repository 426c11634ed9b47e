#!/bin/bash
# Authentication against the real docker-registry: `auth: token` with the
# harness's token issuer (anonymous denied on private repositories, allowed on
# public/ ones; credentials from --creds, from DOCKER_CONFIG's auths, from a
# credHelpers entry and from credsStore), tokens reused across one pull, and
# htpasswd basic auth.  Nothing sbx-image prints ever holds the password, the
# base64 credentials or a token.
set -euo pipefail
source "$SBX_SOURCE_DIR/tests/integration/lib/registry.sh"
t_init
fx_build
reg_start tr token
reg_start br htpasswd
fx_push tr oci-multi=private/img:v1 oci-single=public/img:v1 docker-single=private/other:v1
fx_push br oci-single=private/img:v1
PRIV=$tr_HOST/private/img:v1
tokens() { jq -s 'length' "$tr_tok_DIR/token.log"; }
fresh() { STORE=$T/store-$1; rm -f "$DOCKER_CONFIG/config.json"; }

case_ "token auth: anonymous pull of a private repository is denied"
fresh anon
fails pull "$PRIV"
err_has 'auth|denied|unauthori[sz]ed|credential|login'
err_has "$tr_HOST/private/img"
fails resolve "$PRIV"
err_has 'auth|denied|unauthori[sz]ed|credential|login'

case_ "token auth: anonymous pull of a public repository works"
ok pull --json "$tr_HOST/public/img:v1"
check_pulled oci-single

case_ "token auth: --creds"
fresh creds
n0=$(tokens)
ok pull --json --creds "$TEST_USER:$TEST_PASS" "$PRIV"
check_pulled oci-multi
n1=$(tokens)
# manifest + config + 3 layers, all under one scope: a token per request would be 5+
((n1 - n0 <= 2)) || fail "one pull asked the issuer for $((n1 - n0)) tokens; tokens are not reused"
jq -se 'map(select(.user == "sbxuser")) | length >= 1' "$tr_tok_DIR/token.log" >/dev/null ||
    fail "the issuer never saw the credentials"
ok resolve --creds "$TEST_USER:$TEST_PASS" "$PRIV"
out_is "$(fx oci-multi .digest)"
ok inspect --json --creds "$TEST_USER:$TEST_PASS" "$tr_HOST/private/other:v1"
out_has "$(fx docker-single .digest)"
fsck_clean

case_ "token auth: wrong --creds fail clearly"
fresh wrong
fails pull --creds "$TEST_USER:wrong-$TEST_PASS" "$PRIV"
err_has 'auth|denied|unauthori[sz]ed|credential|password'
err_has "$tr_HOST"

case_ "token auth: DOCKER_CONFIG auths (base64 auth)"
fresh cfg
docker_login tr
ok pull --json "$PRIV"
check_pulled oci-multi

case_ "token auth: DOCKER_CONFIG auths (username/password)"
fresh cfg2
printf '{"auths":{"%s":{"username":"%s","password":"%s"}}}\n' "$tr_HOST" "$TEST_USER" "$TEST_PASS" \
    >"$DOCKER_CONFIG/config.json"
ok pull --json "$PRIV"
check_pulled oci-multi

case_ "token auth: an identity token in config.json (OAuth2 refresh-token grant)"
fresh idt
printf '{"auths":{"%s":{"auth":"%s","identitytoken":"%s"}}}\n' "$tr_HOST" \
    "$(printf '<token>:' | base64 -w0)" "idt-$TEST_PASS" >"$DOCKER_CONFIG/config.json"
ok pull --json "$PRIV"
check_pulled oci-multi
jq -se 'map(select(.method == "POST refresh_token" and .user == "sbxuser")) | length >= 1' \
    "$tr_tok_DIR/token.log" >/dev/null || fail "no refresh-token grant reached the issuer"

# A docker-credential helper on PATH that logs the server it was asked about.
mkdir -p "$T/bin"
cat >"$T/bin/docker-credential-sbxtest" <<EOF
#!/bin/bash
[[ \$1 == get ]] || exit 1
read -r server
echo "\$server" >>"$T/helper.log"
if [[ \$server == *"\$(cat "$T/helper-host")"* ]]; then
    printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "\$server" "$TEST_USER" "$TEST_PASS"
else
    echo "credentials not found in native keychain"
    exit 1
fi
EOF
chmod +x "$T/bin/docker-credential-sbxtest"
printf '%s' "$tr_HOST" >"$T/helper-host"
export PATH=$T/bin:$PATH

case_ "token auth: credHelpers entry for the registry"
fresh helper
printf '{"credHelpers":{"%s":"sbxtest"}}\n' "$tr_HOST" >"$DOCKER_CONFIG/config.json"
ok pull --json "$PRIV"
check_pulled oci-multi
grep -q "$tr_HOST" "$T/helper.log" || fail "the credential helper was not asked for $tr_HOST"

case_ "token auth: credsStore"
fresh store
rm -f "$T/helper.log"
printf '{"credsStore":"sbxtest"}\n' >"$DOCKER_CONFIG/config.json"
ok pull --json "$PRIV"
check_pulled oci-multi
[[ -s $T/helper.log ]] || fail "credsStore helper not run"

case_ "credsStore that has nothing for the registry: anonymous, as docker does"
fresh store-miss
printf 'no-such-registry.invalid' >"$T/helper-host"
ok pull --json "$tr_HOST/public/img:v1"
check_pulled oci-single
fails pull "$PRIV"
err_has 'auth|denied|unauthori[sz]ed|credential|login'
printf '%s' "$tr_HOST" >"$T/helper-host"

case_ "token auth: -v output holds no secrets either"
fresh verbose
docker_login tr
ok pull -v "$PRIV"

case_ "basic auth (htpasswd): denied without credentials, --creds and config.json work"
fresh basic
fails pull "$br_HOST/private/img:v1"
err_has 'auth|denied|unauthori[sz]ed|credential|login'
err_has "$br_HOST/private/img"
ok pull --json --creds "$TEST_USER:$TEST_PASS" "$br_HOST/private/img:v1"
check_pulled oci-single
fresh basic2
docker_login br
ok pull --json "$br_HOST/private/img:v1"
check_pulled oci-single
fails pull --creds "$TEST_USER:not-$TEST_PASS" "$br_HOST/private/img:v1"
err_has 'auth|denied|unauthori[sz]ed|credential|password'
fsck_clean

case_ "login: refused credentials write nothing; accepted ones go to the auth file"
fresh login
printf '%s\n' "wrong-$TEST_PASS" | fails login -u "$TEST_USER" --password-stdin "$tr_HOST"
err_has 'refused|auth|credential|401'
[[ ! -e $XDG_RUNTIME_DIR/containers/auth.json ]] || fail "a refused login wrote the auth file"
printf '%s\n' "$TEST_PASS" | ok login -u "$TEST_USER" --password-stdin "$tr_HOST"
err_has 'Login Succeeded'
AF=$XDG_RUNTIME_DIR/containers/auth.json
assert_eq "$(stat -c %a "$AF")" 600 "auth file mode"
assert_eq "$(jq -r --arg h "$tr_HOST" '.auths[$h].auth' "$AF" | base64 -d)" "$TEST_USER:$TEST_PASS" \
    "auth entry"
printf '%s\n' "$TEST_PASS" | ok login -u "$TEST_USER" --password-stdin "$br_HOST"
ok pull --json "$PRIV"                      # from the runtime dir's auth.json
check_pulled oci-multi
ok pull --json "$br_HOST/private/img:v1"
ok logout "$tr_HOST"
[[ $(jq -r --arg h "$tr_HOST" '.auths[$h] // "gone"' "$AF") == gone ]] || fail "logout kept the entry"
[[ $(jq -r --arg h "$br_HOST" '.auths[$h] | type' "$AF") == object ]] || fail "logout took another entry"
STORE=$T/store-logout
fails pull "$PRIV"
fails logout "$tr_HOST"
err_has 'not logged in'
ok logout --all
sbx logout; ((RC == 2)) || fail "logout without REGISTRY or --all: exit $RC, expected 2"

case_ "auth files in podman's order, and keys that name a repository"
fresh authfiles
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$tr_HOST/private/img" \
    "$(printf '%s:%s' "$TEST_USER" "$TEST_PASS" | base64 -w0)" >"$T/repo-auth.json"
ok pull --json --authfile "$T/repo-auth.json" "$PRIV"   # the key names this repository
fails pull --authfile "$T/repo-auth.json" "$tr_HOST/private/other:v1"   # and no other
docker_login tr
fails pull --authfile "$T/repo-auth.json" "$tr_HOST/private/other:v1"   # --authfile alone
ok pull --json "$tr_HOST/private/other:v1"                               # the Docker config last
rm -f "$DOCKER_CONFIG/config.json"
STORE=$T/store-raf
REGISTRY_AUTH_FILE=$T/repo-auth.json ok pull --json "$PRIV"
fails pull --authfile "$T/missing.json" "$PRIV"
err_has 'missing.json'
mkdir -p "$XDG_CONFIG_HOME/containers"
cp "$T/repo-auth.json" "$XDG_CONFIG_HOME/containers/auth.json"
STORE=$T/store-xdgc
ok pull --json "$PRIV"
rm -f "$XDG_CONFIG_HOME/containers/auth.json"

case_ "no password, base64 credentials or token in anything sbx-image printed"
no_secrets
! grep -qF -- "$TEST_PASS" "$tr_tok_DIR/token.log" || fail "token log holds the password"

t_pass

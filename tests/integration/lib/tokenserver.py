#!/usr/bin/python3
"""Token issuer for docker-registry's `auth: token` mode (the Docker token
protocol), on 127.0.0.1.

  tokenserver.py --dir DIR [--user NAME:PASS]... [--anon-prefix public/]
                 [--expires SECONDS] [--service S] [--issuer I]

At start it makes an RSA key and a self-signed certificate, DIR/token.crt, which
the registry takes as its rootcertbundle; tokens are RS256 JWTs whose header
carries the certificate as `x5c`, which distribution verifies against that
bundle.  It writes its port to DIR/token.port when it listens.

GET /token?service=..&scope=..[&scope=..]: with valid Basic credentials every
requested action is granted; anonymous requests get `pull` on repositories under
--anon-prefix and nothing else; wrong credentials get 401.  POST /token with an
OAuth2 password grant is answered the same way, and so is a refresh_token grant
whose token was given with --refresh NAME:TOKEN (Docker's identity tokens).  A user
named in DIR/revoked (read at each request) is refused.  Every request is appended to
DIR/token.log as a JSON line (user, scopes, whether credentials came); the log
never holds the secrets themselves.
"""
import argparse
import base64
import datetime
import json
import os
import sys
import time
import urllib.parse
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpd  # noqa: E402


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_key(dirpath):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sbx test token issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(dirpath, "token.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER)


class TokenHandler(httpd.Handler):
    key = None
    cert_der = None
    users = {}
    refresh = {}
    anon_prefix = None
    expires = 300
    service = "sbx-test-registry"
    issuer = "sbx-test-issuer"

    def sign(self, sub, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": self.issuer, "sub": sub, "aud": self.service, "exp": now + self.expires,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode())).encode()
        sig = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return signing_input.decode() + "." + b64url(sig)

    def grant(self, user, scopes):
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            if user is None:
                ok = self.anon_prefix is not None and name.startswith(self.anon_prefix)
                actions = [a for a in actions if a == "pull"] if ok else []
            access.append({"type": "repository", "name": name, "actions": actions})
        return access

    def answer(self, user, creds_given, creds_ok, scopes, method):
        entry = {"method": method, "path": self.path.split("?")[0], "user": user,
                 "creds_given": creds_given, "scopes": scopes}
        if creds_given and not creds_ok:
            entry["status"] = 401
            self.record(entry)
            self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                         "message": "invalid username or password"}]})
            return
        access = self.grant(user, scopes)
        entry["status"] = 200
        entry["granted"] = access
        self.record(entry)
        tok = self.sign(user or "", access)
        self.reply(200, {"token": tok, "access_token": tok, "expires_in": self.expires,
                         "issued_at": datetime.datetime.now(datetime.timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%SZ")})

    def check(self, user, password):
        if user in self.revoked():
            return False
        return user in self.users and self.users[user] == password

    def revoked(self):
        # DIR/revoked: user names whose credentials stop working (read each time)
        try:
            with open(os.path.join(self.dir, "revoked")) as f:
                return set(f.read().split())
        except FileNotFoundError:
            return set()

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path != "/token":
            self.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        q = urllib.parse.parse_qs(u.query)
        scopes = []
        for s in q.get("scope", []):
            scopes.extend(s.split(" "))
        auth = self.headers.get("Authorization", "")
        user, given, ok = None, False, False
        if auth.startswith("Basic "):
            given = True
            try:
                raw = base64.b64decode(auth[6:]).decode()
                name, _, pw = raw.partition(":")
            except (ValueError, UnicodeDecodeError):
                name, pw = "", ""
            ok = self.check(name, pw)
            user = name if ok else None
        self.answer(user, given, ok, scopes, "GET")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        grant = form.get("grant_type", [""])[0]
        if self.path.split("?")[0] != "/token" or grant not in ("password", "refresh_token"):
            self.reply(400, {"error": "unsupported_grant_type"})
            return
        if grant == "password":
            name = form.get("username", [""])[0]
            ok = self.check(name, form.get("password", [""])[0])
        else:  # an identity token (Docker's `identitytoken`) stands for a user
            name = self.refresh.get(form.get("refresh_token", [""])[0], "")
            ok = bool(name)
        scopes = []
        for s in form.get("scope", []):
            scopes.extend(s.split(" "))
        self.answer(name if ok else None, True, ok, scopes, "POST " + grant)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--user", action="append", default=[])
    ap.add_argument("--refresh", action="append", default=[], help="NAME:TOKEN")
    ap.add_argument("--anon-prefix")
    ap.add_argument("--expires", type=int, default=300)
    ap.add_argument("--service", default="sbx-test-registry")
    ap.add_argument("--issuer", default="sbx-test-issuer")
    a = ap.parse_args()
    TokenHandler.key, TokenHandler.cert_der = make_key(a.dir)
    TokenHandler.users = dict(u.split(":", 1) for u in a.user)
    TokenHandler.dir = a.dir
    TokenHandler.refresh = {t: n for n, t in (r.split(":", 1) for r in a.refresh)}
    TokenHandler.anon_prefix = a.anon_prefix
    TokenHandler.expires = a.expires
    TokenHandler.service = a.service
    TokenHandler.issuer = a.issuer
    TokenHandler.log_path = os.path.join(a.dir, "token.log")
    httpd.serve(TokenHandler, "127.0.0.1", os.path.join(a.dir, "token.port"))


if __name__ == "__main__":
    main()

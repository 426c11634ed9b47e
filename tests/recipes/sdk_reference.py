#!/usr/bin/env python3
"""A reference of what an SDK does to agree with `sbx-image digest`: an
immutable Image API (every method returns a new Image) that produces the
canonical form of docs/recipe-digest.md, written from the documentation
alone.  Run as a script, it builds every golden recipe through this API (not
from the YAML) and checks the digests against tests/recipes/golden/*.digest.

It reuses golden_check.copy_digest for the Merkle hash of copy sources."""
import hashlib
import json
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_check import copy_digest  # noqa: E402


def clean(path, keep_trailing_slash=False):
    """Go's path.Clean, optionally keeping one trailing '/'."""
    rooted = path.startswith("/")
    out = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    res = ("/" if rooted else "") + "/".join(out)
    res = res or "."
    if keep_trailing_slash and len(path) > 1 and path.endswith("/") and res != "/":
        res += "/"
    return res


def as_list(v):
    return [v] if isinstance(v, str) else list(v)


def with_secrets(step, secrets):
    """A step's build secrets: "ID" or (ID, ENV); only present when some."""
    if secrets:
        step["secrets"] = [{"id": s, "env": None} if isinstance(s, str)
                           else {"id": s[0], "env": s[1]} for s in secrets]
    return step


def as_argv(cmd):
    return ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


class Image:
    def __init__(self, base, context, steps=(), start=None, ready=None):
        self._base, self._context = base, context
        self._steps, self._start, self._ready = tuple(steps), start, ready

    @staticmethod
    def from_registry(ref, add_python=None, context="."):
        return Image({"kind": "from_registry", "ref": ref, "add_python": add_python}, context)

    @staticmethod
    def sbx(context="."):
        return Image({"kind": "sbx"}, context)

    @staticmethod
    def image(name, context="."):
        return Image({"kind": "image", "ref": name}, context)

    def _with(self, step=None, start=None, ready=None):
        return Image(self._base, self._context,
                     self._steps + ((step,) if step else ()),
                     start if start is not None else self._start,
                     ready if ready is not None else self._ready)

    def python(self, version):
        return self._with({"op": "python", "version": version})

    def apt_install(self, *packages, secrets=()):
        return self._with(with_secrets({"op": "apt_install", "packages": list(packages)}, secrets))

    def pip_install(self, *packages, user=False, index_url=None, extra_index_urls=(),
                    find_links=(), pre=False, secrets=()):
        # user: the SDK's boolean (True: pip --user; False: the same as none),
        # or a user name to run pip as
        return self._with(with_secrets(
            {"op": "pip_install", "packages": list(packages), "user": user or None,
             "index_url": index_url, "extra_index_urls": as_list(extra_index_urls),
             "find_links": as_list(find_links), "pre": pre}, secrets))

    def npm_install(self, *packages, global_=False, secrets=()):
        return self._with(with_secrets(
            {"op": "npm_install", "packages": list(packages), "global": global_}, secrets))

    def run_cmd(self, commands, user=None, secrets=()):
        return self._with(with_secrets(
            {"op": "run_cmd", "commands": as_list(commands), "user": user}, secrets))

    def env(self, variables):
        return self._with({"op": "env", "vars": dict(variables)})

    def workdir(self, path):
        return self._with({"op": "workdir", "path": clean(path)})

    def user(self, name):
        return self._with({"op": "user", "name": name})

    def copy(self, src, dest, owner=None, mode=None):
        src = clean(src)
        return self._with({"op": "copy", "src": src, "dest": clean(dest, True), "owner": owner,
                           "mode": int(mode, 8) if isinstance(mode, str) else mode,
                           "content": copy_digest(self._context, src)})

    def start_cmd(self, cmd):
        return self._with(start=as_argv(cmd))

    def ready_cmd(self, cmd):
        return self._with(ready=as_argv(cmd))

    def canonical(self):
        obj = {"base": self._base, "ready_cmd": self._ready, "start_cmd": self._start,
               "steps": list(self._steps), "version": 1}
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self):
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()


def golden_images(ctx):
    """The golden recipes, written against the API."""
    yield "01-minimal", Image.sbx(ctx)
    yield "02-registry-tag", Image.from_registry("node:22", add_python="3.12", context=ctx) \
        .start_cmd(["node", "server.js"])
    yield "03-every-step", (
        Image.from_registry("docker.io/library/debian:bookworm-slim", context=ctx)
        .python("3.11")
        .apt_install("curl", "ca-certificates")
        .pip_install("requests==2.32.3", "flask>=3", user="app",
                     index_url="http://127.0.0.1:8080/simple",
                     extra_index_urls=["http://127.0.0.1:8081/simple"],
                     find_links="http://127.0.0.1:8082/wheels/", pre=True)
        .npm_install("left-pad@1.3.0", global_=True)
        .run_cmd(["useradd -m app", "mkdir -p /srv/app"], user="root")
        .env({"PATH": "/usr/local/bin:/usr/bin:/bin", "APP_MODE": "production"})
        .workdir("/srv/app/")
        .user("app")
        .copy("./context/app/", "/srv/app/", owner="app:app", mode="0755")
        .start_cmd("./bin/run.sh")
        .ready_cmd(["curl", "-fsS", "http://127.0.0.1:8000/health"]))
    yield "04-image-base", Image.image("sha256:" + "0" * 64, ctx).run_cmd("true")
    yield "05-string-forms", (
        Image.sbx(ctx).apt_install("jq").pip_install("numpy").npm_install("typescript")
        .run_cmd("echo \"héllo wörld\" > /greeting\nprintf 'tab\\there\\n' >> /greeting\n")
        .env({"QUOTE": 'say "hi"', "BACKSLASH": "C:\\path", "EMPTY": "", "UNICODE": "日本語"})
        .copy("context/single.txt", "/etc/single.txt")
        .start_cmd("cat /greeting"))
    yield "06-sbxignore", Image.sbx(ctx).copy("context/neg", "/neg/")
    yield "07-secrets", (
        Image.from_registry("docker.io/library/python:3.12-slim", context=ctx)
        .apt_install("curl", secrets=["apt_auth"])
        .pip_install("private-pkg==1.0", secrets=[("pypi", "PIP_INDEX_URL")])
        .npm_install("left-pad@1.3.0", secrets=["npm_token"])
        .run_cmd(["test -s /run/secrets/tok"], user="root", secrets=["tok", ("api.key", "API_KEY")]))
    yield "09-pip-user", (
        Image.image("python:3.12-slim", ctx).user("app")
        .pip_install("requests==2.32.3", user=True).pip_install("flask", user=False))
    yield "08-npm-project", (
        Image.image("node:22", ctx).workdir("/srv/app").npm_install()
        .npm_install("left-pad@1.3.0", global_=True))


def main(golden):
    for name, img in golden_images(golden):
        want = open(os.path.join(golden, name + ".digest")).read().strip()
        if img.digest() != want:
            sys.exit(f"{name}: the API reference gives {img.digest()}, golden {want}\n"
                     f"{img.canonical().decode()}")
        print(f"ok {name} via the API reference")
    assert clean("/srv//app/.") == "/srv/app" and clean("./a/b/../c/") == "a/c"
    assert clean("/srv//app/", True) == "/srv/app/" and clean("/", True) == "/"


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))

#!/usr/bin/python3
"""Fixture images for the registry tests, built from /bin/busybox (busybox-static).

  fixtures.py build DIR                 every fixture image into the OCI layout DIR,
                                        plus DIR/facts.json (what each image must pull as)
  fixtures.py bench DIR --mb N [--layers K]
                                        an image of about N MB in K layers (default 4)
                                        plus busybox, for bench/pull
  fixtures.py tar DIR NAME TARFILE...   an image NAME of those tars as gzip layers
  fixtures.py tar-zstd DIR NAME TARFILE...
                                        the same with zstd -3 layers (as sbx-image pushes)
  fixtures.py push DIR URL NAME=REPO:TAG ... [--user U --password P] [--cacert F]
                                        push images from DIR through the distribution API

Everything is deterministic (fixed mtimes, owners, gzip headers), so the same
script yields the same digests on every machine; facts.json records them so the
tests compare the client's answers against values computed here, independently.

The images are written straight as blobs + manifests (no skopeo conversion), so
the media types are exactly the ones under test: OCI manifest and index, Docker
schema2 and manifest list, and gzip, zstd and uncompressed layers.
"""
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import ssl
import struct
import subprocess
import sys
import tarfile
import urllib.parse
import zlib

MTIME = 1700000000
BUSYBOX = "/bin/busybox"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
D_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
D_CONFIG = "application/vnd.docker.container.image.v1+json"
D_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
D_TAR = "application/vnd.docker.image.rootfs.diff.tar"

ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, D_MANIFEST, D_LIST])


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- layers

class TarBuilder:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind, mode):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.mtime = MTIME
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def dir(self, name, mode=0o755):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name, data, mode=0o644):
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def pseudo_random(n, seed):
    r = random.Random(seed)
    return r.randbytes(n)


def layer_busybox():
    t = TarBuilder()
    for d in ("bin", "etc", "tmp", "root"):
        t.dir(d, 0o1777 if d == "tmp" else 0o755)
    with open(BUSYBOX, "rb") as f:
        t.file("bin/busybox", f.read(), 0o755)
    for applet in ("sh", "ls", "cat", "echo", "true"):
        t.symlink("bin/" + applet, "busybox")
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    t.file("etc/group", b"root:x:0:\n")
    return t.bytes()


def layer_app():
    t = TarBuilder()
    t.dir("app")
    t.file("app/hello.txt", b"hello from the second layer\n")
    t.file("app/data.bin", pseudo_random(64 * 1024, "app"))
    t.file("etc/motd", b"sbx-image registry fixture\n")
    return t.bytes()


def layer_more():
    t = TarBuilder()
    t.dir("app")
    t.file("app/.wh.hello.txt", b"")  # OCI whiteout: removes hello.txt of the layer below
    t.file("app/third.txt", b"third layer\n")
    t.file("etc/os-release", b'NAME="sbx fixture"\nID=sbxfixture\n')
    return t.bytes()


def compress(tar, kind):
    if kind == "tar":
        return tar
    if kind == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if kind == "gzip-members":  # two gzip members, one after the other (valid gzip)
        half = len(tar) // 2
        return gzip.compress(tar[:half], compresslevel=6, mtime=0) + \
            gzip.compress(tar[half:], compresslevel=1, mtime=0)
    if kind == "gzip-incomplete":  # a gzip ISA-L reads and zlib refuses
        return gzip_incomplete_code(tar)
    if kind == "zstd":
        return zstd(tar)
    if kind == "zstd-nocheck":  # frames without zstd's content checksum
        return zstd(tar, "--no-check")
    if kind == "zstd-frames":  # two frames: the first with a checksum, the second without
        half = len(tar) // 2
        return zstd(tar[:half]) + zstd(tar[half:], "--no-check")
    if kind == "zstd-skip":  # a skippable frame (RFC 8878) larger than the data, then the data
        pad = pseudo_random(256 * 1024, "skippable")
        return struct.pack("<II", 0x184D2A50, len(pad)) + pad + zstd(tar)
    raise ValueError(kind)


def gzip_incomplete_code(data):
    """One gzip member whose dynamic block has an incomplete literal/length
    code (257 codes of 9 bits: half the code space; RFC 1951 codes are
    complete).  ISA-L decodes it; zlib, gzip(1), Go and busybox refuse it."""
    out, acc, nb = bytearray(), 0, 0

    def bits(v, n):
        nonlocal acc, nb
        acc |= v << nb
        nb += n
        while nb >= 8:
            out.append(acc & 255)
            acc >>= 8
            nb -= 8

    def huff(code, n):  # Huffman codes go MSB first
        bits(int(format(code, "0%db" % n)[::-1], 2), n)

    bits(1, 1)  # BFINAL
    bits(2, 2)  # dynamic
    bits(0, 5)  # 257 literal/length codes
    bits(0, 5)  # 1 distance code
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    bits(18 - 4, 4)  # code-length codes up to symbol 1 (order[17])
    for s in order[:18]:  # 0, 1, 9 and 18: 2 bits each, a complete code
        bits(2 if s in (0, 1, 9, 18) else 0, 3)
    for _ in range(257):
        huff(2, 2)  # length 9
    huff(1, 2)  # the distance code: length 1
    for b in data:
        huff(b, 9)
    huff(256, 9)  # end of block
    if nb:
        out.append(acc & 255)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(out) +
            struct.pack("<II", zlib.crc32(data) & 0xffffffff, len(data) & 0xffffffff))


def zstd(data, *opts):
    return subprocess.run(["zstd", "-q", "-3", *opts, "-c"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


# ---------------------------------------------------------------- layout

class Layout:
    """An OCI image layout on disk; index.json names every top-level image."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        self.refs = []
        self.facts = {}

    def put(self, data):
        d = sha(data)
        p = os.path.join(self.root, "blobs", "sha256", d[7:])
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.rename(p + ".tmp", p)
        return d

    def finish(self):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump(index, f, indent=1)
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(self.root, "facts.json"), "w") as f:
            json.dump(self.facts, f, indent=1, sort_keys=True)


def image(lay, layers, docker=False, arch="amd64", variant=None, diff_id_override=None,
          history_tag=""):
    """Write config + manifest for (tar, compression) layers; return (desc, facts)."""
    ldescs, diff_ids, lfacts = [], [], []
    for tar, kind in layers:
        blob = compress(tar, kind)
        if docker:
            mt = {"gzip": D_GZIP, "tar": D_TAR}[kind]
        else:
            mt = {"gzip": OCI_GZIP, "tar": OCI_TAR}.get(kind, OCI_ZSTD)
        d = lay.put(blob)
        ldescs.append({"mediaType": mt, "digest": d, "size": len(blob)})
        diff_ids.append(sha(tar))
        lfacts.append({"digest": d, "diff_id": sha(tar), "size": len(blob), "media_type": mt})
    if diff_id_override:
        diff_ids = diff_id_override(diff_ids)
    config = {
        "architecture": arch, "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/",
                   "Labels": {"org.sbx.fixture": history_tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "fixtures.py layer %d" % i}
                    for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    cd = lay.put(cfg)
    manifest = {"schemaVersion": 2, "mediaType": D_MANIFEST if docker else OCI_MANIFEST,
                "config": {"mediaType": D_CONFIG if docker else OCI_CONFIG, "digest": cd,
                           "size": len(cfg)},
                "layers": ldescs}
    mb = json.dumps(manifest, indent=3).encode()  # indented: clients must keep exact bytes
    md = lay.put(mb)
    plat = {"os": "linux", "architecture": arch}
    if variant:
        plat["variant"] = variant
    desc = {"mediaType": manifest["mediaType"], "digest": md, "size": len(mb), "platform": plat}
    facts = {"digest": md, "media_type": manifest["mediaType"], "config": cd,
             "platform": "linux/" + arch + ("/" + variant if variant else ""),
             "layers": lfacts, "diff_ids": [x["diff_id"] for x in lfacts]}
    return desc, facts


def index(lay, entries, docker=False):
    """entries: list of (desc, facts); returns (desc, facts) of the index."""
    doc = {"schemaVersion": 2, "mediaType": D_LIST if docker else OCI_INDEX,
           "manifests": [d for d, _ in entries]}
    b = json.dumps(doc, indent=2).encode()
    d = lay.put(b)
    desc = {"mediaType": doc["mediaType"], "digest": d, "size": len(b)}
    facts = {"digest": d, "media_type": doc["mediaType"],
             "platforms": {f["platform"]: f for _, f in entries}}
    return desc, facts


def name(lay, n, desc, facts, children=()):
    top = dict(desc)
    top.pop("platform", None)
    top["annotations"] = {"org.opencontainers.image.ref.name": n}
    lay.refs.append(top)
    facts = dict(facts)
    facts["children"] = [d for d, _ in children]
    lay.facts[n] = facts


def build(root):
    lay = Layout(root)
    bb, app, more = layer_busybox(), layer_app(), layer_more()

    d, f = image(lay, [(bb, "gzip")], history_tag="oci-single")
    name(lay, "oci-single", d, f)
    d, f = image(lay, [(bb, "gzip"), (app, "gzip"), (more, "gzip")], history_tag="oci-multi")
    name(lay, "oci-multi", d, f)
    d, f = image(lay, [(bb, "zstd"), (app, "zstd")], history_tag="oci-zstd")
    name(lay, "oci-zstd", d, f)
    d, f = image(lay, [(bb, "zstd-nocheck"), (app, "zstd-frames")],
                 history_tag="oci-zstd-nocheck")
    name(lay, "oci-zstd-nocheck", d, f)
    d, f = image(lay, [(app, "zstd-skip")], history_tag="oci-zstd-skip")
    name(lay, "oci-zstd-skip", d, f)
    d, f = image(lay, [(bb, "gzip-members")], history_tag="oci-gzip-members")
    name(lay, "oci-gzip-members", d, f)
    d, f = image(lay, [(bb, "gzip-incomplete")], history_tag="oci-gzip-incomplete")
    name(lay, "oci-gzip-incomplete", d, f)
    d, f = image(lay, [(bb, "tar"), (app, "tar")], history_tag="oci-tar")
    name(lay, "oci-tar", d, f)
    d, f = image(lay, [(bb, "gzip"), (app, "zstd"), (more, "tar")], history_tag="oci-mixed")
    name(lay, "oci-mixed", d, f)
    d, f = image(lay, [(bb, "gzip")], docker=True, history_tag="docker-single")
    name(lay, "docker-single", d, f)
    d, f = image(lay, [(bb, "gzip"), (app, "gzip"), (more, "tar")], docker=True,
                 history_tag="docker-multi")
    name(lay, "docker-multi", d, f)

    # OCI index: amd64, arm64/v8 and arm/v7; same layers, the configs tell them apart.
    kids = [image(lay, [(bb, "gzip"), (app, "gzip")], arch="amd64", history_tag="index-amd64"),
            image(lay, [(bb, "gzip"), (app, "gzip")], arch="arm64", variant="v8",
                  history_tag="index-arm64"),
            image(lay, [(bb, "gzip")], arch="arm", variant="v7", history_tag="index-armv7")]
    d, f = index(lay, kids)
    name(lay, "oci-index", d, f, kids)
    # Docker manifest list whose arm64 entry carries no variant (as many real ones do).
    kids = [image(lay, [(bb, "gzip")], docker=True, arch="amd64", history_tag="list-amd64"),
            image(lay, [(bb, "gzip")], docker=True, arch="arm64", history_tag="list-arm64")]
    d, f = index(lay, kids, docker=True)
    name(lay, "docker-list", d, f, kids)
    # An index with no entry for this host's platform.
    kids = [image(lay, [(bb, "gzip")], arch="s390x", history_tag="s390x"),
            image(lay, [(bb, "gzip")], arch="ppc64le", history_tag="ppc64le")]
    d, f = index(lay, kids)
    name(lay, "foreign-index", d, f, kids)
    # A config whose diff_id does not match its (correctly addressed) layer.
    d, f = image(lay, [(app, "gzip")], history_tag="bad-diffid",
                 diff_id_override=lambda ids: [sha(b"not the layer")])
    name(lay, "bad-diffid", d, f)
    # Another layer's blob claiming busybox's diff_id (oci-single's layer): a
    # hostile image squatting on a layer other images use.
    d, f = image(lay, [(more, "gzip")], history_tag="squat-diffid",
                 diff_id_override=lambda ids: [sha(bb)])
    name(lay, "squat-diffid", d, f)
    lay.finish()


def build_bench(root, mb, nlayers=4):
    """busybox plus nlayers layers of mixed compressible/random files (about
    mb MB uncompressed in all), gzip."""
    lay = Layout(root)
    layers = [(layer_busybox(), "gzip")]
    per_layer = max(1, mb // nlayers)
    for i in range(nlayers):
        t = TarBuilder()
        t.dir("data%d" % i)
        for j in range(per_layer):
            # half random (incompressible), half text-like (compressible)
            t.file("data%d/rand%03d.bin" % (i, j), pseudo_random(512 * 1024, "r%d.%d" % (i, j)))
            words = pseudo_random(8192, "w%d.%d" % (i, j)).hex().encode()
            t.file("data%d/text%03d.txt" % (i, j), (words + b"\n") * 32)
        layers.append((t.bytes(), "gzip"))
    d, f = image(lay, layers, history_tag="bench")
    name(lay, "bench", d, f)
    lay.finish()


# ---------------------------------------------------------------- push

class Pusher:
    """Just enough of the distribution API to upload blobs and manifests,
    with basic or bearer (token) auth and TLS verified against a CA file."""

    def __init__(self, base_url, user=None, password=None, cacert=None):
        u = urllib.parse.urlsplit(base_url)
        self.scheme, self.netloc = u.scheme, u.netloc
        self.user, self.password = user, password
        self.ctx = ssl.create_default_context(cafile=cacert) if self.scheme == "https" else None
        self.auth = None  # Authorization header value once known
        self.tokens = {}

    def _conn(self, netloc, scheme):
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=30, context=self.ctx)
        return http.client.HTTPConnection(netloc, timeout=30)

    def _basic(self):
        raw = ("%s:%s" % (self.user, self.password)).encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _token(self, challenge, scope):
        params = dict(p.split("=", 1) for p in challenge[len("Bearer "):].split(","))
        params = {k.strip(): v.strip().strip('"') for k, v in params.items()}
        realm = urllib.parse.urlsplit(params.pop("realm"))
        q = {"service": params.get("service", ""), "scope": scope}
        c = self._conn(realm.netloc, realm.scheme)
        h = {"Authorization": self._basic()} if self.user else {}
        c.request("GET", realm.path + "?" + urllib.parse.urlencode(q), headers=h)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit("token: %d %s" % (r.status, body[:200]))
        j = json.loads(body)
        return "Bearer " + (j.get("token") or j["access_token"])

    def request(self, method, url, body=None, headers=None, scope=None):
        headers = dict(headers or {})
        for attempt in range(2):
            u = urllib.parse.urlsplit(url)
            netloc = u.netloc or self.netloc
            scheme = u.scheme or self.scheme
            path = u.path + ("?" + u.query if u.query else "")
            h = dict(headers)
            if self.auth:
                h["Authorization"] = self.auth
            c = self._conn(netloc, scheme)
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            if r.status == 401 and attempt == 0:
                ch = r.getheader("WWW-Authenticate", "")
                if ch.startswith("Bearer"):
                    self.auth = self._token(ch, scope)
                else:
                    self.auth = self._basic()
                continue
            return r, data
        return r, data

    def blob(self, repo, digest, data):
        scope = "repository:%s:pull,push" % repo
        r, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), scope=scope)
        if r.status == 200:
            return
        r, body = self.request("POST", "/v2/%s/blobs/uploads/" % repo, body=b"", scope=scope)
        if r.status != 202:
            raise SystemExit("upload start %s: %d %s" % (digest, r.status, body[:300]))
        loc = r.getheader("Location")
        sep = "&" if "?" in loc else "?"
        r, body = self.request("PUT", loc + sep + "digest=" + digest, body=data,
                               headers={"Content-Type": "application/octet-stream"}, scope=scope)
        if r.status != 201:
            raise SystemExit("upload %s: %d %s" % (digest, r.status, body[:300]))

    def manifest(self, repo, ref, media_type, data):
        scope = "repository:%s:pull,push" % repo
        r, body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), body=data,
                               headers={"Content-Type": media_type}, scope=scope)
        if r.status != 201:
            raise SystemExit("manifest %s:%s: %d %s" % (repo, ref, r.status, body[:300]))


def push(root, base_url, specs, user, password, cacert):
    with open(os.path.join(root, "index.json")) as f:
        refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m
                for m in json.load(f)["manifests"]}

    def blob(d):
        with open(os.path.join(root, "blobs", "sha256", d[7:]), "rb") as f:
            return f.read()

    p = Pusher(base_url, user, password, cacert)

    def push_manifest(repo, desc, ref):
        data = blob(desc["digest"])
        doc = json.loads(data)
        if "manifests" in doc:
            for child in doc["manifests"]:
                push_manifest(repo, child, child["digest"])
        else:
            for b in [doc["config"]] + doc["layers"]:
                p.blob(repo, b["digest"], blob(b["digest"]))
        p.manifest(repo, ref, desc["mediaType"], data)

    for spec in specs:
        n, target = spec.split("=", 1)
        repo, tag = target.rsplit(":", 1)
        push_manifest(repo, refs[n], tag)


def main(argv):
    if len(argv) >= 2 and argv[0] == "build":
        build(argv[1])
    elif len(argv) >= 2 and argv[0] == "bench":
        mb = int(argv[argv.index("--mb") + 1]) if "--mb" in argv else 40
        n = int(argv[argv.index("--layers") + 1]) if "--layers" in argv else 4
        build_bench(argv[1], mb, n)
    elif len(argv) >= 4 and argv[0] in ("tar", "tar-zstd"):
        # fixtures.py tar[-zstd] DIR NAME TARFILE...: an image of those tars
        lay = Layout(argv[1])
        layers = []
        for path in argv[3:]:
            with open(path, "rb") as f:
                layers.append((f.read(), "gzip" if argv[0] == "tar" else "zstd"))
        d, f = image(lay, layers, history_tag=argv[2])
        name(lay, argv[2], d, f)
        lay.finish()
    elif len(argv) >= 3 and argv[0] == "push":
        opts = {"--user": None, "--password": None, "--cacert": None}
        rest = []
        it = iter(argv[3:])
        for a in it:
            if a in opts:
                opts[a] = next(it)
            else:
                rest.append(a)
        push(argv[1], argv[2], rest, opts["--user"], opts["--password"], opts["--cacert"])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

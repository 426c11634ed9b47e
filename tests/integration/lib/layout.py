"""OCI image layouts made by tests: tar entries, gzip layers, and a one-image
layout (oci-layout, index.json tagged "latest", blobs) for linux/amd64.

    from layout import ti, layer, write_layout
    write_layout(out, [layer([ti("etc", DIR), ti("etc/motd", data=b"hi\\n")])])
"""
import gzip
import hashlib
import io
import json
import os
import tarfile

DIR = tarfile.DIRTYPE
REG = tarfile.REGTYPE


def ti(name, kind=REG, data=b""):
    """A tar entry (TarInfo, data): mode 0755 for dirs, 0644 else, mtime 1000."""
    m = tarfile.TarInfo(name)
    m.type = kind
    m.mtime = 1000
    m.mode = 0o755 if kind == DIR else 0o644
    if kind == REG:
        m.size = len(data)
    return m, data


def layer(entries, level=9):
    """(uncompressed tar, its gzip) for a list of ti() entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for m, data in entries:
            t.addfile(m, io.BytesIO(data) if m.type == REG else None)
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=level, mtime=0)


def write_layout(out, layers, claim=None):
    """An OCI layout at out holding one image of the given (raw, gzip) layers;
    claim: diff_ids its config states instead of the layers' own (a false
    claim, as a hostile image makes)."""
    os.makedirs(f"{out}/blobs/sha256", exist_ok=True)

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        with open(f"{out}/blobs/sha256/{d}", "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)

    descs, diff_ids = [], []
    for raw, gz in layers:
        d, n = blob(gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": d, "size": n})
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    if claim:
        diff_ids = list(claim)
    cd, cn = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    md, mn = blob(json.dumps({"schemaVersion": 2,
                              "mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                         "digest": cd, "size": cn},
                              "layers": descs}).encode())
    with open(f"{out}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(f"{out}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
             "size": mn, "platform": {"architecture": "amd64", "os": "linux"},
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)

#!/usr/bin/env python3
"""An independent implementation of docs/recipe-digest.md, in the way an SDK
would write it, checked against the golden vectors: for every
tests/recipes/golden/NAME.yaml,
  - NAME.canonical re-encoded by Python's json module (sorted keys, compact
    separators, UTF-8) is byte for byte the same,
  - sha256 of it is NAME.digest,
  - every copy step's "content" is the Merkle hash of its source, computed
    here from the files (honoring .sbxignore),
  - NAME.cachekeys holds the chained per-step cache keys for its resolved
    base digest.
Exit status 1 with a message on the first mismatch."""
import fnmatch, hashlib, json, os, stat, sys

def clean(p):
    return os.path.normpath(p).lstrip("/") if p else "."

def load_ignore(ctx):
    pats = []
    try:
        lines = open(os.path.join(ctx, ".sbxignore"), encoding="utf-8").read().split("\n")
    except FileNotFoundError:
        return pats
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        if neg:
            line = line[1:].strip()
        p = os.path.normpath(line).lstrip("/")
        if p and p != ".":
            pats.append((neg, p.split("/")))
    return pats

def match_segs(pat, path):
    if not pat:
        return not path
    if pat[0] == "**":
        return any(match_segs(pat[1:], path[k:]) for k in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pat[0]) and match_segs(pat[1:], path[1:])

def excluded(pats, rel):
    segs, out = rel.split("/"), False
    for neg, pat in pats:
        if any(match_segs(pat, segs[:k]) for k in range(1, len(segs) + 1)):
            out = not neg
    return out

def node_hash(ctx, pats, path, rel):
    """(type char, 32-byte hash) or None when excluded."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "l", hashlib.sha256(os.readlink(path).encode()).digest()
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256(open(path, "rb").read()).digest()
        return ("x" if st.st_mode & stat.S_IXUSR else "f"), h
    h = hashlib.sha256()
    for name in sorted(os.listdir(path), key=lambda n: n.encode()):
        crel = f"{rel}/{name}" if rel else name
        child = os.path.join(path, name)
        ex = excluded(pats, crel)
        if ex and not (os.path.isdir(child) and not os.path.islink(child) and any(n for n, _ in pats)):
            continue
        t, ch = node_hash(ctx, pats, child, crel)
        if ex and t == "d" and ch == EMPTY_DIR:
            continue
        h.update(f"{t} {ch.hex()} ".encode() + name.encode() + b"\0")
    return "d", h.digest()

EMPTY_DIR = hashlib.sha256(b"").digest()

def copy_digest(ctx, src):
    path = os.path.realpath(os.path.join(ctx, src))
    rel = os.path.relpath(path, os.path.realpath(ctx))
    t, h = node_hash(ctx, load_ignore(ctx), path, "" if rel == "." else rel)
    return "sha256:" + hashlib.sha256(f"sbx-copy-v1 {t} {h.hex()}".encode()).hexdigest()

def main(golden):
    names = sorted(f[:-5] for f in os.listdir(golden) if f.endswith(".yaml"))
    if not names:
        sys.exit("no golden vectors in " + golden)
    for name in names:
        raw = open(os.path.join(golden, name + ".canonical"), "rb").read().rstrip(b"\n")
        obj = json.loads(raw)
        again = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if again != raw:
            sys.exit(f"{name}: Python's canonical JSON differs:\n{again}\n{raw}")
        want = open(os.path.join(golden, name + ".digest")).read().strip()
        got = "sha256:" + hashlib.sha256(raw).hexdigest()
        if got != want:
            sys.exit(f"{name}: digest {got}, golden says {want}")
        for step in obj["steps"]:
            if step["op"] == "copy":
                c = copy_digest(golden, step["src"])
                if c != step["content"]:
                    sys.exit(f"{name}: copy of {step['src']}: Merkle {c}, canonical says {step['content']}")
        keys = open(os.path.join(golden, name + ".cachekeys")).read().split("\n")
        resolved = keys[0].split()[-1]
        enc = lambda o: json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        k = "sha256:" + hashlib.sha256(b"sbx-cache-v1\n" + enc(obj["base"]) + b"\n" + resolved.encode()).hexdigest()
        chain = [k]
        for step in obj["steps"]:
            k = "sha256:" + hashlib.sha256(k.encode() + b"\n" + enc(step)).hexdigest()
            chain.append(k)
        want_keys = [l.split()[1] for l in keys[1:] if l.strip()]
        if chain != want_keys:
            sys.exit(f"{name}: cache keys differ:\n{chain}\n{want_keys}")
        print(f"ok {name} {want}")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "golden"))

#!/usr/bin/python3
"""Fault-injecting HTTP proxy for the registry tests, and the blob server that
stands in for another host (a CDN) that blob GETs are redirected to.

  faultproxy.py proxy --upstream http://127.0.0.1:PORT --dir DIR
      listens on 127.0.0.1, port in DIR/proxy.port; forwards every request to
      the registry and injects the fault described by DIR/mode.json, re-read on
      every request (a changed file resets the counters).  Each request is
      appended to DIR/proxy.log as a JSON line.
  faultproxy.py blobs --blobs BLOBDIR --dir DIR [--host 127.0.0.2]
      serves GET/HEAD /blobs/sha256:HEX from BLOBDIR/HEX (Range supported),
      port in DIR/blobs.port, log in DIR/blobs.log (records whether an
      Authorization header arrived; never its value).

mode.json: {"mode": M, "match": REGEX on the path, "method": "GET", "count": N}
  count: how many matching requests get the fault (default 1; -1 = all);
  the rest pass through.  skip: let that many matching requests through first.  Modes:
  pass                        forward untouched
  status   status, retry_after   answer with that status (429, 500, 503...);
           retry_after_date      Retry-After as an HTTP-date that many seconds ahead
  reset    fraction          send headers and that fraction of the body, then RST
  stall    fraction, stall   send headers and part of the body, then go silent
  corrupt                    flip one byte in the middle of the body (same length);
                             the log records the sha256 of what was sent
  tamper                     add a space after the first '{' of the body (a
                             different but valid JSON document, same headers)
  redirect target            307 to TARGET/blobs/DIGEST?X-Amz-Signature=...
  huge     chunked           answer 200 claiming a 1 GiB body (or, chunked, no
                             length) and keep sending until the client hangs up
  slow     rate              send the body at about RATE bytes/s
  delay    delay             wait DELAY seconds, then forward
  cut_upload fraction        read that fraction of the request body, then hang up
                             without forwarding anything (a front end that buffers
                             uploads, as nginx does, and lost the client);
             forward         with "forward": true, forward the whole request and hang
                             up instead of answering (the answer is lost)
  upload_to target           forward, then point the answer's Location (an upload
                             location) at TARGET: another origin, same path and query
  accept   accept            forward with the client's Accept replaced (the registry
                             then converts a schema2 manifest to schema1)
  "on_range": "ignore" | "misalign" | "cap" (any mode, not counted): a Range request on a
  matching path is answered 200 with the whole body, or 206 from byte 0, or (cap, with
  "cap": N) a 206 of at most N bytes from where asked, as servers that limit ranges do
  "headers": {NAME: VALUE} (forwarding modes): added to the answer
  "headers_on": {METHOD: {NAME: VALUE}} (any mode, not counted): added to the
  forwarded answers of that method on a matching path
The registry sees the client's Host as X-Forwarded-Host, so the upload
locations it gives point back at the proxy.  Log entries also have the
request's Content-Range and body length, and t_end.
"""
import argparse
import email.utils
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpd  # noqa: E402

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate", "host"}


class Abort(Exception):
    """The fault ended the connection on purpose."""


class ProxyHandler(httpd.Handler):
    upstream = None
    mode_path = None
    _lock = threading.Lock()
    _state = {"raw": None, "applied": 0}

    def fault(self):
        """The fault to apply to this request, or None; counts it.  Also sets
        self.on_range: how to treat a Range request on a matching path
        (whatever the count), from the mode's "on_range"."""
        self.on_range = None
        self.add_headers = {}
        try:
            with open(self.mode_path) as f:
                raw = f.read()
        except FileNotFoundError:
            raw = ""
        with self._lock:
            if raw != self._state["raw"]:
                self._state.update(raw=raw, applied=0, seen=0)
            if not raw.strip():
                return None
            m = json.loads(raw)
            if m.get("mode", "pass") == "pass":
                return None
            if not re.search(m.get("match", "/blobs/sha256:"), self.path):
                return None
            self.add_headers = (m.get("headers_on") or {}).get(self.command, {})
            if m.get("method", "GET") not in (self.command, "*"):
                return None
            if "Range" in self.headers:
                self.on_range = m.get("on_range")
            self._state["seen"] = self._state.get("seen", 0) + 1
            if self._state["seen"] <= m.get("skip", 0):
                return None
            count = m.get("count", 1)
            if count >= 0 and self._state["applied"] >= count:
                return None
            self._state["applied"] += 1
            return m

    def do_GET(self):
        self.forward()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET

    def forward(self):
        entry = {"t": time.time(), "method": self.command, "path": self.path,
                 "range": self.headers.get("Range"), "auth": "Authorization" in self.headers,
                 "content_range": self.headers.get("Content-Range"),
                 "body_len": int(self.headers.get("Content-Length", "0") or 0)}
        try:
            m = self.fault()
            entry["fault"] = m.get("mode") if m else None
            self.run(m, entry)
        except Abort:
            self.close_connection = True
        except (ConnectionError, BrokenPipeError, TimeoutError, OSError) as e:
            entry["client_gone"] = str(e)
            self.close_connection = True
        finally:
            entry["t_end"] = time.time()
            self.record(entry)

    def run(self, m, entry):
        mode = m.get("mode") if m else None
        if mode == "cut_upload":
            n = int(self.headers.get("Content-Length", "0") or 0)
            want = n if m.get("forward") else int(n * float(m.get("fraction", 0.5)))
            body = self.rfile.read(want) if want else b""
            entry["received"] = len(body)
            if m.get("forward"):
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn = http.client.HTTPConnection(self.upstream, timeout=60)
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                conn.close()
                entry["upstream_status"] = r.status
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            raise Abort()
        if mode == "delay":
            time.sleep(float(m.get("delay", 1)))
        if mode == "status":
            n = int(self.headers.get("Content-Length", "0") or 0)
            if n:  # an upload's body: read it, as a server answering after it would
                self.rfile.read(n)
            st = int(m.get("status", 500))
            h = {"Retry-After": str(m["retry_after"])} if "retry_after" in m else {}
            if "retry_after_date" in m:  # the HTTP-date form, N seconds from now
                h["Retry-After"] = email.utils.formatdate(time.time() + m["retry_after_date"],
                                                          usegmt=True)
            entry["status"] = st
            self.reply(st, {"errors": [{"code": "TOOMANYREQUESTS" if st == 429 else "UNKNOWN",
                                        "message": "injected by the fault proxy"}]}, h)
            return
        if mode == "redirect":
            digest = self.path.rsplit("/", 1)[-1].split("?")[0]
            loc = m["target"].rstrip("/") + "/blobs/" + digest + "?X-Amz-Signature=sbxtest"
            entry["status"] = 307
            self.reply(307, b"", {"Location": loc})
            return
        if mode == "huge":
            self.huge(m, entry)
            return

        n = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if self.headers.get("Host"):
            headers["X-Forwarded-Host"] = self.headers["Host"]
        if self.on_range == "ignore":  # a server without Range support: 200, whole body
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
            entry["on_range"] = "ignore"
        elif self.on_range == "misalign":  # 206, but not from where the client asked
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
            headers["Range"] = "bytes=0-"
            entry["on_range"] = "misalign"
        if mode == "accept":  # what an old or broken client would ask for
            headers = {k: v for k, v in headers.items() if k.lower() != "accept"}
            if m.get("accept"):
                headers["Accept"] = m["accept"]
            entry["accept"] = m.get("accept")
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        entry["status"] = r.status
        out = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
        out += list((m.get("headers") or {}).items()) if m else []
        out += list(self.add_headers.items())
        if self.command == "HEAD":
            self.send_response(r.status)
            for k, v in out:
                self.send_header(k, v)
            self.end_headers()
            return
        data = r.read()
        conn.close()
        cr = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", r.getheader("Content-Range") or "")
        if self.on_range == "cap" and r.status == 206 and cr:
            data = data[:int((m or {}).get("cap", 65536))]
            a, total = int(cr.group(1)), cr.group(3)
            out = [(k, v) for k, v in out if k.lower() != "content-range"]
            out.append(("Content-Range", "bytes %d-%d/%s" % (a, a + len(data) - 1, total)))
            entry["on_range"] = "cap"
        if mode == "corrupt" and data:
            b = bytearray(data)
            b[len(b) // 2] ^= 0xFF
            data = bytes(b)
            entry["sha256"] = "sha256:" + hashlib.sha256(data).hexdigest()
        elif mode == "tamper" and data:
            data = data.replace(b"{", b"{ ", 1)
            entry["sha256"] = "sha256:" + hashlib.sha256(data).hexdigest()
        if mode == "upload_to":
            def moved(v):
                u = urllib.parse.urlsplit(v)
                return m["target"].rstrip("/") + u.path + ("?" + u.query if u.query else "")
            out = [(k, moved(v) if k.lower() == "location" else v) for k, v in out]
        self.send_response(r.status)
        for k, v in out:
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode in ("reset", "stall"):
            cut = int(len(data) * float(m.get("fraction", 0.5)))
            self.wfile.write(data[:cut])
            self.wfile.flush()
            entry["sent"] = cut
            if mode == "stall":
                self.record(dict(entry, stalling=True, t_stall=time.time()))
                deadline = time.time() + float(m.get("stall", 300))
                while time.time() < deadline:
                    time.sleep(0.2)
                self.connection.shutdown(socket.SHUT_RDWR)
                raise Abort()
            # SO_LINGER 0: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            raise Abort()
        if mode == "slow":  # a slow link: the body at about `rate` bytes/s
            rate, step = float(m.get("rate", 1 << 20)), 16384
            for i in range(0, len(data), step):
                self.wfile.write(data[i:i + step])
                entry["sent"] = min(len(data), i + step)
                time.sleep(len(data[i:i + step]) / rate)
            return
        self.wfile.write(data)
        entry["sent"] = len(data)

    def huge(self, m, entry):
        entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", m.get("content_type",
                                               "application/vnd.oci.image.manifest.v1+json"))
        if m.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        chunk = b'{"schemaVersion":2,' + b" " * 65000
        sent, limit = 0, 256 << 20
        entry["sent"] = 0
        while sent < limit:
            if m.get("chunked"):
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            else:
                self.wfile.write(chunk)
            sent += len(chunk)
            entry["sent"] = sent
            chunk = b" " * 65536
        raise Abort()


class BlobHandler(httpd.Handler):
    blobs = None

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        entry = {"t": time.time(), "method": self.command, "path": u.path,
                 "auth": "Authorization" in self.headers,
                 "headers": sorted(self.headers.keys()), "range": self.headers.get("Range")}
        mt = re.fullmatch(r"/blobs/sha256:([0-9a-f]{64})", u.path)
        p = os.path.join(self.blobs, mt.group(1)) if mt else None
        if not p or not os.path.exists(p):
            entry["status"] = 404
            self.record(entry)
            self.reply(404, b"no such blob\n", content_type="text/plain")
            return
        with open(p, "rb") as f:
            data = f.read()
        status, start = 200, 0
        rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "") or "")
        if rng and int(rng.group(1)) < len(data):
            status, start = 206, int(rng.group(1))
        entry["status"] = status
        self.record(entry)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data[start:])

    do_HEAD = do_GET


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["proxy", "blobs"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--upstream")
    ap.add_argument("--blobs")
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    if a.role == "proxy":
        ProxyHandler.upstream = urllib.parse.urlsplit(a.upstream).netloc
        ProxyHandler.mode_path = os.path.join(a.dir, "mode.json")
        ProxyHandler.log_path = os.path.join(a.dir, "proxy.log")
        httpd.serve(ProxyHandler, a.host, os.path.join(a.dir, "proxy.port"))
    else:
        BlobHandler.blobs = a.blobs
        BlobHandler.log_path = os.path.join(a.dir, "blobs.log")
        httpd.serve(BlobHandler, a.host, os.path.join(a.dir, "blobs.port"))


if __name__ == "__main__":
    main()

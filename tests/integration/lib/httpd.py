"""Shared bits of the harness's loopback HTTP servers (token issuer, fault
proxy, redirect target): a threaded HTTP/1.1 server bound to a free port that
it writes to a file once it listens, JSON-lines request logs, and the Go
net/http behaviour of answering a TLS ClientHello on a plain port with a 400 at
once (so a client that tries HTTPS first falls back quickly instead of hanging
on a server that waits for a request line)."""
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = None
    _log_lock = threading.Lock()

    def handle(self):
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":  # TLS handshake record on a plain HTTP port
            try:
                self.connection.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n"
                                        b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.record({"tls_probe": True})
            return
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            pass

    def log_message(self, fmt, *args):  # quiet; the JSON log is the record
        pass

    def record(self, entry):
        if not self.log_path:
            return
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._log_lock:
            with open(self.log_path, "a") as f:
                f.write(line)

    def reply(self, status, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def serve(handler_cls, host, port_file):
    srv = Server((host, 0), handler_cls)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)

"""A tiny HTTP server for the every-step example image."""
import http.server
import os

port = int(os.environ.get("PORT", "8000"))
http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()

"""An OTLP/HTTP receiver that accepts every export and keeps nothing (P1 with tracing on, scripts/bench.py):
reads the body, answers 200 with an empty protobuf ExportTraceServiceResponse. Prints "PORT <n>" first,
then serves until killed; counts what it accepted on GET /count."""
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

accepted = {"requests": 0, "bytes": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with lock:
            accepted["requests"] += 1
            accepted["bytes"] += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            body = f'{{"requests": {accepted["requests"]}, "bytes": {accepted["bytes"]}}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()

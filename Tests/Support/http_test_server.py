"""A loopback HTTP(S) server for maestro's HTTP client tests.

Every request is answered with a JSON echo of method, path, headers and body. /slow waits two
seconds, /redirect answers 302 to /echo, /stream?lines=N&interval=S&hold=H answers chunked: N lines
("line 1\n", …) S seconds apart, then keeps the connection open sending nothing for H seconds, /status/N answers N, /v1/traces answers {} (an OTLP/HTTP JSON receiver), /requests answers how many other
requests it has received; GET /_received lists every earlier request (method, path, headers, body) so a
test can see what the server got. With --cert/--key it speaks TLS; with --client-ca it requires a client
certificate signed by that CA; --bind sets the loopback address (127.0.0.1, 127.0.0.2, ::1). The first
line on stdout is "PORT <n>".
"""
import argparse
import json
import socket
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = 0
received_lock = threading.Lock()


RECEIVED = []
RECEIVED_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply_json(self, value):
        payload = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def handle_any(self):
        global received
        if self.path == "/requests":
            with received_lock:
                count = received
            self.reply_json({"count": count})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if self.path == "/_received":
            with RECEIVED_LOCK:
                requests = list(RECEIVED)
            self.reply_json(requests)
            return
        with received_lock:
            received += 1
        with RECEIVED_LOCK:
            RECEIVED.append({"method": self.command, "path": self.path,
                             "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        if self.path == "/v1/traces":
            # An OTLP/HTTP receiver: kept above (GET /_received), answered as a collector does (JSON, accepted).
            return self.reply_json({})
        if self.path == "/slow":
            time.sleep(2)
        if self.path.startswith("/stream"):
            return self.stream(parse_qs(urlparse(self.path).query))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 200
        if self.path.startswith("/status/"):
            status = int(self.path.rsplit("/", 1)[1])
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert()
            if cert:
                peer = dict(x[0] for x in cert.get("subject", ()))
        payload = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "client": peer,
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Test", "yes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def stream(self, query):
        lines = int(query.get("lines", ["3"])[0])
        interval = float(query.get("interval", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for index in range(1, lines + 1):
                if index > 1:
                    time.sleep(interval)
                line = f"line {index}\n".encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            time.sleep(float(query.get("hold", ["0"])[0]))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args()

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET

    server = Server((args.bind, 0), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

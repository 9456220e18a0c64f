"""A webhook receiver for the example: appends each POST body as one line to the file given, and
answers 204. Prints "PORT <n>" first."""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        with open(sys.argv[1], "a") as out:
            out.write(f"{self.path} {self.headers.get('X-Webhook-Token', '-')} {body}\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Receiver)
print(f"PORT {server.server_port}", flush=True)
server.serve_forever()

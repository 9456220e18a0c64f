"""The Kubernetes API double's own ceiling: requests/s a minimal client gets from it with the same
requests maestro's apply sends (server-side apply PATCHes of a collector's Secret, Deployment and
Service), over CONNECTIONS keep-alive connections, DEPTH requests in flight on each (HTTP/1.1 pipelining).
It bounds every client of the double, maestro and kubectl alike.

    kube_ceiling.py BASE_URL SAMPLE.yaml REQUESTS CONNECTIONS DEPTH RUNS

Prints progress, then `RESULT {"requests_per_second": [...]}`.
"""
import json
import socket
import sys
import threading
import time
from urllib.parse import urlparse

import yaml

PLURALS = {"Secret": "secrets", "Service": "services", "Deployment": "deployments"}


def request_bytes(host, obj, name):
    obj = json.loads(json.dumps(obj))
    obj["metadata"]["name"] = name
    group = "/apis/apps/v1" if obj["kind"] == "Deployment" else "/api/v1"
    path = f"{group}/namespaces/{obj['metadata']['namespace']}/{PLURALS[obj['kind']]}/{name}?fieldManager=maestro&force=true"
    body = json.dumps(obj).encode()
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer bench\r\n"
            f"Content-Type: application/apply-patch+yaml\r\nAccept: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def read_response(stream):
    status = stream.readline()
    if not status:
        raise ConnectionError("the double closed the connection")
    length = 0
    while True:
        line = stream.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    stream.read(length)
    code = int(status.split()[1])
    if code not in (200, 201):
        raise RuntimeError(f"HTTP {code}")


def run(url, objects, total, connections, depth, prefix):
    parsed = urlparse(url)
    host = f"{parsed.hostname}:{parsed.port}"
    requests = [request_bytes(host, objects[i % len(objects)], f"{prefix}-{i // len(objects)}") for i in range(total)]
    shares = [requests[i::connections] for i in range(connections)]
    errors = []

    def worker(share):
        try:
            sock = socket.create_connection((parsed.hostname, parsed.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = sock.makefile("rb")
            for start in range(0, len(share), depth):
                window = share[start:start + depth]
                sock.sendall(b"".join(window))
                for _ in window:
                    read_response(stream)
            sock.close()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        sys.exit(f"ceiling client failed: {errors[0]}")
    return total / elapsed


def main():
    url, sample, total, connections, depth, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    with open(sample) as handle:
        objects = [o for o in yaml.safe_load_all(handle) if o]
    rates = []
    for index in range(runs):
        rates.append(run(url, objects, total, connections, depth, f"ceiling-{index}"))
        print(f"  the double's ceiling, {connections} connections x depth {depth}, run {index + 1}: {rates[-1]:.0f} requests/s", flush=True)
    print("RESULT " + json.dumps({"requests_per_second": rates}))


main()

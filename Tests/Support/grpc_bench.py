"""Latency of CreateOtelCollector from a Python grpcio client (a benchmark, never a test).

    grpc_bench.py maestro TARGET SINK_PREFIX COUNT CALLERS   measure maestro (configs must be stored)
    grpc_bench.py floor COUNT CALLERS                         the same client against a trivial Python server

Prints calls/s, p50 and p99 in milliseconds.
"""
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_tools import protoc

repository = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = tempfile.mkdtemp(prefix="maestro-bench-stubs-")
if protoc.main(["protoc", f"-I{os.path.join(repository, 'proto')}", f"--python_out={out}", f"--grpc_python_out={out}",
                "maestro/v1/maestro.proto"]) != 0:
    sys.exit("stub generation failed")
sys.path.insert(0, out)
from maestro.v1 import maestro_pb2, maestro_pb2_grpc  # noqa: E402


def measure(target, sink_ids, callers):
    channels = [grpc.insecure_channel(target) for _ in range(callers)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)
    stubs = [maestro_pb2_grpc.OtelCollectorServiceStub(channel) for channel in channels]
    latencies = []
    lock = threading.Lock()
    queue = list(sink_ids)

    def worker(stub):
        while True:
            with lock:
                if not queue:
                    return
                sink = queue.pop()
            started = time.perf_counter()
            stub.CreateOtelCollector(maestro_pb2.CreateOtelCollectorRequest(sink_id=sink))
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(stub,)) for stub in stubs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / total, p50, p99


class Trivial(maestro_pb2_grpc.OtelCollectorServiceServicer):
    def CreateOtelCollector(self, request, context):
        return maestro_pb2.OtelCollector(sink_id=request.sink_id, status="provisioning")


if sys.argv[1] == "floor":
    count, callers = int(sys.argv[2]), int(sys.argv[3])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    maestro_pb2_grpc.add_OtelCollectorServiceServicer_to_server(Trivial(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    rate, p50, p99 = measure(f"127.0.0.1:{port}", [f"floor-{i}" for i in range(count)], callers)
    server.stop(0)
else:
    target, prefix, count, callers = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    rate, p50, p99 = measure(target, [f"{prefix}{i}" for i in range(count)], callers)
print(f"{rate:.0f} {p50:.3f} {p99:.3f}")
shutil.rmtree(out, ignore_errors=True)

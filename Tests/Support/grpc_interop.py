"""Drives maestro's gRPC API with Python's grpcio, a client nobody here wrote.

Stubs are generated from proto/ with grpcio-tools at run time. For one target (host:port or
unix:path) and one sink id whose config is already stored: health check, create, get, list, render,
watch (sees the status change the create causes), delete. Prints one line per step; exits 1 on the
first failure.
"""
import os
import sys
import threading
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grpc_stubs import generate  # noqa: E402

target, sink_id, repository = sys.argv[1], sys.argv[2], sys.argv[3]
maestro_pb2, maestro_pb2_grpc, health_pb2, health_pb2_grpc = generate(repository)


def check(condition, message):
    if not condition:
        print("FAIL", message, flush=True)
        sys.exit(1)
    print("ok", message, flush=True)


channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=10)
health = health_pb2_grpc.HealthStub(channel)
check(health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING, "health SERVING")

stub = maestro_pb2_grpc.OtelCollectorServiceStub(channel)
seen = []
subscribed = threading.Event()


def watch():
    stream = stub.WatchOtelCollectors(maestro_pb2.WatchOtelCollectorsRequest(sink_id=sink_id), timeout=20)
    try:
        # maestro sends the initial metadata once the watch's position is pinned: from then on no
        # change is missed.
        if dict(stream.initial_metadata()).get("maestro-watch") == "subscribed":
            subscribed.set()
        for event in stream:
            seen.append(event.collector.status)
            if event.collector.status == "provisioning":
                stream.cancel()
                return
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            seen.append("error: " + str(error.code()))


watcher = threading.Thread(target=watch)
watcher.start()
check(subscribed.wait(10), "watch subscribed (initial metadata)")

created = stub.CreateOtelCollector(maestro_pb2.CreateOtelCollectorRequest(sink_id=sink_id, owner_id="python"))
check(created.sink_id == sink_id and created.collector_name.startswith("otel-"), "create")
got = stub.GetOtelCollector(maestro_pb2.GetOtelCollectorRequest(sink_id=sink_id))
check(got.owner_id == "python" and got.namespace == "otelcollectors", "get")
listed = stub.ListOtelCollectors(maestro_pb2.ListOtelCollectorsRequest(owner_id="python"))
check(any(c.sink_id == sink_id for c in listed.collectors), "list")
rendered = stub.RenderOtelCollector(maestro_pb2.RenderOtelCollectorRequest(sink_id=sink_id, reveal_secrets=True))
check("kind: Deployment" in rendered.objects_yaml and not rendered.secrets_revealed, "render (secrets redacted)")
watcher.join(20)
check("provisioning" in seen, f"watch saw the status change {seen}")
try:
    stub.GetOtelCollector(maestro_pb2.GetOtelCollectorRequest(sink_id=""))
    check(False, "empty sink id is INVALID_ARGUMENT")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, "empty sink id is INVALID_ARGUMENT")
try:
    stub.CreateOtelCollector(maestro_pb2.CreateOtelCollectorRequest(sink_id="no-such-sink-config"))
    check(False, "create without config is NOT_FOUND")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.NOT_FOUND, "create without config is NOT_FOUND")
deleted = stub.DeleteOtelCollector(maestro_pb2.DeleteOtelCollectorRequest(sink_id=sink_id))
check(deleted.existed, "delete")
# Once the removal has finished (Get says NOT_FOUND), a second delete is OK and finds nothing.
gone = False
for _ in range(200):
    try:
        stub.GetOtelCollector(maestro_pb2.GetOtelCollectorRequest(sink_id=sink_id))
    except grpc.RpcError as error:
        gone = error.code() == grpc.StatusCode.NOT_FOUND
        if gone:
            break
    time.sleep(0.05)
check(gone, "the deleted collector is gone (NOT_FOUND)")
check(not stub.DeleteOtelCollector(maestro_pb2.DeleteOtelCollectorRequest(sink_id=sink_id)).existed, "delete again is OK and reports existed = false")
print("ALL OK", flush=True)

"""Many concurrent calls multiplexed on ONE grpcio channel (one HTTP/2 connection), as gRPC clients
work: `count` CreateOtelCollector calls for the sinks `<prefix>0` … `<prefix>count-1` (their configs
already stored) are all started before any is awaited. Prints how many succeeded and each failure's
code; exits 0 only when every call succeeded.

usage: grpc_multiplex.py TARGET PREFIX COUNT REPOSITORY [TOKEN]
"""
import collections
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grpc_stubs import generate  # noqa: E402

target, prefix, count, repository = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
token = sys.argv[5] if len(sys.argv) > 5 else None
maestro_pb2, maestro_pb2_grpc, _, _ = generate(repository)

channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=10)
stub = maestro_pb2_grpc.OtelCollectorServiceStub(channel)
metadata = [("authorization", f"Bearer {token}")] if token else None
calls = [stub.CreateOtelCollector.future(maestro_pb2.CreateOtelCollectorRequest(sink_id=f"{prefix}{index}", owner_id="mux"),
                                         metadata=metadata, timeout=120)
         for index in range(count)]
failures = collections.Counter()
succeeded = 0
for index, call in enumerate(calls):
    try:
        reply = call.result()
        if reply.sink_id == f"{prefix}{index}":
            succeeded += 1
        else:
            failures["wrong sink id in reply"] += 1
    except grpc.RpcError as error:
        failures[f"{error.code()}: {error.details()}"] += 1
print(f"succeeded {succeeded} of {count}", flush=True)
for failure, times in failures.most_common():
    print(f"failed {times}: {failure}", flush=True)
sys.exit(0 if succeeded == count else 1)

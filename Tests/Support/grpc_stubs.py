"""Generates maestro's and the health service's Python stubs from proto/ with grpcio-tools."""
import os
import shutil
import sys
import tempfile

from grpc_tools import protoc


def generate(repository):
    """Returns (maestro_pb2, maestro_pb2_grpc, health_pb2, health_pb2_grpc)."""
    out = tempfile.mkdtemp(prefix="maestro-stubs-")
    proto = os.path.join(repository, "proto")
    # The health proto lives under grpc/health/v1, which as a Python package would collide with grpcio's
    # own `grpc` package: generate it from a copy under another path (the wire names stay grpc.health.v1).
    health_root = os.path.join(out, "protos")
    os.makedirs(os.path.join(health_root, "health_v1"))
    shutil.copy(os.path.join(proto, "grpc", "health", "v1", "health.proto"), os.path.join(health_root, "health_v1", "health.proto"))
    for root, name in ((proto, "maestro/v1/maestro.proto"), (health_root, "health_v1/health.proto")):
        if protoc.main(["protoc", f"-I{root}", f"--python_out={out}", f"--grpc_python_out={out}", name]) != 0:
            sys.exit("stub generation failed for " + name)
    sys.path.insert(0, out)
    from maestro.v1 import maestro_pb2, maestro_pb2_grpc
    from health_v1 import health_pb2, health_pb2_grpc
    return maestro_pb2, maestro_pb2_grpc, health_pb2, health_pb2_grpc

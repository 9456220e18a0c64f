"""Resource bounds at full size (run by `scripts/chaos bounds`; the suite has the short versions): each
hostile input is handled — processed, or dead-lettered with a reason — and maestro's peak RSS is printed.

1. a 10 MiB sink config, 100,000 headers, a 1 MiB sink id, a stream entry with 10,000 fields;
2. 1,000,000 entries pending for a dead consumer when maestro starts (over 1,000 sinks), reclaimed and
   handled — and the same entries read fresh, for the ratio of the two rates (the target: the backlog at
   50% of the fresh rate or better).

BOUNDS_PENDING (1000000) sets the backlog's size; BOUNDS_ONLY=backlog runs part 2 alone.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAESTRO = os.environ.get("MAESTRO", os.path.join(ROOT, ".build", "release", "maestro"))
PENDING = int(os.environ.get("BOUNDS_PENDING", "1000000"))
WORK = tempfile.mkdtemp(prefix="maestro-bounds-")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resp(*parts):
    return f"*{len(parts)}\r\n" + "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts)


def cli(port, *arguments):
    return subprocess.run(["redis-cli", "-p", str(port), *arguments], capture_output=True, text=True).stdout.strip()


def pipe(port, text):
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=text, text=True, capture_output=True, check=True)


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def handled(port):
    info = cli(port, "XINFO", "GROUPS", "orb.sinks").splitlines()
    values = dict(zip(info[0::2], info[1::2]))
    return values.get("pending") == "0" and values.get("lag") == "0"


def main():
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", WORK],
                             stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    auth = {"type": "basicauth", "username": "u", "password": "p"}
    normal = json.dumps({"exporter": {"remote_host": "https://p.example/w"}, "authentication": auth})

    def event(sink, config, *extra):
        return resp("XADD", "orb.sinks", "*", "operation", "sinks.create", "sink_id", sink, "owner_id", "o", "backend", "prometheus",
                    "config", config, "timestamp", "1700000000", *extra)

    try:
        # 1. hostile sizes, with maestro running.
        if os.environ.get("BOUNDS_ONLY") != "backlog":
            http = free_port()
            process = subprocess.Popen([MAESTRO, "run", "--redis-url", f"redis://127.0.0.1:{port}/0", "--kube-backend", "directory",
                                        "--manifests-dir", os.path.join(WORK, "manifests"), "--http-listen", f"127.0.0.1:{http}",
                                        "--max-deliveries", "2", "--min-idle", "1s", "--log-level", "error"], cwd=ROOT)
            time.sleep(1)
            headers = {f"X-H-{i}": "v" for i in range(100_000)}
            cases = [
                ("a 10 MiB sink config", event("big", json.dumps({"exporter": {"remote_host": "https://p.example/w", "padding": "x" * (10 << 20)},
                                                                   "authentication": auth}))),
                ("100,000 headers", event("headers", json.dumps({"exporter": {"remote_host": "https://p.example/w", "headers": headers},
                                                                 "authentication": auth}))),
                ("a 1 MiB sink id", event("s" * (1 << 20), normal)),
                ("an entry with 10,000 fields", event("fields", normal, *[x for i in range(10_000) for x in (f"extra_{i}", "v")])),
            ]
            for name, command in cases:
                letters_before = int(cli(port, "XLEN", "orb.maestro.deadletter") or 0)
                pipe(port, command)
                started = time.time()
                while not handled(port):
                    if time.time() - started > 300:
                        sys.exit(f"{name}: not handled in 5 minutes")
                    time.sleep(0.1)
                letters = int(cli(port, "XLEN", "orb.maestro.deadletter") or 0)
                outcome = "processed"
                if letters > letters_before:
                    lines = cli(port, "XREVRANGE", "orb.maestro.deadletter", "+", "-", "COUNT", "1").split("\n")
                    outcome = "dead-lettered: " + (lines[lines.index("reason") + 1][:120] if "reason" in lines else "?")
                print(f"{name:32} {time.time() - started:6.2f} s   peak RSS {peak_rss(process.pid):7.1f} MiB   {outcome}", flush=True)
            process.send_signal(signal.SIGTERM)
            process.wait()

        # 2. a million entries pending for a consumer that died, then the same entries read fresh.
        def drain(pending_for_dead_consumer):
            cli(port, "FLUSHALL")
            batch = []
            for index in range(PENDING):
                batch.append(resp("XADD", "orb.sinks", "*", "operation", "sinks.update" if index >= 1000 else "sinks.create",
                                  "sink_id", f"p-{index % 1000}", "owner_id", "o", "backend", "prometheus", "config", normal,
                                  "timestamp", "1700000000"))
                if len(batch) == 50_000:
                    pipe(port, "".join(batch))
                    batch = []
            if batch:
                pipe(port, "".join(batch))
            cli(port, "XGROUP", "CREATE", "orb.sinks", "orb.sinker", "0")
            if pending_for_dead_consumer:
                while cli(port, "XREADGROUP", "GROUP", "orb.sinker", "dead", "COUNT", "100000", "STREAMS", "orb.sinks", ">"):
                    pass
                print(f"{PENDING:,} entries pending for the dead consumer: "
                      f"{cli(port, 'XPENDING', 'orb.sinks', 'orb.sinker').splitlines()[0]}", flush=True)
            started = time.time()
            process = subprocess.Popen([MAESTRO, "run", "--redis-url", f"redis://127.0.0.1:{port}/0", "--kube-backend", "directory",
                                        "--manifests-dir", os.path.join(WORK, "manifests-2"), "--min-idle", "1s", "--log-level", "error"],
                                       cwd=ROOT)
            while not handled(port):
                if time.time() - started > 1800:
                    sys.exit("the entries were not handled in 30 minutes")
                time.sleep(0.2)
            took = time.time() - started
            rss = peak_rss(process.pid)
            what = "pending entries reclaimed and handled" if pending_for_dead_consumer else "entries read fresh and handled"
            print(f"{PENDING:,} {what} in {took:.1f} s ({PENDING / took:,.0f}/s); peak RSS {rss:.1f} MiB; "
                  f"configs stored {cli(port, 'HLEN', 'orb.sinker.otelConfigYaml')}", flush=True)
            process.send_signal(signal.SIGTERM)
            process.wait()
            return took

        backlog = drain(pending_for_dead_consumer=True)
        fresh = drain(pending_for_dead_consumer=False)
        print(f"backlog rate / fresh rate: {fresh / backlog:.2f} (target ≥ 0.50)", flush=True)
    finally:
        redis.terminate()
        redis.wait()


main()

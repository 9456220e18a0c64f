"""maestro's benchmarks next to their alternatives (run by scripts/bench; never part of the tests).

Runs every figure a few times, prints progress and a table (figure, maestro, alternative, ratio,
target, runs), and writes the table to BENCHMARKS.md with how to reproduce it. Environment:
BENCH_RUNS (default 3), BENCH_QUICK=1 (smaller workloads, for trying the script out),
BENCH_CONTROLLER=fleets,memory,faults,waves (the parts of `controller` to run; default all); MAESTRO_BIN
(another `maestro` binary than the release build's, e.g. a debug build for trying a part out).
"""
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAESTRO = os.environ.get("MAESTRO_BIN") or os.path.join(ROOT, ".build", "release", "maestro")
# The benchmarks are a program of their own; the figures for `maestro run` use the shipped binary.
MAESTRO_BENCH = os.path.join(ROOT, ".build", "release", "maestro-bench")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
CORES = os.cpu_count() or 1
ROWS = []
NOTES = []
WORK = tempfile.mkdtemp(prefix="maestro-bench-")


def say(text):
    print(text, flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_result(arguments, **kwargs):
    """Runs a bench command, echoing its progress lines; returns its RESULT json."""
    say("$ " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in arguments))
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, **kwargs)
    result = None
    for line in process.stdout:
        line = line.rstrip("\n")
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        else:
            say("  " + line if not line.startswith("  ") else line)
    if process.wait() != 0 or result is None:
        sys.exit(f"benchmark failed: {' '.join(arguments)}")
    return result


def median(values):
    return statistics.median(values)


def row(figure, maestro, alternative, ratio, target, runs):
    ROWS.append((figure, maestro, alternative, ratio, target, runs))
    say(f"  → {figure}: maestro {maestro}; alternative {alternative}; ratio {ratio}; target {target}")


def runs_text(values, unit_format):
    return ", ".join(unit_format.format(v) for v in values)


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(dir=WORK)
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        for _ in range(200):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                break
            time.sleep(0.02)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *arguments):
        return subprocess.run(["redis-cli", "-p", str(self.port), *arguments], capture_output=True, text=True).stdout.strip()

    def stop(self):
        self.process.terminate()
        self.process.wait()


# ── P1 ──────────────────────────────────────────────────────────────────────────────────────────────
def pipeline():
    say("\n== P1 pipeline: sinks.create events pre-loaded in orb.sinks, --create-policy external")
    redis = RedisServer()
    try:
        for events in ([2_000] if QUICK else [10_000, 100_000]):
            result = run_result([MAESTRO_BENCH, "pipeline", "--redis-url", redis.url, "--events", str(events),
                                 "--worker-counts", f"1,{CORES}", "--runs", str(RUNS), "--redis-limit"])
            limit = median(result["redis_limit"])
            for workers in sorted({1, CORES}):
                rates = result[f"maestro_{workers}"]
                target = "≥ 50% of Redis's limit" + (f", ≥ 20,000/s on {CORES} cores" if workers == CORES else "")
                row(f"P1 pipeline, {events:,} events, {workers} worker{'s' if workers > 1 else ''} (events/s)",
                    f"{median(rates):,.0f}", f"{limit:,.0f} (Redis: maestro's commands replayed, 1 pipelined client, depth 200)",
                    f"{median(rates) / limit:.0%}", target, runs_text(rates, "{:,.0f}"))
            NOTES.append(f"P1, {events:,} events: Redis commands per event as maestro sends them: {result['commands_per_event']}.")
    finally:
        redis.stop()


# ── P1 with tracing ────────────────────────────────────────────────────────────────────────────────
def tracing():
    say("\n== P1 pipeline with tracing off and on (on: every span exported over OTLP/HTTP to a receiver that discards)")
    redis = RedisServer()
    receiver = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "otlp_discard.py")], stdout=subprocess.PIPE, text=True)
    try:
        port = int(receiver.stdout.readline().split()[1])
        events = 2_000 if QUICK else 10_000
        common = [MAESTRO_BENCH, "pipeline", "--redis-url", redis.url, "--events", str(events), "--worker-counts", f"1,{CORES}", "--runs", str(RUNS)]
        off = run_result(common)
        on = run_result(common + ["--otel-endpoint", f"http://127.0.0.1:{port}/v1/traces"])
        accepted = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/count").read())
        for workers in sorted({1, CORES}):
            rates_off, rates_on = off[f"maestro_{workers}"], on[f"maestro_{workers}"]
            label = f"{workers} worker{'s' if workers > 1 else ''}"
            row(f"P1 pipeline, {events:,} events, {label}, tracing on (events/s)", f"{median(rates_on):,.0f}",
                f"{median(rates_off):,.0f} (tracing off: no endpoint, no span)", f"{median(rates_on) / median(rates_off):.0%}",
                "tracing off costs nothing; on, measured", f"on: {runs_text(rates_on, '{:,.0f}')}; off: {runs_text(rates_off, '{:,.0f}')}")
        NOTES.append(f"P1 with tracing on: the receiver accepted {accepted['requests']:,} exports ({accepted['bytes']:,} bytes); "
                     "spans past the exporter's queue (2,048) are dropped and counted, never waited for.")
    finally:
        receiver.terminate()
        receiver.wait()
        redis.stop()


# ── P2 ──────────────────────────────────────────────────────────────────────────────────────────────
def templates():
    say("\n== P2 templates: render a collector's objects (Secret, Deployment, Service) per sink")
    sinks = 2_000 if QUICK else 10_000
    inputs, sample = os.path.join(WORK, "inputs.json"), os.path.join(WORK, "sample.yaml")
    ours = run_result([MAESTRO_BENCH, "templates", "--sinks", str(sinks), "--runs", str(RUNS), "--inputs-out", inputs, "--sample-out", sample])
    theirs = run_result([sys.executable, os.path.join(ROOT, "bench", "jinja_render.py"), inputs, sample, str(sinks), str(RUNS)])
    lua, jinja = median(ours["renders_per_second"]), median(theirs["renders_per_second"])
    row(f"P2 templates, {sinks:,} collectors (renders/s, 1 thread)", f"{lua:,.0f} (Lua template + YAML emitter)",
        f"{jinja:,.0f} (Jinja2 {jinja_version()}, same objects)", f"{lua / jinja:.1f}×", "≥ 2×", runs_text(ours["renders_per_second"], "{:,.0f}"))
    plugin = median(ours["plugin_microseconds"])
    row("P2 prometheus plugin (µs per event: validate, decrypt, handler, YAML)", f"{plugin:.1f} µs", "—", "—", "—",
        runs_text(ours["plugin_microseconds"], "{:.1f}"))


def jinja_version():
    import jinja2
    return jinja2.__version__


# ── P3 ──────────────────────────────────────────────────────────────────────────────────────────────
def start_double():
    log = open(os.path.join(WORK, "double.log"), "w")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests", "Support", "kube_api_double.py"), "--namespace", "otelcollectors"],
                               stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        text = open(os.path.join(WORK, "double.log")).read()
        match = re.search(r"^PORT (\d+)", text, re.M)
        if match:
            return process, int(match.group(1))
        time.sleep(0.05)
    sys.exit("the API double did not start")


def kubeconfig_for(port):
    """A kubeconfig for the API double on this port."""
    path = os.path.join(WORK, f"kubeconfig-{port}")
    with open(path, "w") as handle:
        handle.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: double, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: bench, user: {{token: bench}}}}]
contexts: [{{name: bench, context: {{cluster: double, user: bench, namespace: otelcollectors}}}}]
current-context: bench
""")
    return path


def apply():
    say("\n== P3 apply: collectors through the Kubernetes API (the API double), next to kubectl apply -f per collector")
    say("   (each side and the ceiling get a fresh double: the double slows down as it holds more objects)")
    collectors = 100 if QUICK else 1_000
    results = {}
    ceilings = []

    def with_double(body):
        double, port = start_double()
        try:
            return body(port, kubeconfig_for(port))
        finally:
            double.terminate()
            double.wait()

    sample = os.path.join(WORK, "collector.yaml")
    for run in range(RUNS):
        def side(which):
            def body(port, kubeconfig):
                return run_result([MAESTRO_BENCH, "apply", "--kubeconfig", kubeconfig, "--collectors", str(collectors), "--runs", "1",
                                   "--side", which, "--sample-out", sample])
            for key, values in with_double(body).items():
                results.setdefault(key, []).extend(values)
        side("maestro")
        side("kubectl")

        def ceiling(port, _):
            rates = []
            for connections in (1, 4):
                result = run_result([sys.executable, os.path.join(ROOT, "bench", "kube_ceiling.py"), f"http://127.0.0.1:{port}", sample,
                                     str(collectors * 3), str(connections), "8", "1"])
                rates.append(median(result["requests_per_second"]))
            return max(rates)
        ceilings.append(with_double(ceiling))

    ours, theirs = median(results["maestro_collectors_per_second"]), median(results["kubectl_collectors_per_second"])
    row(f"P3 apply, {collectors:,} collectors (collectors/s)", f"{ours:,.1f} (4 appliers)", f"{theirs:,.1f} (kubectl apply -f, one per collector)",
        f"{ours / theirs:.1f}×", "≥ 10×", runs_text(results["maestro_collectors_per_second"], "{:,.1f}"))
    row("P3 API requests per collector", f"{median(results['maestro_requests_per_collector']):.1f}",
        f"{median(results['kubectl_requests_per_collector']):.1f}", "—", "—", runs_text(results["maestro_requests_per_collector"], "{:.1f}"))
    row("P3 CPU seconds per collector (client side)", f"{median(results['maestro_cpu_seconds_per_collector']) * 1000:.2f} ms",
        f"{median(results['kubectl_cpu_seconds_per_collector']) * 1000:.1f} ms",
        f"{median(results['kubectl_cpu_seconds_per_collector']) / median(results['maestro_cpu_seconds_per_collector']):.0f}× less",
        "—", runs_text(results["maestro_cpu_seconds_per_collector"], "{:.5f}"))
    requests = median(results["maestro_requests_per_second"])
    limit = median(ceilings)
    row("P3 API requests/s against the double's own ceiling", f"{requests:,.0f}",
        f"{limit:,.0f} (minimal pipelined client, best of 1 and 4 connections × depth 8)", f"{requests / limit:.0%}", "≥ 80%",
        runs_text(results["maestro_requests_per_second"], "{:,.0f}"))
    NOTES.append(f"P3: the double answers about {limit:,.0f} requests/s at best, so no client can apply more than about "
                 f"{limit / 3:,.0f} collectors/s (3 requests each) against it; 10× kubectl's {theirs:,.1f}/s would need "
                 f"{theirs * 30:,.0f} requests/s.")


# ── P4 ──────────────────────────────────────────────────────────────────────────────────────────────
def wait_ready(port, timeout=10.0):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_and_start():
    say("\n== P4 memory and start")
    sinks = 2_000 if QUICK else 10_000
    redis = RedisServer()
    try:
        starts = []
        for index in range(max(RUNS, 5)):
            port = free_port()
            manifests = os.path.join(WORK, f"manifests-start-{index}")
            started = time.perf_counter()
            process = subprocess.Popen([MAESTRO, "run", "--redis-url", redis.url, "--kube-backend", "directory", "--manifests-dir", manifests,
                                        "--http-listen", f"127.0.0.1:{port}", "--log-level", "error"], cwd=ROOT)
            if not wait_ready(port):
                sys.exit("maestro did not become ready")
            starts.append((time.perf_counter() - started) * 1000)
            process.send_signal(signal.SIGTERM)
            process.wait()
            say(f"  start to /readyz OK, run {index + 1}: {starts[-1]:.0f} ms")
        row("P4 start to /readyz OK with the shipped plugins (ms)", f"{median(starts):.0f} ms", "—", "—", "< 300 ms", runs_text(starts, "{:.0f}"))

        config = json.dumps({"exporter": {"remote_host": "https://prometheus.example.com/api/v1/write"},
                             "authentication": {"type": "basicauth", "username": "u", "password": "p"}})
        commands = []
        for index in range(sinks):
            fields = ["operation", "sinks.create", "sink_id", f"mem-{index}", "owner_id", "o", "backend", "prometheus", "config", config,
                      "timestamp", "1700000000"]
            parts = ["XADD", "orb.sinks", "*", *fields]
            commands.append(f"*{len(parts)}\r\n" + "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts))
        subprocess.run(["redis-cli", "-p", str(redis.port), "--pipe"], input="".join(commands), text=True, capture_output=True, check=True)
        port = free_port()
        manifests = os.path.join(WORK, "manifests-memory")
        process = subprocess.Popen([MAESTRO, "run", "--redis-url", redis.url, "--kube-backend", "directory", "--manifests-dir", manifests,
                                    "--http-listen", f"127.0.0.1:{port}", "--log-level", "error"], cwd=ROOT)
        started = time.perf_counter()
        try:
            while True:
                written = sum(len(files) for _, _, files in os.walk(manifests))
                if int(redis.cli("HLEN", "orb.maestro.otelCollector") or 0) >= sinks and written >= sinks:
                    break
                if time.perf_counter() - started > 600:
                    sys.exit("maestro did not manage the sinks in 10 minutes")
                time.sleep(0.1)
            took = time.perf_counter() - started
            peak = peak_rss_mib(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait()
        say(f"  {sinks:,} sinks stored, rendered and written in {took:.1f} s; peak RSS {peak:.1f} MiB")
        row(f"P4 peak RSS after managing {sinks:,} sinks (maestro run, directory backend)", f"{peak:.1f} MiB", "—", "—", "≤ 64 MiB", "1 run")
    finally:
        redis.stop()


# ── P5 ──────────────────────────────────────────────────────────────────────────────────────────────
def grpc():
    say("\n== P5 gRPC CreateOtelCollector (directory backend) from a Python grpcio client")
    calls = 1_000 if QUICK else 4_000
    redis = RedisServer()
    grpc_port = free_port()
    try:
        commands = "".join(f'HSET orb.sinker.otelConfigYaml bench-{i} "receivers: {{}}"\n' for i in range(calls))
        subprocess.run(["redis-cli", "-p", str(redis.port)], input=commands, text=True, capture_output=True, check=True)
        process = subprocess.Popen([MAESTRO, "run", "--redis-url", redis.url, "--role", "maestro", "--kube-backend", "directory",
                                    "--manifests-dir", os.path.join(WORK, "manifests-grpc"), "--grpc-listen", f"127.0.0.1:{grpc_port}",
                                    "--log-level", "error"], cwd=ROOT)
        time.sleep(1)
        try:
            bench = os.path.join(ROOT, "Tests", "Support", "grpc_bench.py")
            for callers in (1, 16):
                ours, floors = [], []
                for _ in range(RUNS):
                    redis.cli("DEL", "orb.maestro.otelCollector")
                    out = subprocess.run([sys.executable, bench, "maestro", f"127.0.0.1:{grpc_port}", "bench-", str(calls // 2), str(callers)],
                                         capture_output=True, text=True, check=True).stdout.split()
                    ours.append([float(x) for x in out])
                    out = subprocess.run([sys.executable, bench, "floor", str(calls // 2), str(callers)], capture_output=True, text=True,
                                         check=True).stdout.split()
                    floors.append([float(x) for x in out])
                    say(f"  {callers} caller(s): maestro {ours[-1][0]:,.0f} calls/s p50 {ours[-1][1]:.2f} ms p99 {ours[-1][2]:.2f} ms; "
                        f"trivial Python server {floors[-1][0]:,.0f} calls/s p50 {floors[-1][1]:.2f} ms p99 {floors[-1][2]:.2f} ms")
                p99 = median([o[2] for o in ours])
                floor_p99 = median([f[2] for f in floors])
                row(f"P5 gRPC create, {callers} caller{'s' if callers > 1 else ''}: p50 / p99 (ms), calls/s",
                    f"{median([o[1] for o in ours]):.2f} / {p99:.2f}, {median([o[0] for o in ours]):,.0f}/s",
                    f"{median([f[1] for f in floors]):.2f} / {floor_p99:.2f}, {median([f[0] for f in floors]):,.0f}/s (the client against a trivial Python server)",
                    f"p99 +{p99 - floor_p99:.2f} ms", "p99 < 2 ms" if callers == 1 else "—", runs_text([o[2] for o in ours], "{:.2f}"))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait()
    finally:
        redis.stop()


# ── P6 ──────────────────────────────────────────────────────────────────────────────────────────────
def controller():
    say("\n== P6 the Kubernetes controller against the API double: requests, status latency, memory, faults")
    fleets = (50, 200) if QUICK else (200, 2_000)
    steady, first_sync = {}, {}

    def double_post(port, path, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body or {}).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "X-Double-Control": "1"})
        return json.loads(urllib.request.urlopen(request, timeout=30).read() or b"{}")

    def requests_served(port):
        return sum(double_post(port, "/_double/stats").get("requests", {}).values())

    def writes_served(port):
        # The leader's Lease renewals are PUTs: not writes of collectors.
        counts = double_post(port, "/_double/stats").get("requests", {})
        return sum(counts.get(method, 0) for method in ("POST", "PATCH", "DELETE"))

    def start_maestro(redis, kubeconfig, grpc_port, resync="15s", log_reads="0", kube_qps="0", extra=()):
        log = open(os.path.join(WORK, f"maestro-{grpc_port}.log"), "a")
        process = subprocess.Popen([MAESTRO, "run", "--redis-url", redis.url, "--role", "maestro", "--kube-backend", "kubernetes",
                                    "--kubeconfig", kubeconfig, "--create-namespace", "--resync-interval", resync, "--create-policy", "external",
                                    "--grpc-listen", f"127.0.0.1:{grpc_port}", "--log-level", "warning", "--kube-qps", kube_qps,
                                    "--kube-log-reads-per-second", log_reads, *extra],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", grpc_port), timeout=0.2).close()
                return process
            except OSError:
                time.sleep(0.05)
        sys.exit("maestro did not start")

    def active_count(redis):
        values = subprocess.run(["redis-cli", "-p", str(redis.port), "HVALS", "orb.maestro.collectors"], capture_output=True, text=True).stdout
        return sum(1 for line in values.splitlines() if '"status":"active"' in line)

    def wait_active(redis, count, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if active_count(redis) >= count:
                return True
            time.sleep(0.5)
        return False

    def create(redis, grpc_port, prefix, count):
        # A config the collector's rules accept (docs/operations.md, "Validation of collector configs").
        config = "{receivers: {otlp: {protocols: {grpc: {}}}}, exporters: {debug: {}}, service: {pipelines: {metrics: {receivers: [otlp], exporters: [debug]}}}}"
        commands = "".join(f'HSET orb.sinker.otelConfigYaml {prefix}{i} "{config}"\n' for i in range(count))
        subprocess.run(["redis-cli", "-p", str(redis.port)], input=commands, text=True, capture_output=True, check=True)
        created = subprocess.run([sys.executable, os.path.join(ROOT, "Tests", "Support", "grpc_bench.py"), "maestro", f"127.0.0.1:{grpc_port}", prefix,
                        str(count), "8"], capture_output=True, text=True)
        if created.returncode != 0:
            sys.exit(f"creating {count} collectors through gRPC failed: {created.stderr[-2000:]}")

    class Cluster:
        """The API double, a redis-server and `maestro run` against them; stopped in reverse on exit."""

        def __init__(self, resync="15s", kube_qps="0", extra=()):
            self.resync = resync
            self.kube_qps = kube_qps
            self.extra = extra

        def __enter__(self):
            self.double, self.port = start_double()
            self.redis = RedisServer()
            self.grpc_port = free_port()
            self.kubeconfig = kubeconfig_for(self.port)
            self.maestro = start_maestro(self.redis, self.kubeconfig, self.grpc_port, resync=self.resync, kube_qps=self.kube_qps,
                                         extra=self.extra)
            time.sleep(2)
            return self

        def stop_maestro(self):
            self.maestro.send_signal(signal.SIGTERM)
            self.maestro.wait()

        def start_maestro_again(self):
            self.maestro = start_maestro(self.redis, self.kubeconfig, self.grpc_port, resync=self.resync)

        def __exit__(self, *_):
            self.stop_maestro()
            self.redis.stop()
            self.double.terminate()
            self.double.wait()

    parts = set(os.environ.get("BENCH_CONTROLLER", "fleets,memory,faults,waves").split(","))
    if "waves" in parts:
        waves(Cluster, double_post, writes_served, create, wait_active)
    for fleet in fleets if "fleets" in parts else ():
        with Cluster() as cluster:
            redis, port, grpc_port = cluster.redis, cluster.port, cluster.grpc_port
            before = requests_served(port)
            started = time.time()
            create(redis, grpc_port, "c-", fleet)
            if not wait_active(redis, fleet, 120 + fleet / 5):
                sys.exit(f"P6: {fleet} collectors did not become active")
            first_sync[fleet] = (requests_served(port) - before) / fleet
            say(f"  {fleet} collectors active in {time.time() - started:.1f} s; {first_sync[fleet]:.2f} requests per collector")
            # Steady state: nothing changes for two resync intervals (15 s each).
            time.sleep(5)
            before = requests_served(port)
            time.sleep(30)
            steady[fleet] = (requests_served(port) - before) / fleet / 2
            say(f"  steady state: {steady[fleet]:.3f} requests per collector per resync interval")
            if fleet == fleets[-1]:
                # Restart with the collectors running: a list per kind, no writes.
                cluster.stop_maestro()
                before, writes_before = requests_served(port), writes_served(port)
                cluster.start_maestro_again()
                time.sleep(20)
                restart_requests = requests_served(port) - before
                restart_writes = writes_served(port) - writes_before
                say(f"  restart with {fleet} collectors: {restart_requests} requests, {restart_writes} writes in 20 s")
                row(f"P6 restart with {fleet:,} collectors running: requests (writes)", f"{restart_requests} ({restart_writes})", "—", "—",
                    "≈ one LIST page per kind, no writes", f"{restart_requests}")
                # Status latency: a Deployment's pods stop being ready, then come back; time to the status event.
                latencies = []
                for index in range(20 if not QUICK else 5):
                    sink = f"c-{index}"
                    deployment = subprocess.run(["redis-cli", "-p", str(redis.port), "HGET", "orb.maestro.collectors", sink],
                                                capture_output=True, text=True).stdout
                    collector = json.loads(deployment)["collector_name"]
                    for mode, wanted in (("NotReady", "provisioning"), (None, "active")):
                        last = subprocess.run(["redis-cli", "-p", str(redis.port), "XREVRANGE", "orb.maestro.sink_status", "+", "-", "COUNT", "1"],
                                              capture_output=True, text=True).stdout.split()
                        last_id = last[0] if last else "0-0"
                        changed = time.time()
                        double_post(port, "/_double/rollout", {"name": collector, "mode": mode})
                        deadline = time.time() + 30
                        seen = None
                        while time.time() < deadline and seen is None:
                            out = subprocess.run(["redis-cli", "-p", str(redis.port), "XREAD", "BLOCK", "1000", "STREAMS",
                                                  "orb.maestro.sink_status", last_id], capture_output=True, text=True).stdout.split("\n")
                            for offset, line in enumerate(out):
                                if line == sink and offset > 0 and out[offset - 1] == "sink_id":
                                    if wanted in out[offset:offset + 4]:
                                        seen = time.time()
                            ids = [line for line in out if re.match(r"^\d+-\d+$", line)]
                            if ids:
                                last_id = ids[-1]
                        if seen is not None:
                            latencies.append(seen - changed)
                latencies.sort()
                p50 = latencies[len(latencies) // 2] if latencies else float("nan")
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
                say(f"  status latency over {len(latencies)} changes: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
                row("P6 status latency, a Deployment's status change to the status event: p50 / p99",
                    f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms", "—", "—", "p99 < 2 s", f"{len(latencies)} changes")
    NOTES.append("P6: the controller's requests are measured with --kube-log-reads-per-second 0; exporter-log reads add that many "
                 "GETs a second (default 2), whatever the fleet's size. The leader's Lease renewals (a PUT every few seconds) are counted in "
                 "the steady state, not as writes of a restart.")

    # Peak RSS with a large fleet cached.
    if not QUICK and "memory" in parts:
        fleet = 10_000
        with Cluster(resync="5m") as cluster:
            started = time.time()
            create(cluster.redis, cluster.grpc_port, "m-", fleet)
            converged = wait_active(cluster.redis, fleet, 1_800)
            say(f"  {fleet} collectors {'active' if converged else 'NOT all active'} in {time.time() - started:.0f} s")
            rss = peak_rss_mib(cluster.maestro.pid)
            row(f"P6 peak RSS with {fleet:,} collectors cached (maestro run)", f"{rss:.1f} MiB", "—", "—", "≤ 96 MiB",
                "1 run" if converged else "1 run, not all active")

    for fleet in fleets if "fleets" in parts else ():
        row(f"P6 first sync, {fleet:,} collectors: API requests per collector", f"{first_sync[fleet]:.2f}", "6.04 per resync before the caches",
            "—", "≤ 3.5", "1 run")
        row(f"P6 steady state, {fleet:,} collectors: requests per collector per resync interval", f"{steady[fleet]:.3f}",
            "6.04 (maestro before the caches, measured at 200)", f"{steady[fleet] / 6.04:.1%}", "≤ 0.05, flat in the fleet size", "1 run")

    # 1,000 collectors with 20% of requests failing.
    fleet = 100 if QUICK else 1_000
    if "faults" not in parts:
        return
    with Cluster() as cluster:
        double_post(cluster.port, "/_double/faults", {"error500": 0.2})
        started = time.time()
        create(cluster.redis, cluster.grpc_port, "f-", fleet)
        converged = wait_active(cluster.redis, fleet, 600)
        took = time.time() - started
        say(f"  {fleet} collectors with 20% faults: {'converged' if converged else 'NOT converged'} in {took:.1f} s")
        row(f"P6 {fleet:,} collectors converged with 20% of requests failing", f"{took:.1f} s" if converged else "not converged", "—", "—",
            "every collector active", "1 run")


def waves(Cluster, double_post, writes_served, create, wait_active):
    """A template change reaching a fleet in waves (canary, gate, at most --rollout-max-unavailable rolling),
    against the double with a per-request latency and maestro's --kube-qps: the time against the bound the
    QPS sets (the writes the change needs / QPS), and the most Deployments rolling at once, as the double
    counts them."""
    fleet = 100 if QUICK else 1_000
    qps, latency, max_unavailable = 20, 0.02, 200
    say(f"\n== P7 a template change to {fleet:,} collectors in waves (--kube-qps {qps}, {latency * 1000:.0f} ms a request, "
        f"--rollout-max-unavailable {max_unavailable})")
    templates_copy = os.path.join(WORK, "wave-templates")
    shutil.rmtree(templates_copy, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "templates"), templates_copy)
    extra = ("--templates-dir", templates_copy, "--reload-interval", "1s", "--rollout-max-unavailable", str(max_unavailable))
    with Cluster(resync="5m", kube_qps=str(qps), extra=extra) as cluster:
        create(cluster.redis, cluster.grpc_port, "w-", fleet)
        if not wait_active(cluster.redis, fleet, 120 + fleet):
            sys.exit(f"P7: {fleet} collectors did not become active")
        double_post(cluster.port, "/_double/faults", {"latency_seconds": latency})
        settle_by = time.time() + 120
        while double_post(cluster.port, "/_double/stats").get("rolling", 0) and time.time() < settle_by:
            time.sleep(0.5)
        double_post(cluster.port, "/_double/reset-stats")
        writes_before = writes_served(cluster.port)
        source = os.path.join(templates_copy, "otel-collector.lua")
        text = open(source).read()
        open(source, "w").write(text.replace("opentelemetry-collector-contrib:0.91.0", "opentelemetry-collector-contrib:0.92.0"))
        changed = time.time()
        state = {}
        deadline = changed + 600 + fleet
        while time.time() < deadline:
            raw = subprocess.run(["redis-cli", "-p", str(cluster.redis.port), "GET", "maestro:fleet-rollout"], capture_output=True, text=True).stdout
            state = json.loads(raw) if raw.strip() else {}
            if state.get("phase") in ("completed", "halted"):
                break
            time.sleep(0.2)
        took = time.time() - changed
        writes = writes_served(cluster.port) - writes_before
        stats = double_post(cluster.port, "/_double/stats")
        healthy = sum(1 for entry in state.get("reached", {}).values() if entry.get("outcome") == "healthy")
        bound = writes / qps
        say(f"  {state.get('phase', 'no rollout')}: {healthy} healthy in {took:.1f} s over {state.get('waves', 0)} waves; {writes} writes, "
            f"bound {bound:.1f} s at {qps}/s; at most {stats.get('max_rolling')} Deployments rolling at once")
        row(f"P7 a template change reaching {fleet:,} collectors in waves (--kube-qps {qps}, {latency * 1000:.0f} ms a request)",
            f"{took:.1f} s, {state.get('waves', 0)} waves", f"{bound:.1f} s ({writes} writes at {qps}/s)", f"{bound / took:.0%} of the bound",
            "within 10% of the bound", "1 run")
        row(f"P7 most Deployments rolling at once (--rollout-max-unavailable {max_unavailable})", f"{stats.get('max_rolling')}", "—", "—",
            f"≤ {max_unavailable}", "1 run")


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()
    return f"{CORES} cores ({model}), {platform.system()} {platform.release()}, {swift[0] if swift else 'swift ?'}"


def write_report(started):
    header = "| figure | maestro | alternative | ratio | target | maestro's runs |\n|---|---|---|---|---|---|\n"
    table = header + "".join(f"| {' | '.join(cells)} |\n" for cells in ROWS)
    say("\n" + table)
    with open(os.path.join(ROOT, "BENCHMARKS.md.figures"), "w") as handle:
        handle.write(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} on {machine()}; "
                     f"medians of {RUNS} runs{' (BENCH_QUICK: small workloads)' if QUICK else ''}.\n\n")
        handle.write(table)
        if NOTES:
            handle.write("\n" + "\n".join(f"- {note}" for note in NOTES) + "\n")
    # BENCHMARKS.md keeps its hand-written parts; the figures go between the markers.
    path = os.path.join(ROOT, "BENCHMARKS.md")
    figures = open(os.path.join(ROOT, "BENCHMARKS.md.figures")).read()
    os.remove(os.path.join(ROOT, "BENCHMARKS.md.figures"))
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n<!-- figures -->\n<!-- /figures -->\n"
    text = re.sub(r"<!-- figures -->.*<!-- /figures -->", lambda _: f"<!-- figures -->\n{figures}<!-- /figures -->", text, flags=re.S)
    with open(path, "w") as handle:
        handle.write(text)
    say(f"wrote {os.path.relpath(path)}")


def main():
    started = time.time()
    chosen = sys.argv[1:] or ["pipeline", "tracing", "templates", "apply", "memory", "grpc", "controller"]
    steps = {"pipeline": pipeline, "tracing": tracing, "templates": templates, "apply": apply, "memory": memory_and_start, "grpc": grpc, "controller": controller}
    try:
        for name in chosen:
            steps[name]()
        write_report(started)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


main()

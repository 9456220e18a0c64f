"""maestro under faults (run by scripts/chaos; not part of the test suite — each scenario has a short
version there). A real redis-server with AOF, the Kubernetes API double failing 20% of calls (500,
429 with Retry-After, connection resets, 2 s delays), and two `maestro run` processes in one consumer
group, while EVENTS sink events (creates, updates, removes, 5% malformed) are written:

- a maestro is killed with SIGKILL at random moments and restarted (at least KILLS times);
- a maestro is paused with SIGSTOP for longer than --min-idle, then resumed with SIGCONT (twice);
- redis-server is restarted twice with SIGTERM (appendfsync everysec) and once with SIGKILL under
  appendfsync always;
- at three quarters, removes of live sinks are written, redis-server is restarted, and the same sinks
  are created again (the sequence that once lost collectors with two replicas).

Then the faults stop and the state is compared with the state **expected from the events written**
(computed here, not by maestro): every live sink's config has the endpoint and password of its last
event, its record names that event and is live, it has a desired state and a Secret, Service and
Deployment holding that config; a removed sink has a tombstone naming its removal and nothing else;
exactly the malformed entries are dead-lettered; nothing is pending; no invariant repair was needed.
Exit code 1 on any difference.

Environment: CHAOS_EVENTS (10000), CHAOS_KILLS (10), CHAOS_SINKS (1500), CHAOS_SEED.
"""
import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAESTRO = os.environ.get("MAESTRO", os.path.join(ROOT, ".build", "release", "maestro"))
EVENTS = int(os.environ.get("CHAOS_EVENTS", "10000"))
KILLS = int(os.environ.get("CHAOS_KILLS", "10"))
SINKS = int(os.environ.get("CHAOS_SINKS", "1500"))
SEED = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
WORK = tempfile.mkdtemp(prefix="maestro-chaos-")
NAMESPACE = "otelcollectors"
random.seed(SEED)


def say(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RESP:
    """A minimal Redis client (binary-safe, values with line breaks): one command, one reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.reader = self.sock.makefile("rb")

    def command(self, *arguments):
        payload = [f"*{len(arguments)}\r\n".encode()]
        for argument in arguments:
            data = argument if isinstance(argument, bytes) else str(argument).encode()
            payload.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
        self.sock.sendall(b"".join(payload))
        return self.reply()

    def reply(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.reader.read(length + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def close(self):
        self.sock.close()


class Redis:
    """redis-server with AOF in a folder of its own, restartable on the same port."""

    def __init__(self, name):
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                         "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
                                        stdout=open(os.path.join(self.dir, "redis.log"), "a"), stderr=subprocess.STDOUT)
        for _ in range(500):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.02)
        sys.exit("redis-server did not start")

    def cli(self, *arguments):
        result = subprocess.run(["redis-cli", "-p", str(self.port), *arguments], capture_output=True, text=True)
        return result.stdout.strip()

    def call(self, *arguments):
        client = RESP(self.port)
        try:
            return client.command(*arguments)
        finally:
            client.close()

    def restart(self, hard):
        if hard:
            self.cli("CONFIG", "SET", "appendfsync", "always")
            time.sleep(0.2)
            self.process.send_signal(signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait()
        time.sleep(0.5)
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        self.process.terminate()
        self.process.wait()


class Double:
    def __init__(self, name):
        self.log = os.path.join(WORK, f"{name}.log")
        self.process = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests", "Support", "kube_api_double.py"), "--namespace", NAMESPACE],
                                        stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        for _ in range(200):
            match = re.search(r"^PORT (\d+)", open(self.log).read(), re.M)
            if match:
                self.port = int(match.group(1))
                break
            time.sleep(0.05)
        else:
            sys.exit("the API double did not start")
        self.kubeconfig = os.path.join(WORK, f"{name}.kubeconfig")
        with open(self.kubeconfig, "w") as handle:
            handle.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: d, cluster: {{server: "http://127.0.0.1:{self.port}"}}}}]
users: [{{name: u, user: {{token: chaos}}}}]
contexts: [{{name: c, context: {{cluster: d, user: u, namespace: {NAMESPACE}}}}}]
current-context: c
""")

    def control(self, path, body):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def faults(self, share):
        quarter = share / 4
        self.control("/_double/faults", {"error500": quarter, "error429": quarter, "reset": quarter, "delay": quarter,
                                         "delay_seconds": 2, "retry_after": 1})

    def items(self):
        """kind plural/name → the object as the API double holds it, for the kinds a collector has."""
        result = {}
        for group, plural in (("/api/v1", "secrets"), ("/api/v1", "services"), ("/apis/apps/v1", "deployments")):
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}{group}/namespaces/{NAMESPACE}/{plural}",
                                             headers={"X-Double-Control": "1"})
            with urllib.request.urlopen(request, timeout=30) as response:
                for item in json.loads(response.read())["items"]:
                    result[f"{plural}/{item['metadata']['name']}"] = item
        return result

    def stop(self):
        self.process.terminate()
        self.process.wait()


class Maestro:
    def __init__(self, name, redis, double, extra=()):
        self.name, self.redis, self.double, self.extra = name, redis, double, list(extra)
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [MAESTRO, "run", "--redis-url", self.redis.url, "--kube-backend", "kubernetes", "--kubeconfig", self.double.kubeconfig,
             "--plugins-dir", os.path.join(ROOT, "plugins"), "--templates-dir", os.path.join(ROOT, "templates"),
             "--consumer-name", self.name, "--workers", "2", "--min-idle", "3s", "--max-deliveries", "5", "--resync-interval", "15s",
             "--orphan-grace", "60s", "--log-level", "warning",
             # 1,000 made-up exporter hosts: this machine has no DNS for them (each lookup would wait).
             "--collector-endpoint-resolution", "off", *self.extra],
            stdout=open(os.path.join(WORK, f"maestro-{self.name}.log"), "a"), stderr=subprocess.STDOUT, cwd=ROOT)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def pause(self, seconds):
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.process.send_signal(signal.SIGCONT)

    def invariant_repairs(self):
        """Repairs of the desired-state invariant this maestro logged, over all its restarts."""
        with open(os.path.join(WORK, f"maestro-{self.name}.log")) as handle:
            return sum(1 for line in handle if "repaired a breach of the desired-state invariant" in line)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()


def make_events():
    """(fields) of EVENTS sink events: each sink created first, then updates and removes; 5% malformed."""
    events = []
    created = set()
    removed = set()
    for index in range(EVENTS):
        roll = random.random()
        if roll < 0.05:
            events.append(random.choice([
                {"operation": "sinks.create", "owner_id": "o", "backend": "prometheus"},                      # no sink_id
                {"operation": "sinks.create", "sink_id": f"bad-{index}", "owner_id": "o", "backend": "prometheus", "config": "{not json"},
                {"operation": "sinks.explode", "sink_id": f"bad-{index}", "owner_id": "o"},
            ]))
            continue
        sink = f"chaos-{random.randrange(SINKS)}"
        host = f"https://prom-{random.randrange(1000)}.example.com/api/v1/write"
        config = json.dumps({"exporter": {"remote_host": host},
                             "authentication": {"type": "basicauth", "username": "u", "password": f"p{random.randrange(100)}"}})
        if sink not in created or sink in removed:
            operation = "sinks.create"
            created.add(sink)
            removed.discard(sink)
        elif roll < 0.20:
            operation = "sinks.remove"
            removed.add(sink)
        else:
            operation = "sinks.update"
        fields = {"operation": operation, "sink_id": sink, "owner_id": f"owner-{hash(sink) % 7}", "timestamp": "1700000000"}
        if operation != "sinks.remove":
            fields["backend"] = "prometheus"
            fields["config"] = config
        events.append(fields)
    return events


def write_events(redis, events, done, restart_between):
    """XADD with explicit ids, so a retry after a lost reply is recognised instead of duplicating. At
    three quarters: removes of up to 30 live sinks, a redis-server restart (`restart_between`), and
    creates of the same sinks. `done["written"]` gets (entry id, fields) of every entry written."""
    base = int(time.time() * 1000)
    written = []
    sequence = 0

    def write(fields):
        nonlocal sequence
        sequence += 1
        entry_id = f"{base}-{sequence}"
        arguments = ["XADD", "orb.sinks", entry_id]
        for key, value in fields.items():
            arguments += [key, value]
        while True:
            try:
                redis.call(*arguments)
                break
            except RuntimeError as error:
                if "equal or smaller" in str(error):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        written.append((entry_id, fields))

    live = {}
    for index, fields in enumerate(events):
        if index == (3 * len(events)) // 4:
            again = sorted(live)[:30]
            for sink in again:
                write({"operation": "sinks.remove", "sink_id": sink, "owner_id": live[sink]["owner_id"], "timestamp": "1700000000"})
            restart_between()
            for sink in again:
                write(live[sink])
        write(fields)
        if fields.get("operation") == "sinks.remove":
            live.pop(fields.get("sink_id"), None)
        elif fields.get("operation") in ("sinks.create", "sinks.update") and is_well_formed(fields):
            live[fields["sink_id"]] = {**fields, "operation": "sinks.create"}
        if index % 50 == 49:
            time.sleep(0.25)
    done["written"] = written


def is_well_formed(fields):
    if not fields.get("sink_id") or fields.get("operation") not in ("sinks.create", "sinks.update", "sinks.remove"):
        return False
    if fields["operation"] == "sinks.remove":
        return True
    try:
        return isinstance(json.loads(fields.get("config", "")), dict)
    except ValueError:
        return False


def expected_state(written):
    """From the entries written, in order: the last event of every sink, which sinks are live, and the
    entries that must be dead-lettered."""
    last, live, malformed = {}, {}, set()
    for entry_id, fields in written:
        if not is_well_formed(fields):
            malformed.add(entry_id)
            continue
        sink = fields["sink_id"]
        last[sink] = entry_id
        if fields["operation"] == "sinks.remove":
            live.pop(sink, None)
        else:
            config = json.loads(fields["config"])
            live[sink] = {"host": config["exporter"]["remote_host"], "password": config["authentication"]["password"]}
    return last, live, malformed


def strings_in(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


def compare(redis, double, written):
    """Differences between what maestro left and what the events written imply: a list of lines."""
    last, live, malformed = expected_state(written)

    def hash_of(key):
        flat = redis.call("HGETALL", key)
        return dict(zip(flat[0::2], flat[1::2]))

    configs, records, desired = hash_of("orb.sinker.otelConfigYaml"), hash_of("orb.sinker.sinks"), hash_of("orb.maestro.otelCollector")
    items = double.items()
    problems = []
    for sink in sorted(set(configs) - set(live)):
        problems.append(f"config of a sink that is not live: {sink}")
    for sink in sorted(set(desired) - set(live)):
        problems.append(f"desired state of a sink that is not live: {sink}")
    expected_objects = {f"{plural}/otel-{sink}" for sink in live for plural in ("secrets", "services", "deployments")}
    for name in sorted(set(items) - expected_objects):
        problems.append(f"object of a sink that is not live: {name}")
    for sink, entry_id in sorted(last.items()):
        record = json.loads(records.get(sink, "null") or "null")
        if record is None or record.get("last_entry_id") != entry_id or bool(record.get("removed")) != (sink not in live):
            problems.append(f"record of {sink} is {record}, expected last entry {entry_id}, removed {sink not in live}")
    for sink, expected in sorted(live.items()):
        config = configs.get(sink)
        if config is None:
            problems.append(f"live sink without config: {sink}")
            continue
        values = set(strings_in(yaml.safe_load(config)))
        if expected["host"] not in values or expected["password"] not in values:
            problems.append(f"config of {sink} is not its last event's")
        if sink not in desired:
            problems.append(f"live sink without desired state: {sink}")
        secret = items.get(f"secrets/otel-{sink}")
        stored = secret and base64.b64decode(secret.get("data", {}).get("config.yaml", "")).decode()
        if stored != config:
            problems.append(f"the Secret of {sink} does not hold its config" if secret else f"live sink without Secret: {sink}")
        for plural in ("services", "deployments"):
            if f"{plural}/otel-{sink}" not in items:
                problems.append(f"live sink without {plural[:-1]}: {sink}")
    letters = [dict(zip(fields[0::2], fields[1::2])).get("id") for _, fields in redis.call("XRANGE", "orb.maestro.deadletter", "-", "+")]
    for entry_id in sorted(set(letters) - malformed):
        problems.append(f"dead-lettered but well-formed: {entry_id}")
    for entry_id in sorted(malformed - set(letters)):
        problems.append(f"malformed but not dead-lettered: {entry_id}")
    return problems, len(letters) - len(set(letters)), len(live)


def pending_and_lag(redis):
    for group in redis.call("XINFO", "GROUPS", "orb.sinks"):
        info = dict(zip(group[0::2], group[1::2]))
        if info["name"] == "orb.sinker":
            return info["pending"], info["lag"]
    return None, None


def wait_converged(redis, double, written, timeout):
    """Seconds until nothing is pending and the state is the expected one (None if never within timeout)."""
    started = time.time()
    while time.time() - started < timeout:
        try:
            pending, lag = pending_and_lag(redis)
            if pending == 0 and lag == 0 and not compare(redis, double, written)[0]:
                return time.time() - started
        except Exception:  # noqa: BLE001 - Redis may still be loading
            pass
        time.sleep(1)
    return None


def main():
    say(f"chaos: {EVENTS} events over {SINKS} sinks, at least {KILLS} SIGKILLs, seed {SEED}; work in {WORK}")
    redis = Redis("redis")
    double = Double("double")
    double.faults(0.20)
    maestros = [Maestro("chaos-a", redis, double), Maestro("chaos-b", redis, double)]
    events = make_events()
    done = {}
    restarts = []
    restart_lock = threading.Lock()

    def restart_redis(kind):
        with restart_lock:
            redis.restart(hard=(kind == "hard"))
            restarts.append(kind)
            say(f"redis-server restarted ({'SIGKILL, appendfsync always' if kind == 'hard' else 'SIGTERM, appendfsync everysec'})")
            if kind == "hard":
                redis.cli("CONFIG", "SET", "appendfsync", "everysec")

    writer = threading.Thread(target=write_events, args=(redis, events, done, lambda: restart_redis("soft, between removes and creates")))
    writer.start()

    kills = 0
    pauses = 0
    plan = ["soft", "soft", "hard"]
    while writer.is_alive() or kills < KILLS or plan:
        time.sleep(random.uniform(1.0, 3.0))
        if kills < KILLS or random.random() < 0.5:
            victim = random.choice(maestros)
            victim.kill()
            victim.start()
            kills += 1
            say(f"SIGKILL {victim.name} and restarted ({kills})")
        if pauses < 2 and random.random() < 0.2:
            victim = random.choice(maestros)
            say(f"SIGSTOP {victim.name} for 5 s (min-idle is 3 s), then SIGCONT")
            victim.pause(5)
            pauses += 1
        if plan and random.random() < 0.3:
            restart_redis(plan.pop(0))
    writer.join()
    written = done.get("written", [])
    say(f"{len(written)} events written; API faults off, waiting for convergence")
    double.faults(0.0)
    took = wait_converged(redis, double, written, timeout=600)
    if took is None:
        say("did not converge within 10 minutes")
    # One full resync after convergence, so the invariant check has looked at every sink.
    time.sleep(20)
    repairs = [maestro.invariant_repairs() for maestro in maestros]
    problems, repeated_letters, live = compare(redis, double, written)
    pending, lag = pending_and_lag(redis)
    lost = (pending or 0) + (lag or 0)
    for maestro in maestros:
        maestro.stop()

    print()
    print(f"seed                              {SEED}")
    print(f"events written                    {len(written)}")
    print(f"sinks live at the end             {live}")
    print(f"maestro SIGKILLs / SIGSTOPs       {kills} / {pauses}")
    print(f"redis-server restarts             {', '.join(restarts)}")
    print(f"lost (pending or unread)          {lost}")
    print(f"differences from the expected     {len(problems)}")
    for problem in problems[:40]:
        print(f"  - {problem}")
    print(f"invariant repairs (per maestro)   {repairs}")
    print(f"dead letters repeated (reported)  {repeated_letters}")
    print(f"converged after the last fault    {took:.1f} s" if took is not None else "converged after the last fault    never")
    failed = lost or problems or took is None or any(count != 0 for count in repairs)
    for process in (redis, double):
        process.stop()
    if failed:
        print(f"CHAOS FAILED (logs kept in {WORK})")
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("CHAOS PASSED")

main()

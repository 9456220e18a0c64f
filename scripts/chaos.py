"""maestro under faults (run by scripts/chaos; not part of the test suite — each scenario has a short
version there). A real redis-server with AOF, the Kubernetes API double failing 20% of calls (500,
429 with Retry-After, connection resets, 2 s delays), and two `maestro run` processes in one consumer
group, while EVENTS sink events (creates, updates, removes, 5% malformed) are written:

- a maestro is killed with SIGKILL at random moments and restarted (at least KILLS times);
- redis-server is restarted twice with SIGTERM (appendfsync everysec) and once with SIGKILL under
  appendfsync always.

Then the faults stop, and the state (both hashes, the objects on the double, the dead-letter stream) is
compared with a clean sequential replay of the same stream by one maestro against a fresh Redis and a
fresh double. Prints events written, handled, dead-lettered, lost (must be 0), duplicated objects
(must be 0), objects wrong (must be 0), repeated dead letters (reported), and the time to converge
after the last fault. Exit code 1 if lost, duplicated or wrong is not 0.

Environment: CHAOS_EVENTS (10000), CHAOS_KILLS (10), CHAOS_SINKS (1500), CHAOS_SEED.
"""
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

    def objects(self):
        """name → comparable content, for the kinds a collector has."""
        result = {}
        for group, plural in (("/api/v1", "secrets"), ("/api/v1", "services"), ("/apis/apps/v1", "deployments")):
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}{group}/namespaces/{NAMESPACE}/{plural}",
                                             headers={"X-Double-Control": "1"})
            with urllib.request.urlopen(request, timeout=30) as response:
                for item in json.loads(response.read())["items"]:
                    metadata = item.get("metadata", {})
                    comparable = {key: value for key, value in item.items() if key not in ("metadata", "status")}
                    comparable["labels"] = metadata.get("labels")
                    comparable["annotations"] = metadata.get("annotations")
                    result[f"{plural}/{metadata['name']}"] = json.dumps(comparable, sort_keys=True)
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
             "--orphan-grace", "60s", "--log-level", "warning", *self.extra],
            stdout=open(os.path.join(WORK, f"maestro-{self.name}.log"), "a"), stderr=subprocess.STDOUT, cwd=ROOT)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

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


def write_events(redis, events, done):
    """XADD with explicit ids, so a retry after a lost reply is recognised instead of duplicating."""
    base = int(time.time() * 1000)
    written = 0
    for index, fields in enumerate(events):
        entry_id = f"{base}-{index + 1}"
        arguments = ["XADD", "orb.sinks", entry_id]
        for key, value in fields.items():
            arguments += [key, value]
        while True:
            try:
                redis.call(*arguments)
                written += 1
                break
            except RuntimeError as error:
                if "equal or smaller" in str(error):
                    written += 1
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if index % 50 == 49:
            time.sleep(0.25)
    done["written"] = written


def pending_and_lag(redis):
    for group in redis.call("XINFO", "GROUPS", "orb.sinks"):
        info = dict(zip(group[0::2], group[1::2]))
        if info["name"] == "orb.sinker":
            return info["pending"], info["lag"]
    return None, None


def converged(redis, double):
    pending, lag = pending_and_lag(redis)
    if pending != 0 or lag != 0:
        return False
    desired = set(redis.call("HKEYS", "orb.maestro.otelCollector"))
    names = {name.split("/", 1)[1] for name in double.objects()}
    wanted = {"otel-" + sink for sink in desired}
    return wanted == names


def state(redis, double):
    def hash_of(key):
        flat = redis.call("HGETALL", key)
        return dict(zip(flat[0::2], flat[1::2]))

    records = {}
    for sink, text in hash_of("orb.sinker.sinks").items():
        record = json.loads(text)
        record.pop("updated_at", None)
        record.pop("updatedAt", None)
        records[sink] = json.dumps(record, sort_keys=True)
    originals = [dict(zip(fields[0::2], fields[1::2])).get("id") for _, fields in redis.call("XRANGE", "orb.maestro.deadletter", "-", "+")]
    return {"configs": hash_of("orb.sinker.otelConfigYaml"), "records": records, "desired": hash_of("orb.maestro.otelCollector"),
            "objects": double.objects(), "dead_letters": originals}


def wait_converged(redis, double, timeout):
    started = time.time()
    while time.time() - started < timeout:
        try:
            if converged(redis, double):
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
    writer = threading.Thread(target=write_events, args=(redis, events, done))
    writer.start()

    kills = 0
    restarts = []
    plan = ["soft", "soft", "hard"]
    while writer.is_alive() or kills < KILLS or plan:
        time.sleep(random.uniform(1.0, 3.0))
        if kills < KILLS or random.random() < 0.5:
            victim = random.choice(maestros)
            victim.kill()
            victim.start()
            kills += 1
            say(f"SIGKILL {victim.name} and restarted ({kills})")
        if plan and random.random() < 0.3:
            kind = plan.pop(0)
            redis.restart(hard=(kind == "hard"))
            restarts.append(kind)
            say(f"redis-server restarted ({'SIGKILL, appendfsync always' if kind == 'hard' else 'SIGTERM, appendfsync everysec'})")
            if kind == "hard":
                redis.cli("CONFIG", "SET", "appendfsync", "everysec")
    writer.join()
    say(f"{done.get('written', 0)} events written; API faults off, waiting for convergence")
    double.faults(0.0)
    took = wait_converged(redis, double, timeout=600)
    if took is None:
        say("did not converge within 10 minutes")
    chaos_state = state(redis, double)
    for maestro in maestros:
        maestro.stop()

    say("clean sequential replay of the same stream: one maestro, one worker, fresh Redis and double")
    replay_redis = Redis("replay-redis")
    replay_double = Double("replay-double")
    entries = redis.call("XRANGE", "orb.sinks", "-", "+")
    for entry_id, fields in entries:
        replay_redis.call("XADD", "orb.sinks", entry_id, *fields)
    replay_redis.call("SET", "maestro:config-hash-key", redis.call("GET", "maestro:config-hash-key"))
    replay = Maestro("replay", replay_redis, replay_double, extra=["--workers", "1"])
    if wait_converged(replay_redis, replay_double, timeout=600) is None:
        say("the replay did not converge within 10 minutes")
    replay_state = state(replay_redis, replay_double)
    replay.stop()

    written = done.get("written", 0)
    pending, lag = pending_and_lag(redis)
    lost = (pending or 0) + (lag or 0)
    configs_wrong = sum(1 for key in set(chaos_state["configs"]) | set(replay_state["configs"])
                        if chaos_state["configs"].get(key) != replay_state["configs"].get(key))
    records_wrong = sum(1 for key in set(chaos_state["records"]) | set(replay_state["records"])
                        if chaos_state["records"].get(key) != replay_state["records"].get(key))
    desired_wrong = sum(1 for key in set(chaos_state["desired"]) | set(replay_state["desired"])
                        if chaos_state["desired"].get(key) != replay_state["desired"].get(key))
    extra_objects = set(chaos_state["objects"]) - set(replay_state["objects"])
    missing_objects = set(replay_state["objects"]) - set(chaos_state["objects"])
    wrong_objects = [name for name in set(chaos_state["objects"]) & set(replay_state["objects"])
                     if chaos_state["objects"][name] != replay_state["objects"][name]]
    chaos_letters, replay_letters = chaos_state["dead_letters"], replay_state["dead_letters"]
    repeated_letters = len(chaos_letters) - len(set(chaos_letters))
    letters_missing = set(replay_letters) - set(chaos_letters)
    letters_extra = set(chaos_letters) - set(replay_letters)

    print()
    print(f"seed                              {SEED}")
    print(f"events written                    {written}")
    print(f"events handled (acknowledged)     {len(entries) - lost}")
    print(f"dead-lettered (distinct entries)  {len(set(chaos_letters))} (the clean replay: {len(set(replay_letters))})")
    print(f"maestro SIGKILLs                  {kills}")
    print(f"redis-server restarts             {', '.join(restarts)}")
    print(f"lost                              {lost}")
    print(f"duplicated objects                {len(extra_objects)}")
    print(f"objects wrong or missing          {len(wrong_objects) + len(missing_objects)}")
    print(f"configs / records / desired wrong {configs_wrong} / {records_wrong} / {desired_wrong}")
    print(f"dead letters repeated (reported)  {repeated_letters}; only in chaos: {len(letters_extra)}; only in replay: {len(letters_missing)}")
    print(f"converged after the last fault    {took:.1f} s" if took is not None else "converged after the last fault    never")
    failed = lost or extra_objects or wrong_objects or missing_objects or configs_wrong or records_wrong or desired_wrong or letters_missing or took is None
    for process in (redis, double, replay_redis, replay_double):
        process.stop()
    if failed:
        print(f"CHAOS FAILED (logs kept in {WORK})")
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("CHAOS PASSED")


main()

#!/usr/bin/env bash
# The webhook ops hook against a local receiver, then against a refused address. Exits non-zero on failure.
source "$(dirname "$0")/../common.sh"
cd "$ROOT"

RECEIVED="$WORK/received.txt"
touch "$RECEIVED"
python3 examples/03-ops-hook/receiver.py "$RECEIVED" >"$WORK/receiver.out" &
PIDS+=($!)
wait_for "the receiver listens" grep -q PORT "$WORK/receiver.out"
RECEIVER_PORT=$(awk '/PORT/ {print $2}' "$WORK/receiver.out")
sed "s/127.0.0.1:18080/127.0.0.1:$RECEIVER_PORT/" examples/03-ops-hook/maestro.yaml >"$WORK/maestro.yaml"
export MAESTRO_MANIFESTS_DIR="$WORK/manifests"

start_maestro --config "$WORK/maestro.yaml"
wait_for "maestro runs" grep -q "maestro running" "$WORK/maestro.log"
echo "== a sink with an invalid remote_host: provisioning_error, and the hook notifies"
"$MAESTRO" sinks create --config "$WORK/maestro.yaml" --sink-id hook-1 --owner tenant-c --backend prometheus \
  --sink-config '{"exporter":{"remote_host":"not a url"},"authentication":{"type":"basicauth","username":"u","password":"p"}}'
wait_for "the webhook received the notification" grep -q '"status":"provisioning_error"' "$RECEIVED"
cat "$RECEIVED"
check "the notification went to the configured path with the configured header" grep -q "^/hooks/maestro example-token " "$RECEIVED"
stop_maestro

echo "== the same hook pointed at the cloud metadata address: refused, dead-lettered, nothing sent"
sed "s|http://127.0.0.1:$RECEIVER_PORT/hooks/maestro|http://169.254.169.254/latest/meta-data|; s/\[127.0.0.1\]/[127.0.0.1, 169.254.169.254]/; s/\[http:127.0.0.1\]/[http:127.0.0.1, http:169.254.169.254]/" \
  "$WORK/maestro.yaml" >"$WORK/metadata.yaml"
start_maestro --config "$WORK/metadata.yaml"
wait_for "maestro runs" grep -q "maestro running" "$WORK/maestro.log"
"$MAESTRO" sinks create --config "$WORK/metadata.yaml" --sink-id hook-2 --owner tenant-c --backend prometheus \
  --sink-config '{"exporter":{"remote_host":"also not a url"},"authentication":{"type":"basicauth","username":"u","password":"p"}}'
wait_for "the hook's call is refused and dead-lettered" \
  sh -c "'$MAESTRO' deadletter list --config '$WORK/metadata.yaml' | grep -q 'refused'"
"$MAESTRO" deadletter list --config "$WORK/metadata.yaml"
check "nothing more reached the receiver" test "$(wc -l <"$RECEIVED")" -eq 1
stop_maestro
echo "ops hook: all steps passed"

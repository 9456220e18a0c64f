#!/usr/bin/env bash
# A new backend as a plugin folder: lint, specs, render, then the real pipeline. Exits non-zero on failure.
source "$(dirname "$0")/../common.sh"
cd "$ROOT"

PLUGINS="$WORK/plugins"
cp -r plugins "$PLUGINS"
cp -r examples/02-custom-backend/otlpgrpc "$PLUGINS/"

echo "== maestro plugins list / lint / test"
"$MAESTRO" plugins list --plugins-dir "$PLUGINS"
check "lint loads every plugin, otlpgrpc included" "$MAESTRO" plugins lint --plugins-dir "$PLUGINS"
"$MAESTRO" plugins test --plugins-dir "$PLUGINS" | tee "$WORK/specs.txt"
check "the otlpgrpc specs ran and passed" grep -q "otlpgrpc/spec/handler_spec.lua" "$WORK/specs.txt"

echo "== maestro render"
CONFIG='{"exporter":{"endpoint":"otlp.example.com:4317","compression":"zstd"},"authentication":{"type":"bearertokenauth","scheme":"Bearer","token":"t0k"}}'
"$MAESTRO" render --plugins-dir "$PLUGINS" --backend otlpgrpc --sink-id grpc-1 --sink-config "$CONFIG" | tee "$WORK/render.txt"
check "render shows the otlp exporter" grep -q "compression: zstd" "$WORK/render.txt"
if "$MAESTRO" render --plugins-dir "$PLUGINS" --backend otlpgrpc --sink-id grpc-1 \
     --sink-config '{"exporter":{"endpoint":"bad endpoint"},"authentication":{"type":"basicauth","username":"u","password":"p"}}' >"$WORK/bad.txt" 2>&1; then
  echo "FAILED: a config breaking the schema was accepted" >&2; exit 1
fi
check "a config breaking the schema names the field" grep -q "exporter.endpoint" "$WORK/bad.txt"

echo "== the pipeline: a sinks.create event for the new backend"
start_maestro --plugins-dir "$PLUGINS" --kube-backend directory --manifests-dir "$WORK/manifests"
"$MAESTRO" sinks create --sink-id grpc-1 --owner tenant-b --backend otlpgrpc --sink-config "$CONFIG"
wait_for "the collector config is stored" sh -c "${REDIS_CLI[*]} HGET orb.sinker.otelConfigYaml grpc-1 | grep -q 'otlp:'"
wait_for "the collector is written" test -f "$WORK/manifests/otelcollectors/otel-grpc-1.yaml"
"$MAESTRO" sinks create --sink-id grpc-2 --owner tenant-b --backend otlpgrpc \
  --sink-config '{"exporter":{"endpoint":"https://otlp.example.com:4317"},"authentication":{"type":"basicauth","username":"u","password":"p"}}'
wait_for "the schema's pattern makes the sink a provisioning_error the user sees" \
  sh -c "'$MAESTRO' status | grep grpc-2 | grep provisioning_error | grep -q 'exporter.endpoint must match the pattern'"
check "nothing was dead-lettered" sh -c "! '$MAESTRO' deadletter list | grep -q grpc-2"
stop_maestro
echo "custom backend: all steps passed"

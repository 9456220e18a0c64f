#!/usr/bin/env bash
# The quickstart, end to end: maestro with a config file, two sinks created from Orb-format events, an
# update, a malformed event dead-lettered, a removal, metrics. Exits non-zero if any step fails.
source "$(dirname "$0")/../common.sh"
cd "$ROOT"

PORT=$(free_port)
export MAESTRO_MANIFESTS_DIR="$WORK/manifests"
start_maestro --config examples/01-quickstart/maestro.yaml --http-listen "127.0.0.1:$PORT"
wait_for "maestro is ready" curl -sf "http://127.0.0.1:$PORT/readyz"
echo "== maestro is ready (log: $WORK/maestro.log)"

echo "== two sinks, as Orb's sinks service writes them to orb.sinks"
"$MAESTRO" sinks create --config examples/01-quickstart/maestro.yaml --sink-id prom-1 --owner tenant-a --backend prometheus \
  --sink-config '{"exporter":{"remote_host":"https://prometheus.example.com/api/v1/write"},"authentication":{"type":"basicauth","username":"grafana","password":"s3cret-pa55"}}'
"$MAESTRO" sinks create --config examples/01-quickstart/maestro.yaml --sink-id otlp-1 --owner tenant-a --backend otlphttp \
  --sink-config '{"exporter":{"endpoint":"https://otlp.example.com"},"authentication":{"type":"bearertokenauth","scheme":"Bearer","token":"t0ken-value"}}'
PROM="$WORK/manifests/otelcollectors/otel-prom-1.yaml"
OTLP="$WORK/manifests/otelcollectors/otel-otlp-1.yaml"
wait_for "the prometheus collector's objects are written" test -f "$PROM"
wait_for "the otlphttp collector's objects are written" test -f "$OTLP"
check "the collector config is stored in orb.sinker.otelConfigYaml" \
  sh -c "${REDIS_CLI[*]} HGET orb.sinker.otelConfigYaml prom-1 | grep -q prometheusremotewrite"
check "the Deployment carries the template value's label" grep -q "team: observability" "$PROM"
check "the credentials are in the Secret only, as stringData" grep -q "stringData" "$PROM"

echo "== an update: new remote_host, new config hash"
BEFORE=$(grep "config-hash" "$PROM")
"$MAESTRO" sinks update --config examples/01-quickstart/maestro.yaml --sink-id prom-1 --owner tenant-a --backend prometheus \
  --sink-config '{"exporter":{"remote_host":"https://prometheus-2.example.com/api/v1/write"},"authentication":{"type":"basicauth","username":"grafana","password":"s3cret-pa55"}}'
wait_for "the config hash changes" sh -c "test \"\$(grep config-hash '$PROM')\" != '$BEFORE'"

echo "== a malformed event goes to the dead-letter stream with its reason"
"${REDIS_CLI[@]}" XADD orb.sinks '*' operation sinks.create owner_id tenant-a backend prometheus >/dev/null
wait_for "the dead letter names the missing field" sh -c "'$MAESTRO' deadletter list --config examples/01-quickstart/maestro.yaml | grep -q 'missing field sink_id'"
"$MAESTRO" deadletter list --config examples/01-quickstart/maestro.yaml

echo "== a removal deletes the collector"
"$MAESTRO" sinks remove --config examples/01-quickstart/maestro.yaml --sink-id otlp-1
wait_for "the otlphttp collector is gone" test ! -f "$OTLP"

echo "== status and metrics"
"$MAESTRO" status --config examples/01-quickstart/maestro.yaml
check "status lists prom-1" sh -c "'$MAESTRO' status --config examples/01-quickstart/maestro.yaml | grep -q prom-1"
check "metrics count the events" sh -c "curl -sf http://127.0.0.1:$PORT/metrics | grep -q maestro_events_total"
check "no credential reached the log" sh -c "! grep -q -e s3cret-pa55 -e t0ken-value '$WORK/maestro.log'"
stop_maestro
echo "quickstart: all steps passed"

#!/usr/bin/env bash
# A user template wrapping the shipped one: render, then the real pipeline. Exits non-zero on failure.
source "$(dirname "$0")/../common.sh"
cd "$ROOT"

TEMPLATES="$WORK/templates"
mkdir -p "$TEMPLATES"
cp templates/otel-collector.lua "$TEMPLATES/otel-collector-base.lua"
cp examples/04-custom-template/templates/otel-collector.lua "$TEMPLATES/"
CONFIG='{"exporter":{"remote_host":"https://prometheus.example.com/api/v1/write"},"authentication":{"type":"basicauth","username":"u","password":"p"}}'

echo "== maestro render --objects with the user template"
"$MAESTRO" render --objects --templates-dir "$TEMPLATES" --config examples/04-custom-template/maestro.yaml \
  --backend prometheus --sink-id tpl-1 --sink-config "$CONFIG" >"$WORK/objects.yaml" 2>"$WORK/render.err"
python3 - "$WORK/objects.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deployment = next(d for d in docs if d["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
names = [c["name"] for c in pod["containers"]]
assert names == ["otel-collector", "log-forwarder"], names
assert pod["containers"][0]["resources"]["limits"]["memory"] == "512Mi", pod["containers"][0]["resources"]
assert pod["nodeSelector"] == {"node-pool": "observability"}, pod.get("nodeSelector")
assert deployment["spec"]["replicas"] == 2
assert "host=fluentd.logging" in pod["containers"][1]["args"]
print("ok: the Deployment has the sidecar, the resources, the nodeSelector and 2 replicas")
PY

echo "== a value the template requires is missing: maestro names it"
sed '/sidecar_destination/d' examples/04-custom-template/maestro.yaml >"$WORK/missing.yaml"
if "$MAESTRO" render --objects --templates-dir "$TEMPLATES" --config "$WORK/missing.yaml" \
     --backend prometheus --sink-id tpl-1 --sink-config "$CONFIG" >"$WORK/missing.txt" 2>&1; then
  echo "FAILED: a missing required value was accepted" >&2; exit 1
fi
check "the error names sidecar_destination" grep -q "sidecar_destination" "$WORK/missing.txt"

echo "== the pipeline with the user template"
export MAESTRO_MANIFESTS_DIR="$WORK/manifests"
start_maestro --config examples/04-custom-template/maestro.yaml --templates-dir "$TEMPLATES"
"$MAESTRO" sinks create --sink-id tpl-1 --owner tenant-d --backend prometheus --sink-config "$CONFIG"
wait_for "the collector is written" test -f "$WORK/manifests/otelcollectors/otel-tpl-1.yaml"
check "the written Deployment has the sidecar" grep -q "name: log-forwarder" "$WORK/manifests/otelcollectors/otel-tpl-1.yaml"
check "and the nodeSelector" grep -q "node-pool: observability" "$WORK/manifests/otelcollectors/otel-tpl-1.yaml"
stop_maestro
echo "custom template: all steps passed"

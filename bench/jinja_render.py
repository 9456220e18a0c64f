"""The Jinja2 side of the template benchmark: renders bench/otel-collector.yaml.j2 for N sinks with the
inputs `maestro bench templates --inputs-out` wrote, and checks that the first sink's objects equal the
Lua template's (`--sample-out`) once parsed.

    jinja_render.py INPUTS.json LUA_SAMPLE.yaml SINKS RUNS

Prints progress, then `RESULT {"renders_per_second": [...]}`.
"""
import json
import os
import sys
import time

import jinja2
import yaml


def collector_name(sink_id):
    return "otel-" + sink_id


def main():
    inputs_path, sample_path, sinks, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(inputs_path) as handle:
        inputs = json.load(handle)
    values = inputs["values"]
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = environment.get_template("otel-collector.yaml.j2")

    def render(index):
        sink_id = f"bench-sink-{index}"
        return template.render(
            collector_name=collector_name(sink_id), sink_id=sink_id, owner_id="bench-owner", config_yaml=inputs["config_yaml"],
            config_hash=f"{index:064x}", namespace=values["namespace"], image=values["image"], replicas=values["replicas"],
            service_type=values["service_type"], resources=values.get("resources"), node_selector=values.get("node_selector"),
            tolerations=values.get("tolerations"), extra_labels=values.get("labels"), extra_annotations=values.get("annotations"))

    with open(sample_path) as handle:
        lua_objects = [o for o in yaml.safe_load_all(handle) if o]
    jinja_objects = [o for o in yaml.safe_load_all(render(0)) if o]
    if lua_objects != jinja_objects:
        sys.exit("the Jinja2 template does not render the same objects as the Lua template:\n"
                 + json.dumps(lua_objects, sort_keys=True) + "\n" + json.dumps(jinja_objects, sort_keys=True))
    print("  Jinja2 renders the same objects as the Lua template (parsed and compared)", flush=True)
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for index in range(sinks):
            render(index)
        rates.append(sinks / (time.perf_counter() - started))
        print(f"  Jinja2: {rates[-1]:.0f} renders/s", flush=True)
    print("RESULT " + json.dumps({"renders_per_second": rates}))


main()

// libyaml's event API needs no shims; this header only exists to give the module a single entry point.
#ifndef MAESTRO_YAML_SHIM_H
#define MAESTRO_YAML_SHIM_H
#include <yaml.h>
#endif

# Shortcuts; the scripts are what the README and CI run.
.PHONY: demo test bench chaos fuzz build setup clean install

# `make install PREFIX=/usr/local`: the binary in $(PREFIX)/bin, the shipped plugins and templates in
# $(PREFIX)/share/maestro, where the installed maestro finds them without flags (<binary>/../share/maestro).
# MAESTRO_BINARY installs an already built binary instead of building a release one.
PREFIX ?= /usr/local
MAESTRO_BINARY ?=

demo:
	scripts/demo

test:
	scripts/test

bench:
	scripts/bench

chaos:
	scripts/chaos

fuzz:
	scripts/fuzz

build: setup
	swift build

setup:
	scripts/setup

clean:
	rm -rf .build

install:
	@if [ -z "$(MAESTRO_BINARY)" ]; then scripts/setup && swift build -c release --product maestro; fi
	$(eval BINARY := $(if $(MAESTRO_BINARY),$(MAESTRO_BINARY),$(shell swift build -c release --show-bin-path)/maestro))
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(PREFIX)/share/maestro"
	install -m 0755 "$(BINARY)" "$(DESTDIR)$(PREFIX)/bin/maestro"
	# The shipped folders are maestro's: replaced whole, so a plugin removed upstream does not linger.
	# Your own plugins belong in a folder of your own (--plugins-dir, or MAESTRO_HOME).
	rm -rf "$(DESTDIR)$(PREFIX)/share/maestro/plugins" "$(DESTDIR)$(PREFIX)/share/maestro/templates"
	cp -R plugins "$(DESTDIR)$(PREFIX)/share/maestro/plugins"
	cp -R templates "$(DESTDIR)$(PREFIX)/share/maestro/templates"
	@echo "installed $(DESTDIR)$(PREFIX)/bin/maestro and $(DESTDIR)$(PREFIX)/share/maestro/{plugins,templates}"

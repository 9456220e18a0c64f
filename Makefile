# Shortcuts; the scripts are what the README and CI run.
.PHONY: demo test bench chaos fuzz build setup clean

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

# Shortcuts; the scripts are what the README and CI run.
.PHONY: demo test bench build setup clean

demo:
	scripts/demo

test:
	scripts/test

bench:
	scripts/bench

build: setup
	swift build

setup:
	scripts/setup

clean:
	rm -rf .build

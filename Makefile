# Shortcuts; the scripts are what the README and CI run.
.PHONY: demo test build setup clean

demo:
	scripts/demo

test:
	scripts/test

build: setup
	swift build

setup:
	scripts/setup

clean:
	rm -rf .build

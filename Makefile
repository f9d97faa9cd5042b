# berth: `make demo` brings up the local environment and shows how to use it;
# `make test` runs everything, integration tests against real servers included.
SHELL := /bin/bash
LOCAL := cluster-setup/local

.PHONY: demo test lint unit bench up down purge

demo: up
	cargo build --release --locked
	@$(LOCAL)/demo

test: lint
	$(LOCAL)/with-env cargo test --all-targets --locked

lint:
	$(LOCAL)/pin-tools --check
	$(LOCAL)/lint-workflows
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

unit:
	cargo test --lib --bins --locked

bench:
	$(LOCAL)/with-env bash -c 'bench/local-environment && bench/deploy && bench/assets && bench/render-cache'

up:
	$(LOCAL)/up

down:
	$(LOCAL)/down

purge:
	$(LOCAL)/down --purge

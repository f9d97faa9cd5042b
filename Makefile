# berth: `make demo` brings up the local environment and shows how to use it;
# `make test` runs everything, integration tests against real servers included.
SHELL := /bin/bash
LOCAL := cluster-setup/local

.PHONY: demo test faults lint unit fuzz bench up down purge dist dist-check

demo: up
	packaging/build-static
	@$(LOCAL)/demo

# Every berth run of the suite is captured (tests/support/capture.rs); the
# canary check then fails if a Secret's value reached any of it. The static
# binary is built first: tests/static_binary.rs runs it in an empty root,
# and berth's image (tests/support/berth_image.rs) is built around it.
# --no-fail-fast: one run reports every failing test binary, not the first.
test: lint
	rm -rf target/tmp/berth-runs target/tmp/faults
	packaging/build-static
	BERTH_STATIC_BINARY=$(CURDIR)/target/x86_64-unknown-linux-gnu/release/berth \
	  $(LOCAL)/with-env cargo test --all-targets --locked --no-fail-fast
	tests/support/canary
	tests/support/fault-report

# The fault suite in full (docs/reliability.md): the tests/faults_*.rs
# scenarios with their full trial counts (`make test` runs them bounded),
# then the table of trials, survived, data lost, leftovers, recovery time.
# Every scenario runs and the table is printed even when one fails; the
# exit status is then cargo's.
faults:
	rm -rf target/tmp/faults
	status=0; \
	  BERTH_FAULTS=full $(LOCAL)/with-env cargo test --locked --no-fail-fast --test 'faults_*' || status=$$?; \
	  tests/support/fault-report; exit $$status

lint:
	$(LOCAL)/pin-tools --check
	$(LOCAL)/lint-workflows
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

unit:
	cargo test --lib --bins --locked

# The property tests of src/properties.rs with many more cases than `cargo test` runs.
fuzz:
	PROPTEST_CASES=20000 cargo test --release --locked --lib properties::

bench:
	$(LOCAL)/with-env bash -c 'bench/local-environment && bench/cli && bench/deploy && bench/charts && bench/assets && bench/render-cache && bench/real-app && bench/rollback && bench/backup'

# The release assets in dist/: the static x86_64 Linux tarball (berth, man
# pages, completions, README, LICENSE), SHA256SUMS, berth.krew.yaml.
dist:
	packaging/dist

# Two `make dist` builds of HEAD in two fresh clones must be byte-identical
# (two full release builds: not part of `make test`).
dist-check:
	packaging/dist-check

up:
	$(LOCAL)/up

down:
	$(LOCAL)/down

purge:
	$(LOCAL)/down --purge

# Portier: the entry points a newcomer uses. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help run test lint build events bench soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## the demo: portier serve --demo (simulated Nexudus and Tapkey on loopback)
	$(CARGO) run -p portier -- serve --demo

test: ## every test; starts and stops the loopback DynamoDB/SQS server (moto, in .venv)
	scripts/test.sh

bench: ## engine benchmarks + a 2 000-webhook burst at 20 calls/s; table of figures vs goals, docs/bench/convergence.svg
	scripts/bench.sh

soak: ## full-size fault injection (300 members) and crash (1 000 webhooks) runs
	PORTIER_SOAK_MEMBERS=300 PORTIER_CRASH_WEBHOOKS=1000 $(CARGO) test --workspace --test fault_injection --test crash -- --nocapture

lint: ## formatting and clippy, as CI checks them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: ## release binaries of portier and the Lambda functions
	$(CARGO) build --release --workspace --bins

events: ## rewrite the sample events in events/ (signed with the demo secret)
	PORTIER_WRITE_EVENTS=1 $(CARGO) test -p portier-testkit --test sample_events

# Portier: the entry points a newcomer uses. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo
# The AWS deployment (docs/deploy.md). Tools come from PyPI into .venv (scripts/tools.sh).
TEMPLATE := infra/template.yaml
STACK ?= portier
REGION ?= $(or $(AWS_REGION),eu-central-1)
VENV := .venv/bin
export SAM_CLI_TELEMETRY := 0

.PHONY: help run test lint build release validate deploy lambda-local events bench soak screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

run: ## the demo: portier serve --demo (simulated Nexudus and Tapkey on loopback)
	$(CARGO) run -p portier --features demo -- serve --demo

test: ## every test; starts and stops the loopback DynamoDB/SQS server (moto, in .venv)
	scripts/test.sh

bench: ## engine benchmarks + a 3 000-webhook burst at 20/10/20 calls/s (Tapkey/Salto KS/Brivo), Nexudus at its limits + a 10 000-person no-change resync; table of figures vs goals, docs/bench/convergence.svg
	scripts/bench.sh

soak: ## full-size runs: fault injection (1 000 members), crash (1 000 webhooks), model-based (5 000 sequences + 100 on Lambda, new seed)
	scripts/soak.sh

lint: ## formatting and clippy, as CI checks them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features portier/demo -- -D warnings
	$(CARGO) clippy -p portier --all-targets -- -D warnings

build: ## arm64 Lambda zips of every function (cargo-lambda), with their sizes
	scripts/lambda-build.sh

release: ## release binary of the portier command for this machine
	$(CARGO) build --release -p portier

validate: ## the template: cfn-lint, sam validate --lint (offline), and its security test
	scripts/tools.sh validate
	$(VENV)/cfn-lint $(TEMPLATE)
	$(VENV)/sam validate --lint --region us-east-1 --template-file $(TEMPLATE)
	$(VENV)/python -m unittest discover -s tests/infra

deploy: validate ## build with SAM and deploy STACK to REGION, TENANTS=a,b (your AWS credentials; docs/deploy.md)
	scripts/tools.sh lambda
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(VENV)/sam build --beta-features --template-file $(TEMPLATE) \
		--build-dir .aws-sam/build
	$(VENV)/sam deploy --template-file .aws-sam/build/template.yaml --stack-name $(STACK) \
		--region $(REGION) --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --resolve-s3 \
		$(if $(wildcard samconfig.toml),,--guided) $(if $(TENANTS),--parameter-overrides TenantIds=$(TENANTS))

lambda-local: ## each function under cargo lambda watch, invoked with events/ (loopback only)
	scripts/lambda-local.sh

screenshots: ## rewrite docs/console/*.png from the console's headless-browser test (needs chromium, chromium-driver)
	PORTIER_SCREENSHOTS=docs/console $(CARGO) test -p portier-testkit --test console_browser

events: ## rewrite the sample events in events/ (signed with the demo secret)
	PORTIER_WRITE_EVENTS=1 $(CARGO) test -p portier-testkit --test sample_events

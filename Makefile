# Entry points named in README.md.
.PHONY: up test unit tools e2e policy-check lint destroy bench bench-changes bench-scale-out

up:            ## bring up the dev stack (Docker) with the Pulumi CLI
	scripts/up.sh

test:          ## the whole test suite, as CI runs it
	scripts/test.sh

unit:          ## fast tests: config, renderers, program under mocks, policy pack, local engine rules
	.venv/bin/pytest -m 'not tools and not e2e and not ssh' tests

tools:         ## rendered files checked by the real tools in the pgha-node image
	.venv/bin/pytest -m tools

e2e:           ## the local engine on Docker, then real clusters: dev on Docker, prod over SSH
	.venv/bin/pytest -m 'e2e or ssh' 

policy-check:  ## offline policy check of the dev and prod stacks (no Pulumi backend needed)
	.venv/bin/python -m policy.offline dev
	.venv/bin/python -m policy.offline prod

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy catalog config render components targets operations policy local_engine clientside bench program.py

destroy:       ## destroy the dev stack
	PATH="$$HOME/.pulumi/bin:$$PATH" PULUMI_CONFIG_PASSPHRASE_FILE=$${PULUMI_CONFIG_PASSPHRASE_FILE:-.pulumi-state/passphrase} pulumi destroy --stack dev --yes

bench:         ## failover benchmark (prints a table; see docs/BENCHMARKS.md)
	.venv/bin/python -m bench.failover

bench-changes: ## each change kind applied to a running dev stack under a writer (table; docs/BENCHMARKS.md)
	.venv/bin/python -m bench.changes

bench-scale-out: ## a PostgreSQL node added from a backup vs the leader, 1 and 5 GiB (SIZES=...; docs/BENCHMARKS.md)
	.venv/bin/python -m bench.scale_out --sizes $(or $(SIZES),1024,5120)

# infra-oca-france: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
# uv from the PATH, or a private copy in .tools/ installed on first use.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
PYINFRA := $(UV) run --locked pyinfra
# Extra pyinfra arguments, e.g. PYINFRA_ARGS="-vv --data odoo_workers=4"
PYINFRA_ARGS ?=
DEPLOY := inventory.py deploy.py
SANDBOX := bash tests/sandbox/sandbox.sh
SANDBOX_ENV := /var/lib/oca-france-sandbox/env
# Sandbox-only group data (the wkhtmltopdf .deb of the Debian 13 host), see tests/sandbox.
SANDBOX_GROUP_DATA := /var/lib/oca-france-sandbox/group_data
# Where the sandbox's Odoo comes from: a source tarball (default: ../shared/odoo's) or
# git+https://github.com/OCA/OCB@18.0 (see tests/sandbox/sandbox.sh).
ifdef ODOO_SOURCE
export ODOO_SOURCE
endif
# System packages a target needs: installed when missing (root), else the command to run.
DEPS := bash tests/system-deps.sh

.PHONY: help setup apply-recette apply-prod apply-backup diff-recette diff-prod diff-backup recover-prod status alert-test lint test test-unit \
	sandbox sandbox-down bench

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv==$(UV_VERSION)

setup: ## Install the system packages, uv (if missing) and the locked Python dependencies
	$(DEPS) setup
	$(MAKE) --no-print-directory $(UV)
	$(UV) sync --locked

apply-recette: setup ## Apply the configuration to recette
	$(PYINFRA) -y $(DEPLOY) --limit recette $(PYINFRA_ARGS)

# RECOVERING=1: an apply for a recovery (README, Recovery from bare): the service and the timers
# acting on its data left off until make recover-prod has put the data in place.
apply-prod: setup ## Apply the configuration to prod (asks first; YES=1 skips the question; RECOVERING=1 before recover-prod)
	@if [[ -n "$${RECOVERING:-}" && "$${RECOVERING}" != 1 ]]; then \
		echo "RECOVERING is 1 (an apply for a recovery) or unset, not '$${RECOVERING}': nothing done"; exit 1; \
	fi
	@if [[ "$${YES:-}" != 1 ]]; then \
		read -r -p "Apply to PRODUCTION (oca-france-prod)? Type 'yes': " answer; \
		[[ "$$answer" == yes ]] || { echo "Aborted."; exit 1; }; \
	fi
	$(PYINFRA) -y $(DEPLOY) --limit prod $(if $(RECOVERING),--data recovering=true) $(PYINFRA_ARGS)

apply-backup: setup ## Apply the configuration to the off-site backup host
	$(PYINFRA) -y $(DEPLOY) --limit backup $(PYINFRA_ARGS)

diff-recette: setup ## Dry run on recette: show what would change (changes nothing)
	$(PYINFRA) --dry --diff $(DEPLOY) --limit recette $(PYINFRA_ARGS)

diff-prod: setup ## Dry run on prod: show what would change (changes nothing)
	$(PYINFRA) --dry --diff $(DEPLOY) --limit prod $(PYINFRA_ARGS)

# Rebuilding prod from the backup host (README, Recovery from bare): after `make apply-prod
# RECOVERING=1` on the new host, the archive restored through the deploy (--recover), which
# starts the service; then the closing apply turns on what RECOVERING left off.
recover-prod: setup ## Restore prod's data from the backup host: ARCHIVE=<name> (default: the newest); asks first
	@if [[ ! "$${ARCHIVE:-}" =~ ^[A-Za-z0-9._-]*$$ ]]; then \
		echo "ARCHIVE must be an archive's name (letters, digits, . _ -): nothing done"; exit 1; \
	fi
	@if [[ "$${YES:-}" != 1 ]]; then \
		read -r -p "Replace PRODUCTION's data with $${ARCHIVE:-the newest archive}? Type 'yes': " answer; \
		[[ "$$answer" == yes ]] || { echo "Aborted."; exit 1; }; \
	fi
	$(PYINFRA) -y inventory.py --limit prod exec --sudo --sudo-user odoo $(PYINFRA_ARGS) -- \
		/opt/oca-france/bin/odoo-offsite-recover $${ARCHIVE:-}
	@echo "Recovered: the closing apply enables the service and the backup and check timers"
	$(PYINFRA) -y $(DEPLOY) --limit prod $(PYINFRA_ARGS)

# make status prints the hosts' own lines only: a host that did not answer gets one line
# saying why (pyinfra's own), and any flag makes it exit 1.
STATUS_FILTER := awk ' \
	/^\[[^]]+\]/ { print; host = substr($$1, 2, length($$1) - 2); answered[host] = 1; \
		if ($$0 ~ /ATTENTION:/) flagged = 1; next } \
	/^ +\[[^]]+\]/ { host = $$1; gsub(/[][]/, "", host); seen[host] = 1; line = $$0; \
		sub(/^ *\[[^]]+\] */, "", line); \
		if (line !~ /^(Connected|Ready: shell|Success|Error: executed 0 commands)$$/) why[host] = line } \
	END { for (host in seen) if (!(host in answered)) { flagged = 1; \
		printf "[%s] ATTENTION:        no status from this host: %s\n", host, why[host] } \
		exit flagged }'

diff-backup: setup ## Dry run on the backup host: show what would change (changes nothing)
	$(PYINFRA) --dry --diff $(DEPLOY) --limit backup $(PYINFRA_ARGS)

status: setup ## Each host: commit, service, health, backups, disks, last alert; a flag exits 1
	@{ $(PYINFRA) -y inventory.py exec --sudo $(PYINFRA_ARGS) -- \
		/opt/oca-france/bin/odoo-status 2>&1 || true; } | $(STATUS_FILTER)

alert-test: setup ## Send a test alert from each host through every channel set (no secret needed)
	$(PYINFRA) -y inventory.py exec --sudo $(PYINFRA_ARGS) -- \
		/opt/oca-france/bin/odoo-notify --test

lint: setup ## ruff, shellcheck and bash -n on the scripts
	$(DEPS) lint
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked pytest -q tests/test_static.py -k "shellcheck or bash_syntax"

test-unit: setup ## The fast layer alone: static checks and the host programs' unit tests (no root)
	$(DEPS) lint
	$(UV) run --locked pytest -q tests/test_static.py tests/unit

test: setup ## All tests: static checks, unit tests, then the end-to-end suite on the sandbox (root)
	$(DEPS) test
	$(UV) run --locked pytest -v --durations=30

sandbox: setup ## Boot the local sandbox containers (root) and apply deploy.py to each
	$(DEPS) sandbox
	$(SANDBOX) up
	set -a && source $(SANDBOX_ENV) && set +a && \
		$(PYINFRA) -y $(DEPLOY) --group-data $(SANDBOX_GROUP_DATA) $(PYINFRA_ARGS)
	$(SANDBOX) info

sandbox-down: ## Tear the sandbox down (containers, network namespaces, nftables table)
	$(SANDBOX) down

bench: setup ## Print figures: rootfs, applies, backups and deploys on generated data, suite
	$(DEPS) bench
	$(UV) run --locked python tests/benchmark.py $(ARGS)

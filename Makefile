# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
STAMP_NFT := $(VENV)/.installed-nft
STAMP_DNS := $(VENV)/.installed-dnsmasq

.PHONY: run test lint typecheck docs unit bench bench-erlang clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[fast]'
	touch $@

$(STAMP_TEST): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(STAMP_RUN)

# nft, for the network-partition test (root; without it that test skips, saying why)
$(STAMP_NFT): | $(BIN)/python
	command -v nft >/dev/null || apt-get install -y -q nftables \
		|| (apt-get update -q && apt-get install -y -q nftables) || echo "nftables not installed"
	if command -v nft >/dev/null; then touch $@; fi

# dnsmasq (the binary alone: no service is started), the DNS server of the DNS discovery
# test (root; without it that test skips, saying why)
$(STAMP_DNS): | $(BIN)/python
	command -v dnsmasq >/dev/null || apt-get install -y -q dnsmasq-base \
		|| (apt-get update -q && apt-get install -y -q dnsmasq-base) || echo "dnsmasq not installed"
	if command -v dnsmasq >/dev/null; then touch $@; fi

run: $(STAMP_RUN)
	$(BIN)/cloudy local --slaves 4 --send-for 2s --wait-for 1s --with-seed 0

lint: $(STAMP_TEST)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

# Three workers, each taking more work when it runs dry: most tests wait on child
# processes and timers, so the suite takes about a third as long as on one; the
# nodes of each test are still OS processes of their own.
unit: $(STAMP_TEST) $(STAMP_NFT) $(STAMP_DNS)
	$(BIN)/pytest -q -n 3 --dist worksteal

# The API reference and tutorial (mkdocs + mkdocstrings), built strictly: a broken
# reference or a name that moved fails the build, so the pages cannot rot.
docs: $(STAMP_TEST)
	$(BIN)/mkdocs build --strict -q

test: lint typecheck docs unit

# Erlang/OTP from the distribution's packages, for the benchmarks' reference runs.
ERLANG := command -v erl >/dev/null || apt-get install -y -q erlang-base \
		|| (apt-get update -q && apt-get install -y -q erlang-base)

# cloudy against Erlang/OTP in one sitting (benchmarks/vs_erlang.py).
bench-erlang: $(STAMP_TEST)
	$(ERLANG)
	$(BIN)/python benchmarks/vs_erlang.py

# Every benchmark, short, one table of ratios against their references (a regression
# guard: about two minutes; benchmarks/bench.py).
bench: $(STAMP_TEST)
	$(ERLANG)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .site

# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PORTAL_ENV ?= development
# Test processes (pytest-xdist); each has its own SQLite files and its own PostgreSQL scratch database.
PYTEST_WORKERS ?= 3

.PHONY: run test install system-packages translations translations-extract clean

# Receipts are PDFs rendered by WeasyPrint (Pango) in Noto Sans CJK JP.
system-packages:
	@{ fc-list 2>/dev/null | grep -q "Noto Sans CJK JP" && ldconfig -p | grep -q libpangoft2; } || { \
	  echo "Installing Debian's fonts-noto-cjk and Pango for the PDF receipts"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 fontconfig; }

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "Installing python3-venv (Debian/Ubuntu)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; \
	  rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(STAMP) translations system-packages

translations: $(STAMP)
	@$(BIN)/pybabel compile -d translations >/dev/null

# After changing user-facing text: refresh the catalog template and the Japanese catalog.
translations-extract: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching

run: install
	@mkdir -p instance
	$(BIN)/portal db upgrade
	@$(BIN)/python -m portal.devserver

test: install
	@command -v chromium >/dev/null || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	PORTAL_ENV=test $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=10 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

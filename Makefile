# make test: build .venv (qgzoo, its test extra and every plugin under plugins/) and run pytest.
# make demo: the same environment, then `qgzoo demo`.

PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip
# Reinstall when any pyproject.toml changes or a plugin folder appears.
STAMP := $(VENV)/.installed
PROJECTS := pyproject.toml $(wildcard plugins/*/pyproject.toml)

.PHONY: venv demo test

venv: $(STAMP)

# Plugins go in after the core, so their dependency on qgzoo is met by this checkout.
$(STAMP): $(PROJECTS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[test]'
	for project in plugins/*/; do \
		[ -f "$$project/pyproject.toml" ] || continue; \
		$(PIP) install -e "$$project" || exit 1; \
	done
	touch $@

demo: venv
	$(VENV)/bin/qgzoo demo

test: venv
	$(VENV)/bin/python -m pytest -q

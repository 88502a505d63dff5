# make test: build .venv (qgzoo, its test extra and every plugin under plugins/) and run pytest.
# make demo: the same environment, then `qgzoo demo`.
# make pyqg-env: .venv-pyqg, numpy pyqg 0.7.2 for benchmarks/generation_throughput.py.

PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip
# Reinstall when any pyproject.toml changes or a plugin folder appears.
STAMP := $(VENV)/.installed
PROJECTS := pyproject.toml $(wildcard plugins/*/pyproject.toml)

.PHONY: venv demo test pyqg-env

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

# numpy pyqg, the baseline of benchmarks/generation_throughput.py, in its own
# environment: pyqg 0.7.2 builds only against numpy < 2 and cython < 3, without
# build isolation and with its version given (no git metadata in the sdist),
# while jax needs numpy 2. pyFFTW (a binary wheel, FFTW inside) goes in first:
# pyqg's build compiles its FFTW path only if pyfftw imports then, else it uses
# numpy.fft. --no-cache-dir so a cached pyqg wheel built without pyFFTW is not
# reused; --no-deps as pyFFTW is optional. A .gitignore inside keeps git quiet.
PYQG_VENV := .venv-pyqg
PYQG_PIP := $(PYQG_VENV)/bin/python -m pip

pyqg-env: $(PYQG_VENV)/.installed

$(PYQG_VENV)/.installed:
	test -x $(PYQG_VENV)/bin/python || $(PYTHON) -m venv $(PYQG_VENV)
	printf '*\n' > $(PYQG_VENV)/.gitignore
	$(PYQG_PIP) install --upgrade pip
	$(PYQG_PIP) install "numpy<2" "cython<3" setuptools setuptools_scm wheel
	$(PYQG_PIP) install --only-binary pyfftw "numpy<2" pyfftw \
		|| echo "no pyFFTW wheel: pyqg will use numpy.fft"
	SETUPTOOLS_SCM_PRETEND_VERSION=0.7.2 $(PYQG_PIP) install --no-build-isolation \
		--no-deps --no-cache-dir --force-reinstall pyqg==0.7.2
	$(PYQG_VENV)/bin/python -c "import pyqg, pyqg.kernel; print('pyqg', pyqg.__version__, \
		'FFT:', 'FFTW (pyFFTW)' if hasattr(pyqg.kernel, 'pyfftw') else 'numpy.fft')"
	touch $@

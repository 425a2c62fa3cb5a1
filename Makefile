# The two commands of the README: `make demo` and `make test`.
# Both create the virtual environment from requirements.txt when it is missing.
# `make test` runs the test files in two processes (pytest-xdist), each file
# whole in one of them, so that a module's fixtures are made once.
# `make bazel-test` runs the fast tests through Bazel (Debian's bazel-bootstrap
# and bazel-rules-java; see WORKSPACE), `make bazel-test-all` every test file.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
BAZEL  ?= bazel
STAMP   = $(VENV)/.installed

.PHONY: demo test bazel-test bazel-test-all venv clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip check
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m train.demo

test: $(STAMP)
	$(PY) -m pytest -q tests --durations=20 -n 2 --dist loadfile

# Bazel's Python toolchain is the venv named by LILNETX_VENV (default .venv).
bazel-test: $(STAMP)
	LILNETX_VENV=$(VENV) $(BAZEL) test //:fast

bazel-test-all: $(STAMP)
	LILNETX_VENV=$(VENV) $(BAZEL) test //...

clean:
	rm -rf $(VENV) demo_out .pytest_cache

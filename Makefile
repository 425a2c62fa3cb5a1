# The two commands of the README: `make demo` and `make test`.
# Both create the virtual environment from the stack's lock file when it is
# missing: STACK=pinned (the default: requirements.txt, .venv) or
# STACK=current (requirements-current.txt, .venv-current), e.g.
# `make test STACK=current`.
# `make test` runs the test files in two processes (pytest-xdist), each file
# whole in one of them, so that a module's fixtures are made once.
# `make bazel-test` runs the fast tests through Bazel (Debian's bazel-bootstrap
# and bazel-rules-java; see WORKSPACE), `make bazel-test-all` every test file.
PYTHON ?= python3
STACK  ?= pinned
ifeq ($(STACK),pinned)
LOCK   ?= requirements.txt
VENV   ?= .venv
else ifeq ($(STACK),current)
LOCK   ?= requirements-current.txt
VENV   ?= .venv-current
else
$(error STACK must be pinned or current, not $(STACK))
endif
PY      = $(VENV)/bin/python
BAZEL  ?= bazel
STAMP   = $(VENV)/.installed

.PHONY: demo test bazel-test bazel-test-all venv clean

venv: $(STAMP)

$(STAMP): $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(LOCK)
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
	rm -rf .venv .venv-current demo_out .pytest_cache

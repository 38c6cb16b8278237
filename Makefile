# The course in a few commands. Everything runs inside .venv (made from requirements-lock.txt).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: help env test unit nbval course lab student check-student grade sync-colab lessons check-lessons test-browser bench clean

help:
	@echo "make course   run every lesson (default profile), write build/course/ (HTML + REPORT.md)"
	@echo "make test     unit tests + every lesson under nbval in the smoke profile"
	@echo "make lab      JupyterLab on lessons/"
	@echo "make student  write the student edition to build/student/ (FORCE=1 to overwrite)"
	@echo "make bench    run the benchmarks in benchmarks/"
	@echo "make check-student  run the student edition: only the exercises may fail"
	@echo "make grade SUBMISSIONS='a/01_gap_vs_gmp.ipynb ...'  grade students' notebooks with the lessons' checks"
	@echo "make sync-colab     rewrite every lesson's Colab badge and set-up cell from camlib.REPO_URL"
	@echo "make lessons        write every lessons/NN_name.ipynb from its jupytext source lessons/NN_name.py"

# The environment is made once, from the exact lock; remade when the lock or pyproject changes.
$(STAMP): requirements-lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (or set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-lock.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

env: $(STAMP)

# Unit tests, including the real-browser widget test (it skips when Chromium is missing; .ci/run installs it).
unit: $(STAMP)
	CAMLIB_PROFILE=smoke CAMLIB_DEVICE=cpu $(PY) -m pytest -q tests

nbval: $(STAMP)
	CAMLIB_PROFILE=smoke CAMLIB_DEVICE=cpu $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider lessons

test: unit nbval

course: $(STAMP)
	$(PY) -m coursekit build $(if $(PROFILE),--profile $(PROFILE))

lab: $(STAMP)
	$(VENV)/bin/jupyter lab lessons

student: $(STAMP)
	$(PY) -m coursekit student $(if $(FORCE),--force)

check-student: $(STAMP)
	CAMLIB_PROFILE=smoke CAMLIB_DEVICE=cpu $(PY) -m coursekit check-student

grade: $(STAMP)
	$(PY) -m coursekit grade $(SUBMISSIONS)

sync-colab: $(STAMP)
	$(PY) -m coursekit sync-colab

# Lessons are edited as jupytext percent scripts (lessons/NN_name.py); the notebooks are made from them.
lessons: $(STAMP)
	$(PY) -m coursekit lessons

check-lessons: $(STAMP)
	$(PY) -m coursekit lessons --check

test-browser: $(STAMP)
	$(PY) -m pytest -q -s -m browser tests/browser

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf build

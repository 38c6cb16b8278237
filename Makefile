# The course in a few commands. Everything runs inside .venv (made from requirements-lock.txt).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?=
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: help env test unit nbval smoke course lab student check-student grade sync-colab lessons check-lessons test-browser bench clean claims-gpu gpu-check

help:
	@echo "make course   run every lesson (default profile), write build/course/ (HTML + REPORT.md)"
	@echo "make test     every lesson once in the smoke profile (build/smoke), then the unit tests"
	@echo "make test-gpu-path  every gpu-profile path (lessons, recipes) on the CPU with fixture data, tiny scale"
	@echo "make lab      JupyterLab on lessons/"
	@echo "make student  write the student edition to build/student/ (FORCE=1 to overwrite)"
	@echo "make bench    run the benchmarks in benchmarks/"
	@echo "make check-student  run the student edition: only the exercises may fail"
	@echo "make grade SUBMISSIONS='a/01_gap_vs_gmp.ipynb ...' [OUT=build/grades]  grade students' notebooks (gradebook.csv/.json in OUT)"
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

# Every lesson executed once in the smoke profile, as the course build does (fails if a cell fails);
# tests/test_lesson_outputs.py then scans build/smoke for stray values, warnings and stuck progress bars.
smoke: $(STAMP)
	CAMLIB_DEVICE=cpu $(PY) -m coursekit build --profile smoke --out build/smoke --timeout 600 --jobs 2

test: $(STAMP)
	$(MAKE) smoke
	$(MAKE) unit

# Every gpu-profile path on the CPU, offline: fixture datasets in the published layouts and stand-in
# weights in a temp $CAMLIB_DATA/$TORCH_HOME, every lesson and recipe at CAMLIB_SCALE=tiny (tools/gpu_path.py).
.PHONY: test-gpu-path
test-gpu-path: $(STAMP)
	$(PY) tools/gpu_path.py

course: $(STAMP)
	$(PY) -m coursekit build $(if $(PROFILE),--profile $(PROFILE))

lab: $(STAMP)
	$(VENV)/bin/jupyter lab lessons

student: $(STAMP)
	$(PY) -m coursekit student $(if $(FORCE),--force)

check-student: $(STAMP)
	CAMLIB_PROFILE=smoke CAMLIB_DEVICE=cpu $(PY) -m coursekit check-student

# The checks run in the grader, not in the students' kernels; one row per submission, whatever happens.
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS='alice/01_gap_vs_gmp.ipynb bob/01_gap_vs_gmp.ipynb' [OUT=build/grades]"; exit 2; }
	$(PY) -m coursekit grade $(SUBMISSIONS) $(if $(OUT),--out $(OUT))

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

# Every claim of every lesson at the gpu profile's sizes, on whatever device there is (the CPU here):
# the synthetic/offline parts only (CAMLIB_REAL_DATA=0). Writes build/claims-gpu/REPORT.md.
claims-gpu: $(STAMP)
	CAMLIB_REAL_DATA=0 $(PY) -m coursekit build --profile gpu --out build/claims-gpu --timeout 0
	@sed -n '/^## Claims/,$$p' build/claims-gpu/REPORT.md

# On a machine with CUDA: lessons 00-02 and 06 in the gpu profile, the synthetic-gap recipe and the
# benchmarks on the GPU, under 9 minutes; one JSON of figures in build/gpu-check/gpu_check.json.
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) tools/gpu_check.py --out build/gpu-check

# The floors in pyproject.toml, proven: exactly those versions (requirements-compat.txt) with the oldest
# Python requires-python allows, in a second environment, then the unit tests there (a test that cannot
# run there is skipped with its reason, listed by -rs: e.g. the browser test, without playwright).
COMPAT_PYTHON ?= python3.11
COMPAT_VENV   := .venv-compat
COMPAT_PY     := $(COMPAT_VENV)/bin/python
COMPAT_STAMP  := $(COMPAT_VENV)/.installed
.PHONY: test-compat

$(COMPAT_STAMP): requirements-compat.txt pyproject.toml
	@command -v $(COMPAT_PYTHON) >/dev/null 2>&1 || { echo "need $(COMPAT_PYTHON) (or set COMPAT_PYTHON=...)"; exit 1; }
	test -x $(COMPAT_PY) || $(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q -r requirements-compat.txt
	$(COMPAT_PY) -m pip install -q -c requirements-compat.txt -e '.[test]'
	$(COMPAT_PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(COMPAT_STAMP)

test-compat: $(COMPAT_STAMP)
	CAMLIB_PROFILE=smoke CAMLIB_DEVICE=cpu $(COMPAT_PY) -m pytest -q -rs -p no:cacheprovider tests

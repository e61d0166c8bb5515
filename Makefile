# The two entry points of the README: `make run` (the default experiment) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test lint format clean mutate

setup: $(VENV)/.installed

# Quiet: `make run` on a fresh clone prints a few lines, not pip's progress and notices (pip
# still prints its errors; `make setup PIP_QUIET=` shows everything, warnings included).
PIP_QUIET ?= --quiet --quiet --disable-pip-version-check --no-input --progress-bar off

$(VENV)/.installed: pyproject.toml
	@echo "make: setting up $(VENV) (the first time takes a few minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip "setuptools>=77" wheel
	@$(BIN)/python -m pip install $(PIP_QUIET) -e '.[test]'
	@touch $@

run: setup
	@$(BIN)/python -m nnexp

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -n 2

# Mutation testing of the core with mutmut ([tool.mutmut] in pyproject.toml, tests/mutants.md):
# long, so neither `make test` nor CI runs it. One child by default (a shared 2-core machine):
# `make mutate MUTMUT_CHILDREN=2` on a machine of your own. MUTANTS='nnexp.nn.*' runs a subset;
# MUTATE_KEEP=1 keeps mutants/ and re-runs only mutants without a result (a fresh run otherwise).
MUTMUT_CHILDREN ?= 1
MUTANTS ?=
mutate: setup
	$(BIN)/python -m pip install --quiet -e '.[test,mutate]'
	$(if $(MUTATE_KEEP),,rm -rf mutants)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 MLFLOW_DISABLE_TELEMETRY=true \
		$(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN) $(MUTANTS)
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/python -c "$$MUTATION_SCORE"

# Per area: detected (killed, or timed out) / mutants, and the score with the equivalent mutants
# listed in tests/mutants.md and the mutants not run (a subset: MUTANTS=...) set aside.
define MUTATION_SCORE
import collections, json, pathlib, re
from mutmut.stats import status_by_exit_code
doc = pathlib.Path("tests/mutants.md")
section = doc.read_text().partition("## Equivalent mutants")[2].partition("\n## ")[0] if doc.exists() else ""
equivalent = set(re.findall(r"`(nnexp\.[\w.]+__mutmut_\d+)`", section))
rows = collections.defaultdict(collections.Counter)
for meta in sorted(pathlib.Path("mutants/nnexp").rglob("*.py.meta")):
    src = meta.relative_to("mutants").as_posix()[: -len(".meta")]
    area = "/".join(src.split("/")[:2]) if src.count("/") > 1 else src
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        status = status_by_exit_code[code]
        if name in equivalent and status == "survived":
            status = "equivalent"
        for key in (area, "total"):
            rows[key][status] += 1
            rows[key]["mutants"] += 1
print(f"{'area':<18} {'detected':>8} {'mutants':>8} {'score':>7}  equivalent  other")
for area, c in sorted(rows.items(), key=lambda kv: kv[0] == "total"):
    detected = c["killed"] + c["timeout"] + c["caught by type check"]
    other = {k: v for k, v in c.items() if k not in ("killed", "mutants", "equivalent")}
    run = c["mutants"] - c["equivalent"] - c["not checked"]
    score = f"{detected / run:.1%}" if run else "-"
    print(f"{area:<18} {detected:>8} {c['mutants']:>8} {score:>7}  {c['equivalent']:>10}  {dict(other) or ''}")
endef
export MUTATION_SCORE

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info

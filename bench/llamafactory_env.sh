#!/usr/bin/env bash
# A separate virtual environment with LLaMA-Factory for bench/train.py's `llamafactory` side.
# It pins older transformers/peft/trl than ours, so it never goes into .venv.
# Usage: bench/llamafactory_env.sh [VENV]   (default: $OPENRECIPE_LLAMAFACTORY_VENV or
#        ~/.cache/openrecipe/bench-llamafactory-venv); the bench finds its python there, or at
#        $OPENRECIPE_LLAMAFACTORY_PYTHON.
set -euo pipefail
LF_VERSION="${LF_VERSION:-0.9.5}"
VENV="${1:-${OPENRECIPE_LLAMAFACTORY_VENV:-$HOME/.cache/openrecipe/bench-llamafactory-venv}}"
PYTHON="${PYTHON:-python3}"
PIP=(-m pip install --quiet --disable-pip-version-check)

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# The CPU wheel of torch first, exactly as the Makefile installs ours: any other version pulls a CUDA build.
"$VENV/bin/python" "${PIP[@]}" "torch==2.13.0"
# Workaround 1: llamafactory requires torchvision and torchaudio; from PyPI they come as CUDA builds that fail
# to import next to CPU torch ("operator torchvision::nms does not exist") and break transformers' imports.
# Install llamafactory without its dependencies, then its requirements minus those two (and the web UI's
# gradio, which training does not import).
"$VENV/bin/python" "${PIP[@]}" --no-deps "llamafactory==$LF_VERSION"
REQS=$("$VENV/bin/python" - <<'PY'
from importlib.metadata import requires
skip = {"torchvision", "torchaudio", "gradio"}
for req in requires("llamafactory") or []:
    if ";" in req:  # extras and markers: not needed for LoRA SFT on CPU
        continue
    name = req.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("[")[0].strip()
    if name.lower() not in skip:
        print(req)
PY
)
mapfile -t REQ_ARRAY <<<"$REQS"
"$VENV/bin/python" "${PIP[@]}" "torch==2.13.0" "${REQ_ARRAY[@]}"
# Workaround 2: llamafactory.data.mm_plugin imports torchaudio unconditionally (audio only, never used for
# text SFT), and no torchaudio on PyPI matches torch 2.13. Take the newest one without its dependencies and
# drop its compiled extensions (built against CUDA torch: "libc10_cuda.so: cannot open shared object file");
# torchaudio then imports as pure Python, as it does when deployed without them.
"$VENV/bin/python" "${PIP[@]}" --no-deps "torchaudio==${TORCHAUDIO_VERSION:-2.11.1}"
rm -f "$("$VENV/bin/python" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torchaudio").origin))')"/lib/*.so
"$VENV/bin/python" -c "import llamafactory, llamafactory.train.tuner, torch, transformers, peft, trl; print('llamafactory', llamafactory.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"

#!/usr/bin/env bash
# Install everything optiladder needs on a fresh Debian/Ubuntu machine (as root, or with sudo):
#   apt: libxc + OpenBLAS (GPAW), PostgreSQL (campaign tests), Chromium (page tests)
#   a virtual environment .venv with torch 2.13.0 (CPU) and optiladder[compute,campaign,learn,foundation,serve,dev]
# Idempotent: a second run only checks. Set OPTILADDER_VENV to use another venv folder.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${OPTILADDER_VENV:-.venv}"
PY="${PYTHON:-python3}"

APT_PKGS=(libxc-dev libopenblas-dev postgresql chromium g++)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
"${PIP[@]}" install --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned: on these machines 2.13.0 is a local CPU wheel (anything else pulls GBs of CUDA)
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" install torch==2.13.0
# GPAW 26 compiles as C++
CC=g++ "${PIP[@]}" install -e ".[compute,campaign,learn,foundation,serve,dev]" 2>&1 | grep -v "^WARNING: Location" || true
# chgnet: the shipped models' node features (CHGNet 0.3.0 embeddings, weights inside the wheel) at predict time;
# sevenn: SevenNet-0 embeddings (featurizer option, weights inside the wheel): its checkpoint must be there
"$VENV/bin/python" -c "import gpaw, torch, torch_geometric, chgnet, sevenn, optiladder
import os, sevenn._const as c; assert os.path.isfile(c.SEVENNET_0_11Jul2024), 'SevenNet-0 weights missing'" \
    || { echo "setup: import check failed" >&2; exit 1; }
echo "setup: ready ($VENV, optiladder $("$VENV/bin/python" -c 'import optiladder; print(optiladder.__version__)'))"

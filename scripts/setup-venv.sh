#!/usr/bin/env bash
# Create the virtualenv and install the project: torch 2.13.0 first (the CPU build), then the
# project with every version held by constraints.txt. Removes torchvision/torchaudio when
# they cannot be imported (their PyPI builds need CUDA; mattersim does not use them).
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install --quiet --upgrade pip
$pip install --quiet "torch==2.13.0"
$pip install --quiet -c constraints.txt -e ".[all,test]"
# Template sources for `automat library build` (data files only; their dependencies are not needed).
$pip install --quiet --no-deps -c constraints.txt jarvis-tools crystal-toolkit
for mod in torchvision torchaudio; do
  if ! "$venv/bin/python" -c "import $mod" >/dev/null 2>&1; then
    $pip uninstall --quiet -y "$mod" >/dev/null 2>&1 || true
  fi
done
"$venv/bin/python" -c "import torch, mattersim, chgnet, abtem, pymatgen, napari_automat; print('environment ready: torch', torch.__version__)"

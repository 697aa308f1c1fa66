#!/usr/bin/env bash
# Set up simcons in ./.venv: pinned torch/torchvision (constraints.txt), the package and its extras.
# Re-running is cheap: pip runs again only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.simcons-setup
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
# SLURM (for the real single-node SLURM test) comes from Debian, where this runs as root with apt.
if ! command -v sbatch >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -q slurm-wlm >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurm-wlm >/dev/null 2>&1; }) ||
    echo "setup: slurm-wlm not installed; the real-SLURM test will skip" >&2
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,demo,postgres,align]'
  echo "$want" > "$stamp"
fi

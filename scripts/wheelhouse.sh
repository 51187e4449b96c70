#!/usr/bin/env bash
# A folder of wheels for an offline GPU machine: the project's dependencies but PyTorch (the GPU
# machine brings its own CUDA build), for the GPU machine's Python on x86-64 Linux, fetched here.
#
#   scripts/wheelhouse.sh PYTHON_VERSION OUT_DIR [HAVE_FILE]
#   scripts/wheelhouse.sh 3.12 wheelhouse have.txt
#
# HAVE_FILE (optional) lists what the GPU machine already has, one package per line (`pip freeze`
# output works); those wheels are left out, which keeps the folder small enough to carry.
# SKUNET_LEAVE_OUT (default "torch"): dependencies not to fetch at all; scripts/lease_tree.sh adds
# mlscorecheck (the compare stage's audit, with its LP solver pulp: tens of MB), since a lease runs
# the data stages and trainings and the comparison runs at home.
# On the GPU machine, in the project folder, install the folder beside its own packages:
#
#   pip install --no-index --no-deps --target /opt/skunet-site OUT_DIR/*.whl
#   export PYTHONPATH=/opt/skunet-site:$PWD/src
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: scripts/wheelhouse.sh PYTHON_VERSION OUT_DIR [HAVE_FILE]" >&2; exit 2; }
py_version=$1 out=$(realpath -m "$2") have=${3:-}
[[ -z $have || -f $have ]] || { echo "$have: no such file; give a list of installed packages or leave it out" >&2; exit 2; }
[[ -z $have ]] || have=$(realpath "$have")
cd "$(dirname "$0")/.."   # the project, for pyproject.toml

# the names HAVE_FILE holds, normalised (PEP 503), read before any download: a file with none
# (a wrong file) would carry everything and fail past the limit, unsaid
names=$(python3 - "$have" <<'PY'
import json, re, sys
from pathlib import Path
have_file = sys.argv[1]
if not have_file:
    sys.exit(0)
text = Path(have_file).read_text()
try:  # a lease's manifest.json: the packages its last piece found on the machine
    lines = json.loads(text)["pieces"][-1]["packages"]
except (ValueError, KeyError, IndexError, TypeError):
    lines = text.splitlines()  # `pip freeze`, `pip list`, or one name a line
names = set()
for line in lines:
    name = re.split(r"[<>=!~ @;\[]", str(line).strip(), maxsplit=1)[0]
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and not re.fullmatch(r"-+|Package", name):
        names.add(re.sub(r"[-_.]+", "-", name).lower())
if not names:
    sys.exit(f"{have_file}: no package name in it; give the machine's `pip freeze` (or a lease's manifest.json)")
print(" ".join(sorted(names)))
PY
) || exit 2

# the project's dependencies from pyproject.toml, less torch
mapfile -t requirements < <(python3 - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
import os
leave_out = os.environ.get("SKUNET_LEAVE_OUT", "torch").lower().split()
print("\n".join(d for d in deps if re.split(r"[<>=!~ ;\[]", d)[0].lower() not in leave_out))
PY
)

tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
# hydra-core (a DVC dependency) needs antlr4-python3-runtime 4.9, published only as a source
# archive: build its (pure-Python) wheel here so that the download below can stay binary-only
python3 -m pip wheel --quiet --no-deps --wheel-dir "$tmp" "antlr4-python3-runtime==4.9.3"
python3 -m pip download --quiet --only-binary=:all: --find-links "$tmp" --dest "$tmp" \
  --python-version "$py_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  "${requirements[@]}"

# leave out what the GPU machine has; names compare normalised (PEP 503)
python3 - "$tmp" "$names" <<'PY'
import re, sys
from pathlib import Path
folder, have = Path(sys.argv[1]), set(sys.argv[2].split())
for wheel in folder.glob("*.whl"):
    if re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower() in have:
        wheel.unlink()
PY
rm -rf "$out.part" && mkdir -p "$(dirname "$out")" && mv "$tmp" "$out.part" && rm -rf "$out" && mv "$out.part" "$out"
trap - EXIT
echo "$out: $(ls "$out" | wc -l) wheels, $(du -sh "$out" | cut -f1)"

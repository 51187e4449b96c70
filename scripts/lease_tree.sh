#!/usr/bin/env bash
# Everything a time-boxed GPU machine needs carried to it, laid out in the project folder and
# measured against what may be carried (64 MiB): the project's tracked files, the two archives in
# archives/ (from SKUNET_DATA_MIRROR) and, in wheelhouse/, the wheels for what the machine lacks.
#
#   scripts/lease_tree.sh PYTHON_VERSION HAVE_FILE [LIMIT_MIB] [--take DIR]
#   scripts/lease_tree.sh 3.12 have.txt
#   scripts/lease_tree.sh 3.12 have.txt --take OUT      # a later lease, going on from OUT
#
# HAVE_FILE lists the GPU machine's packages (`pip freeze` there, or a lease's manifest.json, whose
# last piece records them). Then carry the folder with wheelhouse/ and archives/ and run scripts/lease.sh.
# With --take DIR (the folder an earlier lease brought back) DIR is copied into lease-in/, to carry
# as well (`scripts/lease.sh BUDGET OUT lease-in`), and archives/ holds only the archives of the
# datasets whose trainings DIR's manifest does not list as finished or committed.
set -euo pipefail
usage="usage: scripts/lease_tree.sh PYTHON_VERSION HAVE_FILE [LIMIT_MIB] [--take DIR]"
args=() take=
while (( $# )); do
  case $1 in
    --take) [[ $# -ge 2 && -n $2 ]] || { echo "$usage" >&2; exit 2; }; take=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]}"
[[ $# -ge 2 && $# -le 3 ]] || { echo "$usage" >&2; exit 2; }
py_version=$1 have=$(realpath -m "$2") limit_mib=${3:-64}
[[ -f $have ]] || { echo "$2: no such file; give the GPU machine's package list (pip freeze there)" >&2; exit 2; }
[[ $limit_mib =~ ^[0-9]+$ ]] || { echo "$limit_mib: not a number of MiB" >&2; exit 2; }
if [[ -n $take ]]; then
  [[ -f $take/manifest.json ]] || {
    echo "$take/manifest.json: no such file; give the folder an earlier lease brought back (its --out)" >&2; exit 2; }
  take=$(realpath "$take")
fi
# the archives (params.yaml's mirror files) of the datasets with a training left: all, or those the
# manifest of --take DIR does not list as finished or committed; the others' data stages do not run
archives=$(PYTHONPATH="$(dirname "$0")/../src" python3 -c '
import sys
from pathlib import Path
from skunet.config import DATASETS, MODELS, load_params
from skunet.data.sources import parse_sources
from skunet.errors import SkunetError
from skunet.lease import DONE, _read_manifest
root, take = Path(sys.argv[1]), sys.argv[2]
try:
    trainings = _read_manifest(Path(take), required=True)["trainings"] if take else {}
except SkunetError as err:
    sys.exit(str(err))
done = {t for t, e in trainings.items() if e.get("status") in DONE}
params = load_params(root / "params.yaml")
for d in DATASETS:
    if any(f"{d}-{m}" not in done for m in MODELS):
        sources = parse_sources(params["download"][d]["sources"], f"download.{d}.sources")
        print(*(f.name for s in sources if s.kind == "mirror" for f in s.files))
' "$(dirname "$0")/.." "$take")
[[ -n $archives ]] || { echo "$take: every training is finished or committed there; \`skunet take $take\` at home, no lease" >&2; exit 2; }
mirror=${SKUNET_DATA_MIRROR:-}
[[ -n $mirror && -f $mirror/DRIVE.zip && -f $mirror/CHASEDB1.zip ]] || {
  echo "SKUNET_DATA_MIRROR=${mirror}: needs DRIVE.zip and CHASEDB1.zip; set it to the folder that holds them" >&2; exit 2; }
cd "$(dirname "$0")/.."

# built beside, moved into place at the end: a failed build leaves the old tree as it was
tmp=$(mktemp -d "$PWD/.lease-tree.XXXXXX") && trap 'rm -rf "$tmp"' EXIT
# a lease trains; the compare stage's audit (mlscorecheck, its solver tens of MB) runs at home
SKUNET_LEAVE_OUT="torch mlscorecheck" scripts/wheelhouse.sh "$py_version" "$tmp/wheelhouse" "$have"
mkdir "$tmp/archives"
if [[ -n $take ]]; then
  cp -r "$take" "$tmp/lease-in"
fi
for archive in $archives; do cp "$mirror/$archive" "$tmp/archives/"; done

project=$(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s + 0}')
wheels=$(du -sb "$tmp/wheelhouse" | cut -f1)
archives=$(du -sb "$tmp/archives" | cut -f1)
pieces=0
[[ -z $take ]] || pieces=$(du -sb "$tmp/lease-in" | cut -f1)
total=$((project + wheels + archives + pieces))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
line="project $(mib "$project") MiB + archives $(mib "$archives") MiB ($(ls "$tmp/archives" | tr '\n' ' ' | sed 's/ $//'))"
line+=" + wheelhouse $(mib "$wheels") MiB ($(ls "$tmp/wheelhouse" | wc -l) wheels)"
[[ -z $take ]] || line+=" + lease-in $(mib "$pieces") MiB"
line+=" = $(mib "$total") MiB"
if (( total > limit_mib * 1048576 )); then
  echo "$line: more than the $limit_mib MiB a lease may carry; leave out what the machine has (HAVE_FILE)" >&2
  exit 1
fi
rm -rf wheelhouse archives lease-in
mv "$tmp/wheelhouse" wheelhouse
mv "$tmp/archives" archives
if [[ -n $take ]]; then
  mv "$tmp/lease-in" lease-in
  echo "$line, within $limit_mib MiB: carry wheelhouse/, archives/ and lease-in/ with the project; there, run scripts/lease.sh BUDGET_S OUT lease-in"
else
  echo "$line, within $limit_mib MiB: carry wheelhouse/ and archives/ with the project"
fi

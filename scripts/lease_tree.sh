#!/usr/bin/env bash
# Everything a time-boxed GPU machine needs carried to it, laid out in the project folder and
# measured against what may be carried (64 MiB): the project's tracked files, the two archives in
# archives/ (from SKUNET_DATA_MIRROR) and, in wheelhouse/, the wheels for what the machine lacks.
#
#   scripts/lease_tree.sh PYTHON_VERSION HAVE_FILE [LIMIT_MIB]
#   scripts/lease_tree.sh 3.12 have.txt
#
# HAVE_FILE lists the GPU machine's packages (`pip freeze` there, or a lease's manifest.json, whose
# last piece records them). Then carry the folder with wheelhouse/ and archives/ and run scripts/lease.sh.
set -euo pipefail
[[ $# -ge 2 && $# -le 3 ]] || { echo "usage: scripts/lease_tree.sh PYTHON_VERSION HAVE_FILE [LIMIT_MIB]" >&2; exit 2; }
py_version=$1 have=$(realpath -m "$2") limit_mib=${3:-64}
[[ -f $have ]] || { echo "$2: no such file; give the GPU machine's package list (pip freeze there)" >&2; exit 2; }
[[ $limit_mib =~ ^[0-9]+$ ]] || { echo "$limit_mib: not a number of MiB" >&2; exit 2; }
mirror=${SKUNET_DATA_MIRROR:-}
[[ -n $mirror && -f $mirror/DRIVE.zip && -f $mirror/CHASEDB1.zip ]] || {
  echo "SKUNET_DATA_MIRROR=${mirror}: needs DRIVE.zip and CHASEDB1.zip; set it to the folder that holds them" >&2; exit 2; }
cd "$(dirname "$0")/.."

# built beside, moved into place at the end: a failed build leaves the old tree as it was
tmp=$(mktemp -d "$PWD/.lease-tree.XXXXXX") && trap 'rm -rf "$tmp"' EXIT
# a lease trains; the compare stage's audit (mlscorecheck, its solver tens of MB) runs at home
SKUNET_LEAVE_OUT="torch mlscorecheck" scripts/wheelhouse.sh "$py_version" "$tmp/wheelhouse" "$have"
mkdir "$tmp/archives"
cp "$mirror/DRIVE.zip" "$mirror/CHASEDB1.zip" "$tmp/archives/"

project=$(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s + 0}')
wheels=$(du -sb "$tmp/wheelhouse" | cut -f1)
archives=$(du -sb "$tmp/archives" | cut -f1)
total=$((project + wheels + archives))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
line="project $(mib "$project") MiB + archives $(mib "$archives") MiB + wheelhouse $(mib "$wheels") MiB ($(ls "$tmp/wheelhouse" | wc -l) wheels) = $(mib "$total") MiB"
if (( total > limit_mib * 1048576 )); then
  echo "$line: more than the $limit_mib MiB a lease may carry; leave out what the machine has (HAVE_FILE)" >&2
  exit 1
fi
rm -rf wheelhouse archives
mv "$tmp/wheelhouse" wheelhouse
mv "$tmp/archives" archives
echo "$line, within $limit_mib MiB: carry wheelhouse/ and archives/ with the project"

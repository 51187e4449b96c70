#!/usr/bin/env bash
# The prepared command for a time-boxed machine (a GPU lent for minutes) that has its own PyTorch
# and no internet: installs the carried wheels, then `skunet lease` for what is left of the budget.
#
#   scripts/lease.sh BUDGET_S OUT_DIR [TAKE_DIR]
#
# In the project folder it expects wheelhouse/ (scripts/wheelhouse.sh; left out where the machine
# has everything) and the two archives in SKUNET_DATA_MIRROR (default: archives/). OUT_DIR gets
# at most 8 files of at most 16 MiB; TAKE_DIR is the OUT_DIR an earlier lease brought back.
# SKUNET_LEASE_RESERVE: seconds kept back from the budget for packing and the transfer (default 20).
set -euo pipefail
[[ $# -ge 2 && $# -le 3 && -n $2 ]] || { echo "usage: scripts/lease.sh BUDGET_S OUT_DIR [TAKE_DIR]" >&2; exit 2; }
[[ $1 =~ ^[0-9]{1,7}$ ]] && (( 10#$1 > 0 )) || {
  echo "$1: not a whole number of seconds from 1 to 9999999; give the time this machine is lent for" >&2; exit 2; }
start=$SECONDS
out=$(realpath -m "$2") take=${3:+$(realpath "$3")}
cd "$(dirname "$0")/.."
if compgen -G "wheelhouse/*.whl" > /dev/null; then
  # installed afresh into the project folder (ignored by git), not a temporary folder that the
  # exec below would leave behind on a machine that is kept
  site=$PWD/.skunet-state/site
  rm -rf "$site" && mkdir -p "$site"
  python3 -m pip install --quiet --no-index --no-deps --no-compile --target "$site" wheelhouse/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export SKUNET_DATA_MIRROR="${SKUNET_DATA_MIRROR:-$PWD/archives}"
# the install counts against the budget
left=$(( 10#$1 - (SECONDS - start) ))
(( left > 0 )) || { echo "$1 s: installing the wheels took all of it; give the time this machine is lent for" >&2; exit 2; }
exec python3 -m skunet lease --budget "$left" --out "$out" ${take:+--take "$take"} \
  ${SKUNET_LEASE_RESERVE:+--reserve "$SKUNET_LEASE_RESERVE"}

#!/usr/bin/env bash
# What a newcomer does with resnetlab, checked: a fresh clone, `make demo`, then every `$ resnetlab ...` example
# of the README that runs on what the demo and the own-folder quick start leave behind (their runs, a folder made
# from Fashion-MNIST, docs/examples/), in the README's order, each required to succeed and
# to print the first line the README shows for it (numbers may differ: they are compared with digits masked).
#
#   scripts/try-as-new-user.sh [REPOSITORY]      # default: this checkout's committed state; ~10 min on 2 cores
#
# It needs what `make demo` needs (Python >= 3.10, PyPI, Fashion-MNIST or the network) and leaves nothing behind.
set -euo pipefail
SOURCE=${1:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git clone -q "$SOURCE" "$WORK/resnetlab"
cd "$WORK/resnetlab"
echo "== fresh clone of $SOURCE in $WORK/resnetlab"
make demo
export PATH="$PWD/.venv/bin:$PATH"
# The README's own-folder quick start trains on this folder, made as the README says.
python scripts/fashion-mnist-folder.py my-clothes

# Each README example: a line "$ resnetlab ..." in a text block, and the line after it, which is its output.
mask() { sed -E 's/[0-9]+([.,][0-9]+)*/N/g'; }
failures=0
checked=0
while IFS=$'\t' read -r command expected; do
  if [[ $command =~ runs/ ]] && ! [[ $command =~ runs/resnet14-fashion-mnist|runs/resnet20-my-clothes ]]; then
    echo "-- skipped (needs a run the demo does not make): $command"
    continue
  fi
  checked=$((checked + 1))
  echo "-- $command"
  if ! output=$(bash -c "$command" 2>&1 </dev/null); then  # its stdin is not the list of examples
    echo "FAILED (exit status): $command"; echo "$output" | tail -5; failures=$((failures + 1)); continue
  fi
  first=$(printf '%s\n' "$output" | head -1)
  if [[ "$(printf '%s' "$first" | mask)" != "$(printf '%s' "$expected" | mask)" ]]; then
    echo "FAILED (first line): $command"; echo "   README: $expected"; echo "   now:    $first"
    failures=$((failures + 1))
  fi
done < <(awk '/^\$ resnetlab /{cmd=substr($0, 3); getline nxt; print cmd "\t" nxt}' README.md)
echo "== $checked README examples run, $failures failed"
[ "$failures" -eq 0 ]

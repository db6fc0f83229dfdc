#!/usr/bin/env bash
# Make Fashion-MNIST available to resnetlab, the quickest way this machine allows:
# already there -> Debian's dataset-fashion-mnist package (when root with apt) -> download into the data dir.
set -u
RESNETLAB=${1:-.venv/bin/resnetlab}
if "$RESNETLAB" data fetch fashion-mnist 2>/dev/null | grep -q "already available"; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's dataset-fashion-mnist package ..."
  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
    (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) &&
    exit 0
fi
exec "$RESNETLAB" data fetch fashion-mnist

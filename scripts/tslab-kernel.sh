#!/bin/sh
# The kit's tslab kernel: starts tslab with the repository root as its working directory.
#
# Why: tslab compiles a cell as a virtual file `<cwd>/__tslab__.ts` with `rootDir: cwd`, so a local .ts
# module outside the cwd cannot be imported ("File '.../lib/backend/index.ts' is not under 'rootDir'").
# Jupyter starts kernels in the notebook's folder (notebooks/), where `../lib/...` is outside the cwd.
# Starting from the repo root instead, notebooks import `./lib/...` and read `data/...` directly.
# tslab (1.0.22 dist/executor.js) loads compiled local modules by `<path>.js` only, so a value import of
# a folder must name its index file: `./lib/backend/index`, not `./lib/backend`.
#
# The root is the first folder above the kernel's start folder (the notebook's) that has this kit's
# node_modules/.bin/tslab, so one registration serves every checkout; otherwise this script's checkout.
# Registered by scripts/bootstrap.sh (`tslab install --binary=<this file>`); Jupyter appends
# `kernel --config-path <connection file>`, which is passed on to tslab unchanged.
set -eu
dir="$PWD"
while [ "$dir" != / ] && ! [ -x "$dir/node_modules/.bin/tslab" ]; do dir="$(dirname "$dir")"; done
if [ "$dir" = / ]; then dir="$(cd "$(dirname "$0")/.." && pwd)"; fi
cd "$dir"
exec "$dir/node_modules/.bin/tslab" "$@"

#!/usr/bin/env bash
# Bootstrap: make this checkout ready to run, on a fresh Debian 12 + Node 20 machine with nothing installed by hand.
# Used by both README commands (`npm test`, `npm run quickstart`); safe to run any number of times, and silent
# when everything is already in place. Three steps, each skipped when its check passes:
#
#   1. Debian packages  headless Jupyter (nbconvert, nbclient, jupyter-client, ipykernel) for the notebook tests,
#                       MathJax 2 (libjs-mathjax: Debian's nbconvert points its HTML export at the local copy,
#                       file:///usr/share/javascript/mathjax, so exported notebooks render formulas offline),
#                       EGL/Mesa for the webgpu backend's OpenGL fallback (docs/platform.md §WebGPU), and Slurm
#                       (slurmctld, slurmd, slurm-client, munge: ~17 s once) for the study executor's test against a
#                       real single-node cluster (scripts/slurm-local.sh starts and stops it; nothing starts at install),
#                       and headless Chromium + DejaVu fonts (the static PNG of every notebook figure, and the test that
#                       renders the committed notebooks as a reader's browser would).
#                       Checked with dpkg-query; `apt-get update` + install only when one is missing. Needs root:
#                       runs apt-get directly as root, through `sudo -n` otherwise, or prints the command and fails.
#   2. node_modules     `npm ci` when it is missing or stale, i.e. package-lock.json differs from what npm installed
#                       (node_modules/.package-lock.json). A hash of package-lock.json is stored after each good
#                       check, so the usual case is one sha256sum. After an install, the prebuilt native parts are
#                       checked: zeromq (tslab's Jupyter transport), sharp, esbuild (tsx) and webgpu's dawn.node.
#   3. tslab kernel     registered as `tslab` with --binary=<this checkout>/scripts/tslab-kernel.sh (a wrapper
#                       that starts tslab in the repo root, see there); re-registered whenever the kernelspec
#                       Jupyter resolves for `tslab` starts another program (CI runs in a fresh clone).
#
# Env: MSM_BOOTSTRAP_VERBOSE=1 shows apt/npm output; MSM_JUPYTER_PYTHON (default /usr/bin/python3) is the
# Python that has the Debian Jupyter packages (not a pyenv/conda python3 that may come first on PATH).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PY="${MSM_JUPYTER_PYTHON:-/usr/bin/python3}"
VERBOSE="${MSM_BOOTSTRAP_VERBOSE:-0}"
APT_PACKAGES=(jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel libjs-mathjax libegl1 libegl-mesa0 libgl1-mesa-dri
  slurmctld slurmd slurm-client munge chromium fonts-dejavu-core)
STAMP="node_modules/.msm-bootstrap-lock.sha256"
TSLAB_BIN="$ROOT/node_modules/.bin/tslab"
KERNEL_CMD="$ROOT/scripts/tslab-kernel.sh"

say() { echo "bootstrap: $*" >&2; }
die() {
  echo "bootstrap: ERROR: $*" >&2
  exit 1
}

# Run a noisy command; keep its output in a log that is shown only when it fails (or when verbose).
quietly() {
  local log
  log="$(mktemp "${TMPDIR:-/tmp}/msm-bootstrap.XXXXXX")"
  if [ "$VERBOSE" = 1 ]; then
    "$@" </dev/null 2>&1 | tee "$log" >&2 || {
      rm -f "$log"
      return 1
    }
  elif ! "$@" </dev/null >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# ---- 0. Node ------------------------------------------------------------------------------------------------
command -v node >/dev/null || die "node is not on PATH; install Node.js 20 (>= 20.9) first."
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=9)?0:1)' ||
  die "Node $(node -v) is too old: package.json needs >= 20.9 (sharp 0.35, require(esm) for tslab)."

# ---- 1. Debian packages ---------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [ "$status" = installed ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  command -v apt-get >/dev/null || die "missing Debian packages (${missing[*]}) and no apt-get: this kit expects Debian 12."
  if [ "$(id -u)" -eq 0 ]; then
    sudo_=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo_=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  else
    die "missing Debian packages: ${missing[*]}. Not root and no password-less sudo; run as root:
  $apt_cmd"
  fi
  say "installing Debian packages: ${missing[*]}"
  quietly "${sudo_[@]}" apt-get update -q || die "apt-get update failed; run by hand: $apt_cmd"
  quietly "${sudo_[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed; run by hand: $apt_cmd"
fi

# ---- 2. node_modules ------------------------------------------------------------------------------------------
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1) node-abi-$(node -p process.versions.modules)"

# Does node_modules hold exactly what package-lock.json lists? npm records what it installed in
# node_modules/.package-lock.json; entries of the lock that npm skips (other platforms' optional
# packages) are the only ones allowed to be absent. Prints the first mismatch and exits 1.
installed_matches_lock() {
  node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages || {};
    let hidden;
    try { hidden = JSON.parse(fs.readFileSync("node_modules/.package-lock.json", "utf8")).packages || {}; }
    catch { console.log("node_modules/.package-lock.json is missing"); process.exit(1); }
    for (const [k, want] of Object.entries(lock)) {
      if (k === "" || want.link) continue;
      const got = hidden[k];
      if (!got) { if (want.optional) continue; console.log(`${k} is not installed`); process.exit(1); }
      if (got.version !== want.version) { console.log(`${k} is ${got.version}, lock wants ${want.version}`); process.exit(1); }
      if (!fs.existsSync(k + "/package.json")) { console.log(`${k}/package.json is missing`); process.exit(1); }
    }
    for (const k of Object.keys(hidden)) if (!(k in lock)) { console.log(`${k} is not in package-lock.json`); process.exit(1); }
  '
}

# After an install: the prebuilt binaries the kit relies on must load. None of them needs its install script
# (npm 11 warns about install scripts not covered by allowScripts but still runs them; zeromq's only builds
# from source when no prebuilt addon matches), so a failure here means a broken or blocked install.
check_native() {
  node -e '
    const fs = require("fs");
    const problems = [];
    const tryIt = (what, fn) => { try { fn(); } catch (e) { problems.push(`${what}: ${String(e.message).split("\n")[0]}`); } };
    tryIt("zeromq (tslab kernel transport)", () => require("zeromq"));
    tryIt("sharp", () => require("sharp"));
    tryIt("esbuild (tsx)", () => require("esbuild").transformSync("let a: number = 1", { loader: "ts" }));
    const plat = process.platform === "darwin" ? "darwin-universal" : `${process.platform}-${process.arch}`;
    const dawn = `node_modules/webgpu/dist/${plat}/dawn.node`;
    if (!fs.existsSync(dawn)) problems.push(`webgpu: ${dawn} is missing`);
    if (problems.length) { console.log(problems.join("\n")); process.exit(1); }
  '
}

if [ -d node_modules ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$lock_hash" ]; then
  : # installed from this very lock file, by this Node ABI
elif [ -d node_modules ] && why="$(installed_matches_lock)" && why="$(check_native)"; then
  # Installed by hand (`npm ci`/`npm install`) from this lock, or under another Node whose ABI the prebuilt
  # binaries also cover: adopt it rather than reinstalling.
  echo "$lock_hash" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
else
  if [ -d node_modules ]; then reason="stale: ${why%%$'\n'*}"; else reason="node_modules is missing"; fi
  say "npm ci ($reason) ..."
  t0=$SECONDS
  quietly npm ci --no-audit --no-fund || die "npm ci failed (output above)."
  if ! problems="$(check_native)"; then
    # A future npm may block install scripts; rebuilding runs them explicitly.
    quietly npm rebuild zeromq sharp esbuild webgpu || true
    problems="$(check_native)" || die "native packages do not load after npm ci:
$problems
  If npm blocked their install scripts, run: npm install-scripts approve zeromq esbuild sharp webgpu && npm ci"
  fi
  echo "$lock_hash" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
  say "npm ci done in $((SECONDS - t0)) s"
fi

# ---- 3. tslab kernel ------------------------------------------------------------------------------------------
[ -x "$PY" ] || die "$PY not found: set MSM_JUPYTER_PYTHON to the Python that has the Jupyter packages."
[ -x "$TSLAB_BIN" ] || die "$TSLAB_BIN is missing: node_modules is incomplete (rm -rf node_modules and rerun)."
[ -x "$KERNEL_CMD" ] || chmod +x "$KERNEL_CMD" # a checkout without file modes (core.fileMode=false)
# argv[0] of the kernelspec Jupyter would start for `tslab` (empty when none is registered).
kernel_binary() {
  PYDEVD_DISABLE_FILE_VALIDATION=1 "$PY" -c '
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
try:
    print(KernelSpecManager().get_kernel_spec("tslab").argv[0])
except NoSuchKernel:
    print("")
'
}
current="$(kernel_binary)" || die "$PY cannot import jupyter_client; reinstall: apt-get install --reinstall jupyter-client"
if [ "$current" != "$KERNEL_CMD" ]; then
  # --user: the per-user kernelspec takes precedence over system ones, so this registration is the one resolved.
  quietly "$TSLAB_BIN" install --user --python="$PY" --binary="$KERNEL_CMD" || die "tslab install failed."
  current="$(kernel_binary)"
  [ "$current" = "$KERNEL_CMD" ] ||
    die "registered the tslab kernel, but Jupyter still resolves 'tslab' to '$current' (JUPYTER_PATH shadows it?)."
  say "tslab kernel registered: $KERNEL_CMD"
fi

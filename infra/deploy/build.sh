#!/usr/bin/env bash
# `sam build` for devlake-autopilot, with the build environment the functions need:
#   AWS_LC_SYS_NO_JITTER_ENTROPY=1  aws-lc-sys skips jitter-entropy seeding, which otherwise costs
#                                   ~0.8 s on the first TLS call after a cold start.
#                                   It is a build-time switch of the crate, not a Lambda setting.
#   CARGO_TARGET_DIR               defaults to the workspace's target/ so dependencies compiled
#                                   for one function are reused by the next.
# Extra arguments go to `sam build` (e.g. --parameter-overrides Architecture=x86_64).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v cargo-lambda >/dev/null 2>&1 || ! command -v sam >/dev/null 2>&1; then
  eval "$(bash infra/local/setup.sh --env)"
fi
export AWS_LC_SYS_NO_JITTER_ENTROPY=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export SAM_CLI_TELEMETRY=0
# sam build needs no credentials, only some region to resolve pseudo parameters.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"

exec sam build "$@"

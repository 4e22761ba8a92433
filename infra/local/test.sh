#!/usr/bin/env bash
# Runs every check CI runs: installs the local stack, then formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash infra/local/setup.sh
eval "$(bash infra/local/setup.sh --env)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets

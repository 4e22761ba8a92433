#!/usr/bin/env bash
# Sizes of the function bootstraps as they are deployed: each function built on its own (as
# `sam build` does, so features resolve per function), with the release profile of Cargo.toml,
# stripped. Prints one line per function (every package under functions/) against the budget and
# exits 1 when one is over it.
#
#   bash infra/local/bench-size.sh            # x86_64 (this machine): cargo build --release
#   bash infra/local/bench-size.sh --arm64    # aarch64 as deployed: cargo lambda build --arm64 (zig)
#
# CARGO_TARGET_DIR is honoured (default: target/). Release builds with LTO take minutes per
# function when cold; the time each build took is printed too.
set -euo pipefail
cd "$(dirname "$0")/../.."

budget_mb=8
arch=x86_64
if [[ "${1:-}" == "--arm64" ]]; then arch=arm64; fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target_dir"
if [[ "$arch" == arm64 ]] && ! command -v cargo-lambda >/dev/null 2>&1; then
  eval "$(bash infra/local/setup.sh --env)"
fi

over=0
printf '%-22s %8s %8s %8s\n' function "MB" budget "build s"
for manifest in functions/*/Cargo.toml; do
  dir=$(dirname "$manifest")
  name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)
  started=$SECONDS
  if [[ "$arch" == arm64 ]]; then
    (cd "$dir" && cargo lambda build --release --arm64 --locked --bin "$name" >/dev/null 2>&1) \
      || { echo "build of $name failed: run (cd $dir && cargo lambda build --release --arm64)" >&2; exit 2; }
    bin="$target_dir/lambda/$name/bootstrap"
  else
    (cd "$dir" && cargo build --release --locked --bin "$name" >/dev/null 2>&1) \
      || { echo "build of $name failed: run (cd $dir && cargo build --release)" >&2; exit 2; }
    bin="$target_dir/release/$name"
  fi
  took=$((SECONDS - started))
  bytes=$(stat -c %s "$bin")
  mb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
  verdict=ok
  if awk -v b="$bytes" -v m="$budget_mb" 'BEGIN { exit !(b >= m * 1048576) }'; then
    verdict=OVER
    over=1
  fi
  printf '%-22s %8s %8s %8s  %s\n' "$name" "$mb" "< $budget_mb" "$took" "$verdict"
done
echo "($arch, MB = 2^20 bytes, release profile of Cargo.toml${CARGO_PROFILE_RELEASE_LTO:+, overridden by CARGO_PROFILE_RELEASE_* from the environment})"
exit "$over"

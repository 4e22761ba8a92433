#!/usr/bin/env bash
# Runs every check CI runs: installs the local stack, then formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash infra/local/setup.sh
eval "$(bash infra/local/setup.sh --env)"

# ---- deploy artefacts: template.yaml, samconfig.toml, infra/prometheus, infra/grafana -----------
# Each tool's output is shown only when it fails. SKIP_SAM_BUILD=1 skips the slow `sam build`
# (a release build of the three functions) for quick local runs; CI always runs it.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    echo "FAILED: $*" >&2
    return 1
  fi
  rm -f "$log"
}
export SAM_CLI_TELEMETRY=0
# Neither tool needs credentials, only a region to resolve pseudo parameters.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

echo "== cfn-lint template.yaml"
quiet cfn-lint template.yaml
echo "== sam validate --lint"
quiet sam validate --lint --template-file template.yaml
echo "== promtool check rules / test rules / check config"
quiet promtool check rules infra/prometheus/rules.yml
(cd infra/prometheus && quiet promtool test rules rules.test.yml)
# The example scrape config points at a token file that only exists on a Prometheus host.
prom_tmp=$(mktemp -d)
cp infra/prometheus/rules.yml "$prom_tmp/"
echo "example-token" >"$prom_tmp/token"
sed "s#credentials_file: .*#credentials_file: $prom_tmp/token#" infra/prometheus/prometheus.yml \
  >"$prom_tmp/prometheus.yml"
quiet promtool check config "$prom_tmp/prometheus.yml"
rm -rf "$prom_tmp"
echo "== grafana dashboard queries"
quiet python3 infra/grafana/check_dashboard.py infra/grafana/devlake-autopilot.json
if [[ "${SKIP_SAM_BUILD:-0}" != "1" ]]; then
  echo "== sam build (release build of the three functions; slow when cold)"
  # Artefacts go under target/ (ignored by git); the binaries must be ELF executables.
  quiet bash infra/deploy/build.sh --build-dir target/sam-build
  for fn in AutomationFunction MonitorFunction MetricsFunction; do
    bin="target/sam-build/$fn/bootstrap"
    if [[ "$(head -c 4 "$bin" 2>/dev/null | od -An -c | tr -d ' ')" != "177ELF" ]]; then
      echo "FAILED: sam build produced no ELF $bin" >&2
      exit 1
    fi
  done
fi
# ---- end of deploy artefacts ---------------------------------------------------------------------

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets

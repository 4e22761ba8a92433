#!/usr/bin/env bash
# Runs every check CI runs: installs the local stack, then formatting, lints, the template and
# infrastructure checks, and the whole test suite (one `cargo test` invocation, last, so the output
# ends with cargo's summary lines).
#
#   bash infra/local/test.sh
#
# Needs no Docker, no AWS account and no TTY. Under CI (CI=true) cargo runs with --locked.
set -euo pipefail
cd "$(dirname "$0")/../.."

# rustup's default location, for shells that did not source ~/.cargo/env.
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

step_started=$SECONDS
step() {
  printf '== %s (%ds so far)\n' "$*" "$SECONDS"
  step_started=$SECONDS
}
step_done() { printf '   done in %ds\n' "$((SECONDS - step_started))"; }

locked=()
if [[ "${CI:-}" == "true" ]]; then
  locked=(--locked)
  # A one-off build from a clean clone gains nothing from incremental compilation: it only
  # writes query caches (slower, and gigabytes of disk) that no later build reads.
  export CARGO_INCREMENTAL=0
fi

step "setup (infra/local/setup.sh)"
bash infra/local/setup.sh
eval "$(bash infra/local/setup.sh --env)"
export PATH DYNAMODB_LOCAL_DIR
step_done

step "cargo fmt --check"
cargo fmt --all -- --check --color never
step_done

step "cargo clippy"
cargo clippy "${locked[@]}" --workspace --all-targets -- -D warnings
step_done

step "cargo machete (no unused dependencies)"
cargo machete
step_done

step "documentation: links, anchors, runbook URLs, alarm sections, no outside references"
python3 infra/local/check_docs.py --self-test
python3 infra/local/check_docs.py
step_done

# ---- deploy artefacts: template.yaml, samconfig.toml, infra/prometheus, infra/grafana -----------
# Before the tests, so the test summary stays the last thing printed. Each tool's output is shown
# only when it fails. SKIP_SAM_BUILD=1 skips `sam build` for quick local runs; CI runs it.
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
# Neither SAM nor cfn-lint needs credentials, only a region to resolve pseudo parameters.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

step "cfn-lint template.yaml, sam validate --lint (default, and with VPC and KMS key given)"
quiet cfn-lint template.yaml
quiet sam validate --lint --template-file template.yaml
# The optional VPC, key and created-secret branches are linted as deployed: in a copy whose
# defaults are those parameters set (cfn-lint's --parameters does not check the branches).
variant=$(mktemp --suffix .yaml)
quiet python3 - template.yaml "$variant" \
  VpcSubnetIds=subnet-0123456789abcdef0,subnet-0fedcba9876543210 \
  VpcSecurityGroupIds=sg-0123456789abcdef0 \
  KmsKeyArn=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \
  DevLakeApiKey=dlk-example <<'PY'
import re, sys
src, dst, *pairs = sys.argv[1:]
text = open(src).read()
for pair in pairs:
    name, value = pair.split("=", 1)
    param = re.compile(r'(\n  %s:\n(?:    .*\n)*?    Default: )""' % re.escape(name))
    text, found = param.subn(lambda m: m.group(1) + '"%s"' % value, text, count=1)
    if found != 1:
        sys.exit('no parameter %s with Default ""' % name)
open(dst, "w").write(text)
PY
quiet cfn-lint "$variant"
quiet sam validate --lint --template-file "$variant"
rm -f "$variant"
step_done

step "checkov template.yaml (each finding fixed, or skipped in the resource's Metadata with a reason)"
# --skip-download: no call to the vendor's platform (severities, links); the checks are local.
quiet checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet
step_done

step "promtool check rules / test rules / check config, grafana dashboard queries"
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
quiet python3 infra/grafana/check_dashboard.py infra/grafana/devlake-autopilot.json
step_done

if [[ "${SKIP_SAM_BUILD:-0}" != "1" ]]; then
  step "sam build (the four functions for arm64, with cheap codegen)"
  # What this checks: the template's build metadata (BuildMethod, Binary) builds every function
  # through SAM and cargo-lambda, the cross-compilation for arm64 (C code included) links, and
  # each artefact is an ELF executable. The release profile's codegen (optimisation, thin LTO,
  # one codegen unit) changes none of that and costs most of a cold build (about 8 of a fresh
  # machine's 15 minutes), so it is overridden here through the environment, which cargo
  # honours over Cargo.toml and cargo-lambda passes on unchanged (it adds settings of its own
  # only where Cargo.toml sets none). These artefacts are therefore larger and slower than
  # deployed ones and are not measured: sizes and cold starts of the real profile are
  # benchmarks (docs/benchmarks.md). Artefacts go under target/ (ignored by git).
  export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256
  sam_args=(--build-dir target/sam-build)
  # arm64 is the template's default; without the aarch64 standard library (rustup could not fetch
  # it) the same template is built for x86_64 rather than not at all.
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    echo "   (aarch64 target missing: building Architecture=x86_64)"
    sam_args+=(--parameter-overrides Architecture=x86_64)
  fi
  quiet bash infra/deploy/build.sh "${sam_args[@]}"
  for fn in AutomationFunction MonitorFunction MetricsFunction EventsFunction; do
    bin="target/sam-build/$fn/bootstrap"
    if [[ "$(head -c 4 "$bin" 2>/dev/null | od -An -c | tr -d ' ')" != "177ELF" ]]; then
      echo "FAILED: sam build produced no ELF $bin" >&2
      exit 1
    fi
  done
  unset CARGO_PROFILE_RELEASE_OPT_LEVEL CARGO_PROFILE_RELEASE_LTO CARGO_PROFILE_RELEASE_CODEGEN_UNITS
  step_done
fi
# ---- end of deploy artefacts ---------------------------------------------------------------------

step "end to end: the local demo, non-interactive (infra/local/demo.sh checks its own results)"
demo_log=$(mktemp)
if ! bash infra/local/demo.sh >"$demo_log" 2>&1; then
  cat "$demo_log"
  echo "FAILED: bash infra/local/demo.sh" >&2
  exit 1
fi
grep -a "checks passed" "$demo_log" | sed 's/^/   /'
rm -f "$demo_log"
step_done

step "cargo test"
# --no-fail-fast: every test binary runs, and cargo lists all failed targets at the end.
cargo test "${locked[@]}" --no-fail-fast --workspace --lib --tests

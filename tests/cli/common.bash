# Shared helpers for the command-line tests (sourced).
set -euo pipefail
BUILD=${IKV_BUILD_DIR:-build}
EVAL="$BUILD/ikv-eval"
TMP=$(mktemp -d /tmp/ikv-cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
# Other processes on a 2-core machine make spinning OpenMP threads crawl; sleeping waits cost
# nothing here and change no result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
pass() { echo "ok: $1"; }
bad() { echo "FAIL: $1" >&2; fails=$((fails + 1)); }
# expect_error NAME PATTERN -- command...: exit code 2, one line on stderr matching PATTERN, no stdout.
expect_error() {
  local name=$1 pattern=$2; shift 3
  local rc=0
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  if [[ $rc -ne 2 ]]; then bad "$name: exit $rc, want 2 ($(cat "$TMP/err"))"; return; fi
  if [[ $(wc -l <"$TMP/err") -ne 1 ]]; then bad "$name: stderr is not one line: $(cat "$TMP/err")"; return; fi
  if ! grep -q -- "$pattern" "$TMP/err"; then bad "$name: stderr '$(cat "$TMP/err")' lacks '$pattern'"; return; fi
  if [[ -s "$TMP/out" ]]; then bad "$name: wrote to stdout"; return; fi
  pass "$name"
}
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }
data_root() {
  if [[ -n "${IKV_DATA:-}" ]]; then echo "$IKV_DATA"; elif [[ -d ../shared/ikv-data ]]; then echo ../shared/ikv-data; fi
}
# What two runs of the same numbers share: a JSON report's results without wall times, and a
# Markdown report without its provenance and wall-time sections.
report_results() {
  python3 -c 'import json, sys
for e in json.load(open(sys.argv[1]))["results"]:
    e.pop("seconds", None); print(json.dumps(e, sort_keys=True))' "$1"
}
report_table() { sed '/^## Provenance/,$d; /^## Wall time per cell/,$d' "$1"; }
finish() { if [[ $fails -ne 0 ]]; then echo "$fails failed" >&2; exit 1; fi; }

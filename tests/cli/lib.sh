# tests/cli/lib.sh — a small harness for CLI tests that run the real binaries.
#
#   source "$(dirname "$0")/lib.sh"
#   expect 0 '' -- n3-inspect "$T/a.n3"              # exit code, stderr regex ('' = no check)
#   expect 1 'error: .*truncated' -- n3-inspect "$T/cut.n3"
#   expect_stdin FILE 1 'pattern' -- cmd ...          # same, with stdin from FILE
#   assert_no_file "$T/out.n3"                       # a failed run left no output
#   assert_file "$T/out.n3"; assert_eq A B "what"; assert_match REGEX FILE "what"
#   finish                                           # prints "N passed, N failed", exit status
#
# Every case's stdout is in $T/out and stderr in $T/err. $T is a fresh folder removed at exit.
# N3_TOOLS (the built tools), N3_SRC (the source tree) and N3_PYTHON come from ctest.
set -u
: "${N3_TOOLS:?run through ctest, or set N3_TOOLS to the built tools folder}"
: "${N3_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${N3_PYTHON:=/usr/bin/python3}"
export PATH="$N3_TOOLS:$PATH"
T=$(mktemp -d "${TMPDIR:-/tmp}/n3-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
_passed=0
_failed=0
_skipped=""
_case=""

_fail() {
    _failed=$((_failed + 1))
    echo "FAIL: ${_case}: $*" >&2
    if [ -s "$T/err" ]; then echo "  stderr: $(head -c 600 "$T/err")" >&2; fi
}
_pass() { _passed=$((_passed + 1)); }

# expect CODE STDERR_REGEX -- command...
expect() {
    local code=$1 pattern=$2
    shift 2
    [ "$1" = "--" ] && shift
    _case="$*"
    "$@" >"$T/out" 2>"$T/err" </dev/null
    _check $? "$code" "$pattern"
}

# expect_stdin FILE CODE STDERR_REGEX -- command...
expect_stdin() {
    local input=$1 code=$2 pattern=$3
    shift 3
    [ "$1" = "--" ] && shift
    _case="$* < $input"
    "$@" <"$input" >"$T/out" 2>"$T/err"
    _check $? "$code" "$pattern"
}

_check() {
    local got=$1 code=$2 pattern=$3
    if [ "$got" != "$code" ]; then
        _fail "exit $got, expected $code"
        return 1
    fi
    if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$T/err"; then
        _fail "stderr does not match /$pattern/"
        return 1
    fi
    # House style: every error line is "n3-<tool>: error: ..." in lower case.
    if [ "$code" != 0 ] && ! grep -Eq '^(n3-[a-z-]+|[a-z0-9-]+\.sh): error: [^A-Z]' "$T/err"; then
        _fail "no 'n3-<tool>: error: ...' line on stderr"
        return 1
    fi
    _pass
}

assert_no_file() {
    _case="no output file $1"
    local left
    local base
    base=$(basename "$1")
    left=$(ls -A "$(dirname "$1")" 2>/dev/null | grep -Fx -e "$base" || true)
    left+=$(ls -A "$(dirname "$1")" 2>/dev/null | grep -F ".$base.tmp." || true)
    if [ -e "$1" ] || [ -n "$left" ]; then _fail "$1 (or its temporary file) exists"; else _pass; fi
}
assert_file() {
    _case="output file $1"
    if [ -s "$1" ]; then _pass; else _fail "$1 missing or empty"; fi
}
assert_eq() {
    _case="${3:-values equal}"
    if [ "$1" = "$2" ]; then _pass; else _fail "'$1' != '$2'"; fi
}
assert_match() {
    _case="${3:-$2 matches /$1/}"
    if grep -Eq -- "$1" "$2"; then _pass; else _fail "$2 does not match /$1/: $(head -c 300 "$2")"; fi
}

# skip REASON: what follows cannot run here; the test ends now and ctest shows it as skipped
# (exit 77), unless a case before it failed.
skip() {
    _skipped=$*
    echo "SKIP: $*"
    finish
    exit $?
}

finish() {
    echo "$_passed passed, $_failed failed"
    [ "$_failed" = 0 ] || return 1
    [ -z "$_skipped" ] || return 77
}

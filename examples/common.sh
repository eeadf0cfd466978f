# examples/common.sh — what the example scripts share. Sourced, never run:
#
#   NAME=star.sh; here=$(cd "$(dirname "$0")" && pwd); . "$here/common.sh"
#
# die MSG (exit 2 with "NAME: error: MSG"), need OPT "$@" (an option has its value),
# isnum OPT VALUE (a whole number), usage (print the script's header comment and exit 0),
# require TOOL... (on PATH, or say how to get it), require_fmnist DIR, workdir (a temporary
# folder $W, removed at exit with the background jobs listed in pids), keys ARGS... (n3-keys,
# quiet unless it fails), enroll NAME (a member's key $W/NAME.key and public record $W/NAME.pub,
# issued by the authority $W/fed.ask that `authority` creates), json_num FIELD (a number from
# the JSON on stdin), json_str FIELD (a string from it), elapsed START (seconds since START, a `date +%s.%N`).
N3_BIN=${N3_BIN:-$here/../build/tools}
[ -x "$N3_BIN/n3-train" ] && export PATH="$N3_BIN:$PATH"
DATA=${DATA:-/usr/share/datasets/fashion-mnist}

die() { echo "$NAME: error: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
# fed_option FLAG VALUE: the flags star.sh, simulate.sh and slurm/federation.sh share (members,
# rounds, each member's training and packing, the hub's quorum and timeout); sets the variable
# and succeeds, or fails for any other flag.
fed_option() {
    case $1 in
        --members) need "$@"; MEMBERS=$2 ;;
        --rounds) need "$@"; ROUNDS=$2 ;;
        --limit) need "$@"; LIMIT=$2 ;;
        --partition) need "$@"; PARTITION=$2 ;;
        --model) need "$@"; MODEL=$2 ;;
        --epochs) need "$@"; EPOCHS=$2 ;;
        --batch) need "$@"; BATCH=$2 ;;
        --lr) need "$@"; LR=$2 ;;
        --momentum) need "$@"; MOMENTUM=$2 ;;
        --pack) need "$@"; PACK=$2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2 ;;
        --quorum) need "$@"; QUORUM=$2 ;;
        --timeout) need "$@"; TIMEOUT=$2 ;;
        *) return 1 ;;
    esac
}
isnum() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number, not '$2'"; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0; }
require() {
    local t
    for t; do
        command -v "$t" >/dev/null && continue
        case $t in
            n3-*) die "$t not found: run 'make build' first (or set N3_BIN)" ;;
            bible) die "bible not found: apt-get install bible-kjv" ;;
            flock) die "flock not found: apt-get install util-linux" ;;
            *) die "$t not found: apt-get install $t" ;;
        esac
    done
}
require_fmnist() {
    [ -f "$1/train-images-idx3-ubyte.gz" ] || die "no Fashion-MNIST in $1: apt-get install dataset-fashion-mnist"
}
workdir() {
    W=$(mktemp -d "${TMPDIR:-/tmp}/n3-${NAME%.sh}.XXXXXX")
    pids=()
    trap cleanup EXIT
}
# A background job is often a subshell running a pipeline: killing the subshell alone would leave
# the pipeline's processes running (a hub's n3-send --recv until its --timeout), so the whole
# tree goes, each process's children read before it is killed.
killtree() {
    local p=$1 c kids
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null) || true
    kill "$p" 2>/dev/null || true
    for c in $kids; do killtree "$c"; done
}
cleanup() { local p; for p in "${pids[@]}"; do killtree "$p"; done; rm -rf "$W"; }
keys() { n3-keys "$@" 2> "$W/keys.err" || { cat "$W/keys.err" >&2; return 1; }; }
authority() { keys authority -o "$W/fed.ask"; keys public "$W/fed.ask" > "$W/fed.pub"; }
enroll() { # NAME: the member makes its secrets, the authority issues, the member completes
    keys request --id "$1" -o "$W/$1.secret" > "$W/$1.req"
    keys issue --authority "$W/fed.ask" --log "$W/issued.log" -o "$W/$1.partial" < "$W/$1.req"
    keys complete --secret "$W/$1.secret" --partial "$W/$1.partial" -o "$W/$1.key"
    keys public "$W/$1.key" > "$W/$1.pub"
}
json_num() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p"; }
json_str() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
elapsed() { echo "$(date +%s.%N) - $1" | bc -l; }

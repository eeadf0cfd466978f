#!/usr/bin/env bash
# examples/cron/hub-serve.sh ENDPOINT MODEL — hand the current global model to every node that
# asks, for ever (n3-hub-serve.service runs it). Each pass waits for a subscriber, publishes the
# file, and starts over; when hub-merge.sh replaces the file (atomically: a new inode), the
# waiting pass is restarted so that nobody is handed the previous round's model.
set -uo pipefail
[ $# -eq 2 ] || { echo "usage: hub-serve.sh ENDPOINT MODEL" >&2; exit 2; }
pass=
trap 'kill $pass 2>/dev/null; exit 0' TERM INT
while :; do
    inode=$(stat -c %i "$2") || exit 2
    n3-send --pub "$1" --subscribers 1 --timeout 0 -q "$2" &
    pass=$!
    while kill -0 "$pass" 2>/dev/null; do
        sleep 0.5
        [ "$(stat -c %i "$2" 2>/dev/null)" = "$inode" ] || { kill "$pass" 2>/dev/null; break; }
    done
    wait "$pass"
    rc=$?
    [ "$rc" -ge 128 ] && continue    # restarted for a new model
    [ "$rc" -eq 2 ] && exit 2        # bad endpoint, address in use, unreadable file: say so, stop
    [ "$rc" -eq 0 ] || sleep 1
done

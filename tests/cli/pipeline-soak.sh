#!/usr/bin/env bash
# examples/chaos.sh --soak in a small setting (20 rounds, 2 members, a relay): the long-running
# processes (spool receiver, relay receiver and sender, hub-serve.sh) and every per-round tool
# stay flat (no growth over 10% after round 10) and leak no descriptor; nothing lost.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || skip "no Fashion-MNIST (dataset-fashion-mnist)"
[ -x "$N3_PYTHON" ] || skip "no python3 at $N3_PYTHON"
# AddressSanitizer keeps freed memory in its quarantine (256 MiB by default), so a long-lived
# process's resident memory grows by design there: growth says nothing about n3.
[ -z "${ASAN_OPTIONS:-}" ] || skip "resident memory under AddressSanitizer grows with its quarantine"
_case="chaos.sh --soak, 20 rounds"
if N3_BIN="$N3_TOOLS" PYTHON="$N3_PYTHON" timeout 1200 bash "$N3_SRC/examples/chaos.sh" --soak --rounds 20 --members 2 --limit 50 \
    --eval-limit 200 "$T/s" > "$T/log" 2>&1; then
    _pass
else
    _fail "exit $?: $(tail -8 "$T/log")"
fi
cat "$T/log"
for p in spool-receiver relay-receiver relay-sender hub-serve.sh; do
    assert_match "^process $p	" "$T/s/soak.tsv" "$p sampled"
done
for t in n3-train n3-seal n3-merge n3-send n3-encode; do
    assert_match "^tool $t	" "$T/s/soak.tsv" "$t's peaks recorded"
done
assert_eq "$(awk -F'\t' 'NR > 1 && $1 == 20' "$T/s/soak-long.tsv" | wc -l)" 4 "4 long-running processes sampled at round 20"
_case="every figure flat"; awk -F'\t' 'NR > 1 && $7 != "yes" { bad = 1 } END { exit bad }' "$T/s/soak.tsv" && _pass || _fail "$(cat "$T/s/soak.tsv")"
finish

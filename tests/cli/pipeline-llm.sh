#!/usr/bin/env bash
# examples/llm.sh --quick, made smaller still: a tiny base pretrained on the Old Testament, four
# New Testament members, 2 rounds of federated LoRA against local LoRA and full federated
# fine-tuning; the markdown table has every member and the LoRA update is a fraction of a full one.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
command -v bible >/dev/null || skip "bible-kjv not installed"
_case="llm.sh --quick, 2 rounds of 10 steps"
if N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/llm.sh" --quick --pretrain-steps 60 --steps 10 \
        --eval-limit 30 --out "$T/table.md" "$T/llm" > "$T/log" 2>&1
then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
for m in 'Gospels' 'Acts' 'Pauline epistles' 'General epistles, Revelation'; do
    assert_match "^\| $m \| [0-9]+ / [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$" "$T/table.md"
done
_case="federated LoRA lowers every member's held-out perplexity below the base's"
awk -F' *\\| *' '/^\| (Gospels|Acts|Pauline|General)/ { n++; if (!($6 < $4)) bad = 1 } END { exit bad || n != 4 }' \
    "$T/table.md" && _pass || _fail "$(cat "$T/table.md")"
_case="a LoRA update is under a fifth of a full update's bytes"
awk -F' *\\| *' '/^\| LoRA \/ full/ { r = $3 } END { exit !(r > 0 && r < 0.2) }' "$T/table.md" \
    && _pass || _fail "$(grep 'LoRA / full' "$T/table.md")"
expect 0 '' -- n3-inspect --check "$T/llm/base.n3" "$T/llm/adapter.n3" "$T/llm/full.n3"
expect 2 'llm.sh: error: unknown option --bogus' -- env N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/llm.sh" --bogus
expect 2 'llm.sh: error: --rounds must be a whole number' -- env N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/llm.sh" --rounds x "$T/x"
expect 2 'llm.sh: error: no text in KJV=' -- env KJV="$T/none.txt" N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/llm.sh" "$T/x"
finish

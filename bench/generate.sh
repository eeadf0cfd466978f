#!/usr/bin/env bash
# bench/generate.sh — n3-eval --generate against the same model and KV-cache sampling loop in
# PyTorch (Debian's python3-torch, the same libtorch): tokens/s of generation (target: n3 >=
# 1.5x Python) and tokens/s of prompt processing (the prompt's one pass). Also n3 without its
# KV cache, which is what the cache buys.
#   N3_BIN=build/tools bash bench/generate.sh      (about a minute; BENCH_SPEC, BENCH_VOCAB,
#   BENCH_TOKENS, BENCH_PROMPT, BENCH_THREADS, BENCH_REPEAT)
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
HERE=$(cd "$(dirname "$0")" && pwd)
SPEC=${BENCH_SPEC:-$HERE/../examples/models/gpt.yaml}
VOCAB=${BENCH_VOCAB:-8192}
TOKENS=${BENCH_TOKENS:-200}
PROMPT_TOKENS=${BENCH_PROMPT:-128}
THREADS=${BENCH_THREADS:-1}
REPEAT=${BENCH_REPEAT:-3}
PY=/usr/bin/python3
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
command -v bible >/dev/null || { echo "generate.sh: error: bible-kjv is not installed" >&2; exit 2; }

# The weights do not change the speed: a fresh model with a tokenizer trained on the Bible.
bible -f gen1:1-rev22:21 > "$OUT/kjv.txt"
sed "s/\b8192\b/$VOCAB/g" "$SPEC" > "$OUT/spec.yaml"
"$N3_BIN/n3-train" --tokenizer "$VOCAB" --data "$OUT/kjv.txt" -o "$OUT/tok.model"
"$N3_BIN/n3-train" --init-only --model "$OUT/spec.yaml" --tokenizer-model "$OUT/tok.model" -o "$OUT/m.n3"
# A prompt of PROMPT_TOKENS tokens: n3-eval reports how many the text became.
"$PY" - "$OUT/kjv.txt" "$PROMPT_TOKENS" > "$OUT/prompt" <<'PY'
import sys
words = open(sys.argv[1]).read().split()
print(" ".join(words[1000:1000 + int(int(sys.argv[2]) * 0.7)]), end="")
PY

field() { "$PY" -c "import json,sys; print('%.1f' % json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
best() { tr ' ' '\n' | sort -n | tail -1; }
SAMPLING=(--temperature 0.8 --top-k 40 --top-p 0.95 --seed 1)
n3_run() { # extra flags...
    OPENBLAS_NUM_THREADS=1 "$N3_BIN/n3-eval" "$OUT/m.n3" --generate "$(cat "$OUT/prompt")" \
        --tokens "$TOKENS" "${SAMPLING[@]}" --threads "$THREADS" --json "$@" 2>"$OUT/n3.json" >/dev/null
    cat "$OUT/n3.json"
}
n3_run > "$OUT/probe"
PT=$("$PY" -c "import json,sys; print(json.load(sys.stdin)['prompt_tokens'])" < "$OUT/probe")
py_run() {
    OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$PY" "$HERE/generate/torch_generate.py" \
        "$OUT/m.n3" --prompt-tokens "$PT" --tokens "$TOKENS" "${SAMPLING[@]}" \
        --threads "$THREADS"
}
n3g=""; n3p=""; pyg=""; pyp=""; nc=""
for _ in $(seq "$REPEAT"); do
    r=$(n3_run); n3g="$n3g $(echo "$r" | field tokens_per_s)"; n3p="$n3p $(echo "$r" | field prompt_tokens_per_s)"
    r=$(py_run); pyg="$pyg $(echo "$r" | field tokens_per_s)"; pyp="$pyp $(echo "$r" | field prompt_tokens_per_s)"
done
r=$(n3_run --no-cache); nc=$(echo "$r" | field tokens_per_s)
n3g=$(echo $n3g | best); n3p=$(echo $n3p | best); pyg=$(echo $pyg | best); pyp=$(echo $pyp | best)
params=$("$N3_BIN/n3-inspect" --json "$OUT/m.n3" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['elements'])")
echo "bench/generate: $(basename "$SPEC" .yaml) with vocab $VOCAB ($params parameters), prompt $PT tokens," \
     "$TOKENS tokens sampled (temperature 0.8, top-k 40, top-p 0.95), $THREADS thread(s), best of $REPEAT"
printf 'generation  n3-eval %8s tokens/s   python3-torch %8s tokens/s   ratio %.2fx (target >= 1.5x)\n' \
    "$n3g" "$pyg" "$("$PY" -c "print($n3g / $pyg)")"
printf 'prompt      n3-eval %8s tokens/s   python3-torch %8s tokens/s   ratio %.2fx\n' \
    "$n3p" "$pyp" "$("$PY" -c "print($n3p / $pyp)")"
printf 'no cache    n3-eval %8s tokens/s   (the KV cache is %.1fx faster)\n' "$nc" "$("$PY" -c "print($n3g / $nc)")"

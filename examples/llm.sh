#!/usr/bin/env bash
# examples/llm.sh — federated LoRA fine-tuning of a GPT-style language model on the King James
# Bible, against the pretrained base, each member's adapter alone and full federated training.
#
#   examples/llm.sh [options] [OUTDIR]                    (OUTDIR defaults to llm-out)
#
# A base model (examples/models/gpt.yaml, with a SentencePiece tokenizer trained on the same
# text, or any spec given with --model) is pretrained on the Old Testament. Four members then
# each hold a different part of the New Testament: the Gospels, Acts, the Pauline epistles
# (Romans to Hebrews) and the general epistles with Revelation; the last 10% of each member's
# verses are held out and never trained on. With the base frozen, every member trains a LoRA
# adapter (n3-train --adapter) and for R rounds the hub merges the adapter updates (FedAvg onto
# the adapter). For comparison each member also trains an adapter of its own for as many steps
# as it trained in the federation (local only), and the four run R rounds of full federated
# fine-tuning (every weight trained and merged). The table gives each member's held-out
# perplexity (per token) for (a) the base, (b) its local-only adapter, (c) the federated
# adapter, (d) the fully fine-tuned federated model, and the bytes of one round's updates
# (a LoRA update against a full update, as n3-train writes them and after n3-encode --zstd).
# It is printed and written as markdown to --out (default OUTDIR/llm.md).
#
# Options (defaults in brackets; --quick in braces):
#   --model SPEC [examples/models/gpt.yaml] {a byte-level 2-block transformer of width 32}
#   --pretrain-steps N [3000] {150}  --rounds R [10] {2}  --steps S local steps per round [100] {20}
#   --batch B [16]  --lr LR pretraining, Adam [0.001] {0.003}
#   --lora RANK[:ALPHA] [8:16] {4:8}  --lora-targets LIST [attn,mlp]  --lora-lr LR [0.002] {0.01}
#   --full-lr LR full fine-tuning [0.0003] {0.003}  --eval-limit N held-out lines (0: all) [0] {60}
#   --seed S [1]  --quick (the sizes in braces: a few minutes on two cores)
#   --out FILE the markdown table [OUTDIR/llm.md]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), KJV (a text file in the
# format of bible(1), the whole Bible, to use instead of running bible).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SPEC="$here/models/gpt.yaml" PRETRAIN=3000 ROUNDS=10 STEPS=100 BATCH=16 LR=0.001
LORA=8:16 TARGETS=attn,mlp LORA_LR=0.002 FULL_LR=0.0003 EVAL_LIMIT=0 SEED=1 QUICK=0
OUT=llm-out NAME=llm.sh TABLE=""
. "$here/common.sh"
set_spec=0 set_pre=0 set_rounds=0 set_steps=0 set_lr=0 set_lora=0 set_llr=0 set_flr=0 set_eval=0
while [ $# -gt 0 ]; do
    case $1 in
        --model) need "$@"; SPEC=$2; set_spec=1; shift 2 ;;
        --pretrain-steps) need "$@"; PRETRAIN=$2; set_pre=1; shift 2 ;;
        --rounds) need "$@"; ROUNDS=$2; set_rounds=1; shift 2 ;;
        --steps) need "$@"; STEPS=$2; set_steps=1; shift 2 ;;
        --batch) need "$@"; BATCH=$2; shift 2 ;;
        --lr) need "$@"; LR=$2; set_lr=1; shift 2 ;;
        --lora) need "$@"; LORA=$2; set_lora=1; shift 2 ;;
        --lora-targets) need "$@"; TARGETS=$2; shift 2 ;;
        --lora-lr) need "$@"; LORA_LR=$2; set_llr=1; shift 2 ;;
        --full-lr) need "$@"; FULL_LR=$2; set_flr=1; shift 2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2; set_eval=1; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        --out) need "$@"; TABLE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) OUT=$1; shift ;;
    esac
done
if [ "$QUICK" = 1 ]; then # explicit flags win over --quick's sizes
    [ $set_pre = 1 ] || PRETRAIN=150
    [ $set_rounds = 1 ] || ROUNDS=2
    [ $set_steps = 1 ] || STEPS=20
    [ $set_lr = 1 ] || LR=0.003
    [ $set_lora = 1 ] || LORA=4:8
    [ $set_llr = 1 ] || LORA_LR=0.01
    [ $set_flr = 1 ] || FULL_LR=0.003
    [ $set_eval = 1 ] || EVAL_LIMIT=60
fi
isnum --pretrain-steps "$PRETRAIN"; isnum --rounds "$ROUNDS"; isnum --steps "$STEPS"
isnum --batch "$BATCH"; isnum --eval-limit "$EVAL_LIMIT"; isnum --seed "$SEED"
[ "$ROUNDS" -ge 1 ] && [ "$STEPS" -ge 1 ] && [ "$PRETRAIN" -ge 1 ] ||
    die "--pretrain-steps, --rounds and --steps must be at least 1"
[ "$QUICK" = 1 ] && [ $set_spec = 0 ] || [ -s "$SPEC" ] || die "no model spec $SPEC"
require n3-train n3-eval n3-encode n3-merge n3-inspect
if [ -n "${KJV:-}" ]; then
    [ -s "$KJV" ] || die "no text in KJV=$KJV (no such file, or empty)"
else
    require bible
fi
mkdir -p "$OUT"
[ -n "$TABLE" ] || TABLE="$OUT/llm.md"
workdir
if [ -n "${KJV:-}" ]; then cp "$KJV" "$W/kjv.txt"; else bible -f gen1:1-rev22:21 > "$W/kjv.txt"; fi
# verses between two references (as bible(1) prints them: Ge1:1, Mat1:1, ...), text only
verses() { awk -v a="$1" -v b="$2" '{ ref = $1 } ref == a { on = 1 } on { sub(/^[^ ]* /, ""); print } ref == b { exit }' "$W/kjv.txt"; }
verses Ge1:1 Mal4:6 > "$W/ot.txt"
[ -s "$W/ot.txt" ] || die "no Old Testament (Ge1:1 to Mal4:6) in the text"
MEMBERS=("Gospels" "Acts" "Pauline epistles" "General epistles, Revelation")
RANGES=("Mat1:1 John21:25" "Acts1:1 Acts28:31" "Rom1:1 Heb13:25" "Jas1:1 Rev22:21")
for i in 0 1 2 3; do
    # shellcheck disable=SC2086
    verses ${RANGES[$i]} > "$W/m$i-all.txt"
    n=$(wc -l < "$W/m$i-all.txt")
    [ "$n" -ge 20 ] || die "too little text for member ${MEMBERS[$i]}"
    keep=$((n - n / 10))
    head -n "$keep" "$W/m$i-all.txt" > "$W/m$i-train.txt"
    tail -n +"$((keep + 1))" "$W/m$i-all.txt" > "$W/m$i-held.txt"
done

if [ "$QUICK" = 1 ] && [ $set_spec = 0 ]; then
    SPEC="$W/tiny.yaml"
    cat > "$SPEC" <<'Y'
name: tiny-gpt
task: lm
vocab: 256
context: 64
layers:
  - {type: embedding, name: tok, vocab: 256, dim: 32}
  - {type: transformer, name: block0, dim: 32, heads: 2, hidden: 64, rotary: true}
  - {type: transformer, name: block1, dim: 32, heads: 2, hidden: 64, rotary: true}
  - {type: layernorm, name: ln_f, dim: 32}
  - {type: linear, name: head, tied: tok}
Y
fi
tok=()
if grep -q '^tokenizer: *sentencepiece' "$SPEC"; then
    vocab=$(sed -n 's/^vocab: *\([0-9]*\).*/\1/p' "$SPEC")
    n3-train --tokenizer "$vocab" --data "$W/ot.txt" --split all -o "$W/tok.model"
    tok=(--tokenizer-model "$W/tok.model")
fi
echo "llm: pretraining $(basename "$SPEC") on the Old Testament ($PRETRAIN steps)"
n3-train --model "$SPEC" --init-only --seed "$SEED" "${tok[@]}" -o "$W/init.n3"
n3-train --init "$W/init.n3" --data "$W/ot.txt" --split all --optimizer adam --lr "$LR" \
    --steps "$PRETRAIN" --batch "$BATCH" --seed "$SEED" --threads 2 -q --emit model -o "$OUT/base.n3"
BASE="$OUT/base.n3"

elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")
ppl() { # MEMBER MODEL [--adapter A]: perplexity on the member's held-out verses
    local m=$1
    shift
    n3-eval "$@" --data "$W/m$m-held.txt" --split all "${elimit[@]}" --threads 2 --json -q | json_num perplexity
}
train() { # MEMBER SEED ARGS...: n3-train on the member's training verses
    n3-train --data "$W/m$1-train.txt" --split all --optimizer adam --batch "$BATCH" --seed "$2" \
        --threads 1 -q "${@:3}"
}
parallel() { # CMD... with MEMBER in $i, for the four members at once
    local i
    local ps=()
    for i in 0 1 2 3; do
        "$@" "$i" &
        ps+=($!)
    done
    pids=("${ps[@]}")
    for p in "${ps[@]}"; do wait "$p" || die "a member failed"; done
    pids=()
}

# (c) federated LoRA
n3-train --init "$BASE" --lora "$LORA" --lora-targets "$TARGETS" --init-only --seed "$SEED" -o "$W/a0.n3"
echo "llm: federated LoRA ($LORA, $TARGETS), $ROUNDS rounds of $STEPS steps"
lora_round() { train "$2" "$((r * 100 + $2))" --init "$BASE" --adapter "$W/a$((r - 1)).n3" --lr "$LORA_LR" \
    --steps "$STEPS" -o "$W/lu$2.n3"; }
for r in $(seq 1 "$ROUNDS"); do
    parallel lora_round "$r"
    n3-merge --base "$W/a$((r - 1)).n3" "$W"/lu?.n3 -o "$W/a$r.n3"
done
cp "$W/a$ROUNDS.n3" "$OUT/adapter.n3"
lora_bytes=$(stat -c %s "$W/lu0.n3")
lora_zstd=$(n3-encode --zstd "$W/lu0.n3" | wc -c)

# (b) each member's adapter alone, for as many steps
echo "llm: local-only LoRA, $((ROUNDS * STEPS)) steps per member"
local_lora() { train "$1" "$SEED" --init "$BASE" --adapter "$W/a0.n3" --lr "$LORA_LR" \
    --steps "$((ROUNDS * STEPS))" --emit model -o "$W/local$1.n3"; }
parallel local_lora

# (d) full federated fine-tuning
echo "llm: full federated fine-tuning, $ROUNDS rounds of $STEPS steps"
cp "$BASE" "$W/g0.n3"
full_round() { train "$2" "$((r * 100 + $2))" --init "$W/g$((r - 1)).n3" --lr "$FULL_LR" --steps "$STEPS" \
    -o "$W/fu$2.n3"; }
for r in $(seq 1 "$ROUNDS"); do
    parallel full_round "$r"
    n3-merge --base "$W/g$((r - 1)).n3" "$W"/fu?.n3 -o "$W/g$r.n3"
done
cp "$W/g$ROUNDS.n3" "$OUT/full.n3"
full_bytes=$(stat -c %s "$W/fu0.n3")
full_zstd=$(n3-encode --zstd "$W/fu0.n3" | wc -c)

elements() { n3-inspect "$1" | sed -n 's/^  tensors *[0-9]* (\([0-9]*\) elements.*/\1/p'; }
params=$(elements "$BASE")
lparams=$(elements "$W/a0.n3")
{
    echo "## Federated LoRA on the King James Bible"
    echo
    echo "Base: $(basename "$SPEC") ($params parameters), pretrained $PRETRAIN steps on the Old Testament."
    echo "Four members, $ROUNDS rounds of $STEPS local steps (Adam, batch $BATCH); LoRA $LORA on $TARGETS"
    echo "($lparams adapter parameters, lr $LORA_LR), full fine-tuning lr $FULL_LR. Held-out perplexity per"
    echo "token on the last 10% of each member's verses${elimit:+ (first $EVAL_LIMIT lines)}."
    echo
    echo "| member | verses (train / held out) | base | local LoRA | federated LoRA | federated full |"
    echo "|---|---|---|---|---|---|"
    for i in 0 1 2 3; do
        printf '| %s | %d / %d | %.2f | %.2f | %.2f | %.2f |\n' "${MEMBERS[$i]}" \
            "$(wc -l < "$W/m$i-train.txt")" "$(wc -l < "$W/m$i-held.txt")" \
            "$(ppl $i "$BASE")" "$(ppl $i "$BASE" --adapter "$W/local$i.n3")" \
            "$(ppl $i "$BASE" --adapter "$OUT/adapter.n3")" "$(ppl $i "$OUT/full.n3")"
    done
    echo
    echo "| bytes per member and round | update record | n3-encode --zstd |"
    echo "|---|---|---|"
    echo "| LoRA update | $lora_bytes | $lora_zstd |"
    echo "| full update | $full_bytes | $full_zstd |"
    printf '| LoRA / full | %.3f | %.3f |\n' "$(echo "$lora_bytes / $full_bytes" | bc -l)" \
        "$(echo "$lora_zstd / $full_zstd" | bc -l)"
} > "$W/table.md"
cp "$W/table.md" "$TABLE"
cat "$TABLE"

#!/usr/bin/env bash
# CLI tests for the language model: SentencePiece tokenizers in model records, rotary positions
# and a tied head, KV-cache generation against uncached generation, streaming and --interactive.
source "$(dirname "$0")/lib.sh"
command -v n3-train >/dev/null || skip "n3-train is not built (no libtorch)"
command -v bible >/dev/null || skip "bible-kjv is not installed"
# The tools link libtorch, whose protobuf collides with libsentencepiece's unless the tokenizer
# module is loaded with RTLD_DEEPBIND, which AddressSanitizer cannot run.
[ -z "${ASAN_OPTIONS:-}" ] || skip "SentencePiece in a libtorch process needs RTLD_DEEPBIND, which AddressSanitizer cannot run"
bible -f gen1:1-gen50:26 > "$T/gen.txt"
bible -f ex1:1-ex10:29 > "$T/ex.txt"
cat > "$T/lm.yaml" <<'Y'
task: lm
tokenizer: sentencepiece
vocab: 600
context: 48
layers:
  - {type: embedding, name: tok, vocab: 600, dim: 32}
  - {type: transformer, name: block0, dim: 32, heads: 2, hidden: 64, rotary: true}
  - {type: transformer, name: block1, dim: 32, heads: 2, hidden: 64, rotary: true}
  - {type: layernorm, name: ln_f, dim: 32}
  - {type: linear, name: head, tied: tok}
Y
sed 's/600/700/g' "$T/lm.yaml" > "$T/lm700.yaml"
py() { "$N3_PYTHON" "$@"; }

# the tokenizer
expect 0 '' -- n3-train --tokenizer 600 --data "$T/gen.txt" -o "$T/tok.model"
assert_file "$T/tok.model"
expect 0 '' -- n3-train --tokenizer 600 --data "$T/gen.txt" -o "$T/tok2.model"
assert_eq "$(cmp -s "$T/tok.model" "$T/tok2.model" && echo same)" same "tokenizer training is deterministic"
expect 0 '' -- n3-train --tokenizer 600 --tokenizer-type bpe --data "$T/gen.txt" -o "$T/bpe.model"
assert_eq "$(cmp -s "$T/tok.model" "$T/bpe.model" || echo differ)" differ "--tokenizer-type bpe"
expect 2 'give -o FILE' -- n3-train --tokenizer 600 --data "$T/gen.txt"
expect 2 'needs --data' -- n3-train --tokenizer 600 -o "$T/x.model"
expect 2 'a vocabulary of 300 to' -- n3-train --tokenizer 50 --data "$T/gen.txt" -o "$T/x.model"
expect 2 'unigram or bpe' -- n3-train --tokenizer 600 --tokenizer-type words --data "$T/gen.txt" -o "$T/x.model"
expect 2 'trains only a tokenizer' -- n3-train --tokenizer 600 --model "$T/lm.yaml" --data "$T/gen.txt" -o "$T/x.model"
expect 2 'sentencepiece cannot train' -- n3-train --tokenizer 60000 --data "$T/gen.txt" -o "$T/x.model"
assert_no_file "$T/x.model"

# the record carries it
expect 0 '' -- n3-train --init-only --model "$T/lm.yaml" --tokenizer-model "$T/tok.model" -o "$T/init.n3"
expect 0 '' -- n3-inspect "$T/init.n3"
assert_match 'tokenizer +<[0-9]+ bytes; -v shows it>' "$T/out" "n3-inspect shows the tokenizer"
expect 0 '' -- n3-inspect --json "$T/init.n3"
hexlen=$(py -c "import json,sys; print(len(json.load(sys.stdin)['metadata']['tokenizer']))" < "$T/out")
assert_eq "$hexlen" "$(( $(stat -c %s "$T/tok.model") * 2 ))" "the metadata is the tokenizer file in hex"
expect 2 "give its --tokenizer-model" -- n3-train --init-only --model "$T/lm.yaml" -o "$T/x.n3"
expect 1 "the tokenizer has 600 pieces but the spec's vocab is 700" -- \
    n3-train --init-only --model "$T/lm700.yaml" --tokenizer-model "$T/tok.model" -o "$T/x.n3"
expect 1 'not a SentencePiece tokenizer' -- \
    n3-train --init-only --model "$T/lm.yaml" --tokenizer-model "$T/lm.yaml" -o "$T/x.n3"
expect 2 'a model record carries its tokenizer' -- \
    n3-train --init "$T/init.n3" --tokenizer-model "$T/tok.model" --data "$T/gen.txt" -o "$T/x.n3"
assert_no_file "$T/x.n3"
# a record whose spec says sentencepiece but that carries no tokenizer, or a broken one
py - "$T/init.n3" "$T/notok.st" "$T/badtok.st" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
i = b.index(b'{"')
n = struct.unpack('<Q', b[i - 8:i])[0]
h = json.loads(b[i:i + n]); data = b[i + n:]
end = max(v['data_offsets'][1] for k, v in h.items() if k != '__metadata__')
def write(path, meta):
    hh = dict(h); hh['__metadata__'] = meta
    hb = json.dumps(hh).encode(); hb += b' ' * ((8 - len(hb) % 8) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hb)) + hb + data[:end])
m = dict(h['__metadata__']); del m['tokenizer']; write(sys.argv[2], m)
m = dict(h['__metadata__']); m['tokenizer'] = m['tokenizer'][:200]; write(sys.argv[3], m)
PY
n3-inspect --from-safetensors "$T/notok.st" --kind model -o "$T/notok.n3"
n3-inspect --from-safetensors "$T/badtok.st" --kind model -o "$T/badtok.n3"
expect 1 'carries no tokenizer' -- n3-eval "$T/notok.n3" --data "$T/gen.txt"
expect 1 'not a SentencePiece tokenizer' -- n3-eval "$T/badtok.n3" --data "$T/gen.txt"
expect 1 'carries no tokenizer' -- n3-train --init "$T/notok.n3" --data "$T/gen.txt" -o "$T/x.n3"
assert_no_file "$T/x.n3"

# training and evaluating through the tokenizer; the model record keeps it
expect 0 '' -- n3-train --init "$T/init.n3" --data "$T/gen.txt" --steps 60 --batch 16 \
    --optimizer adam --lr 0.01 --threads 1 --emit model -o "$T/m.n3"
expect 0 '' -- n3-inspect --json "$T/m.n3"
assert_match '"tokenizer":"' "$T/out" "a trained model record keeps the tokenizer"
expect 0 '' -- n3-eval "$T/m.n3" --data "$T/gen.txt" --json
bpc=$(py -c "import json,sys; print(json.load(sys.stdin)['bits_per_char'])" < "$T/out")
ppl=$(py -c "import json,sys; print(json.load(sys.stdin)['perplexity'])" < "$T/out")
assert_eq "$(py -c "print($bpc < 3.5)")" True "bits per character $bpc after 60 steps"
assert_eq "$(py -c "print(1 < $ppl < 600)")" True "perplexity $ppl below the vocabulary's 600"
expect 0 '' -- n3-eval "$T/init.n3" --data "$T/gen.txt" --json
ppl0=$(py -c "import json,sys; print(json.load(sys.stdin)['perplexity'])" < "$T/out")
assert_eq "$(py -c "print($ppl < $ppl0 / 2)")" True "training lowers perplexity ($ppl0 -> $ppl)"
expect 0 '' -- n3-eval "$T/m.n3" --data "$T/gen.txt"
assert_match '^bits/char [0-9.]+  next-token accuracy [0-9.]+  loss [0-9.]+  perplexity [0-9.]+  tokens [0-9]+$' "$T/out" "text summary"
# an update merged onto the base keeps the base's tokenizer
expect 0 '' -- n3-train --init "$T/init.n3" --data "$T/ex.txt" --steps 5 --batch 8 --threads 1 -o "$T/u.n3"
expect 0 '' -- n3-merge --base "$T/init.n3" "$T/u.n3" -o "$T/merged.n3"
expect 0 '' -- n3-eval "$T/merged.n3" --data "$T/ex.txt" --limit 50

# generation: the KV cache gives the uncached tokens, streaming, sampling options
expect 0 '' -- n3-eval "$T/m.n3" --generate "And God said" --tokens 40 --temperature 0 --threads 1
cp "$T/out" "$T/cached"
expect 0 '' -- n3-eval "$T/m.n3" --generate "And God said" --tokens 40 --temperature 0 --threads 1 --no-cache
assert_eq "$(cmp -s "$T/out" "$T/cached" && echo same)" same "greedy: KV cache == no cache"
assert_eq "$(head -c 12 "$T/cached")" "And God said" "the output starts with the prompt"
assert_eq "$(py -c "import sys; print(len(open(sys.argv[1]).read()) > 40)" "$T/cached")" True "40 tokens are generated"
# sampled, with top-k and top-p: the same draw with and without the cache, and per --seed
expect 0 '' -- n3-eval "$T/m.n3" --generate "In the beginning" --tokens 30 --top-k 20 --top-p 0.9 --seed 4 --threads 1
cp "$T/out" "$T/s1"
expect 0 '' -- n3-eval "$T/m.n3" --generate "In the beginning" --tokens 30 --top-k 20 --top-p 0.9 --seed 4 --threads 1 --no-cache
assert_eq "$(cmp -s "$T/out" "$T/s1" && echo same)" same "sampling: KV cache == no cache"
expect 0 '' -- n3-eval "$T/m.n3" --generate "In the beginning" --tokens 30 --top-k 20 --top-p 0.9 --seed 5 --threads 1
assert_eq "$(cmp -s "$T/out" "$T/s1" || echo differ)" differ "another --seed, another text"
expect 0 '' -- n3-eval "$T/m.n3" --generate "And" --tokens 10 --top-k 1 --seed 9 --threads 1
cp "$T/out" "$T/k1"
expect 0 '' -- n3-eval "$T/m.n3" --generate "And" --tokens 10 --temperature 0 --threads 1
assert_eq "$(cmp -s "$T/out" "$T/k1" && echo same)" same "--top-k 1 is greedy"
expect 0 'generated 20 tokens in [0-9.]+ s \([0-9.]+ tokens/s\)' -- n3-eval "$T/m.n3" --generate "x" --tokens 20 -v
expect 0 '"tokens":20,.*"tokens_per_s"' -- n3-eval "$T/m.n3" --generate "x" --tokens 20 --json
# past the context (48): the cached run restarts from half of it and still generates every token
expect 0 '' -- n3-eval "$T/m.n3" --generate "And God said" --tokens 120 --threads 1
assert_eq "$(py -c "import sys; print(len(open(sys.argv[1]).read()) > 120)" "$T/out")" True "120 tokens past the context"
expect 2 'top-p must be in' -- n3-eval "$T/m.n3" --generate "x" --top-p 0
expect 2 'top-k must not be negative' -- n3-eval "$T/m.n3" --generate "x" --top-k -1
expect 2 '--top-k is for sampling' -- n3-eval "$T/m.n3" --data "$T/gen.txt" --top-k 3
expect 2 '--no-cache is for sampling' -- n3-eval "$T/m.n3" --data "$T/gen.txt" --no-cache
# --interactive: one answer per prompt line
printf 'And God said\n\nIn the beginning\n' > "$T/prompts"
expect_stdin "$T/prompts" 0 '' -- n3-eval "$T/m.n3" --interactive --tokens 8 --temperature 0
assert_eq "$(grep -c '^And God said' "$T/out")" 1 "the first prompt's answer"
assert_eq "$(grep -c '^In the beginning' "$T/out")" 1 "the second prompt's answer (blank lines skipped)"
expect 2 'excludes' -- n3-eval "$T/m.n3" --interactive --generate "x"
expect 2 'give the model as a file' -- n3-eval - --interactive

# the byte-level model still generates byte by byte, and its cache equals no cache too
cat > "$T/byte.yaml" <<'Y'
task: lm
context: 32
layers:
  - {type: embedding, name: tok, vocab: 256, dim: 32}
  - {type: position, name: pos, context: 32, dim: 32}
  - {type: transformer, name: block0, dim: 32, heads: 2, hidden: 64}
  - {type: layernorm, name: ln_f, dim: 32}
  - {type: linear, name: head, in: 32, out: 256}
Y
n3-train --model "$T/byte.yaml" --data "$T/gen.txt" --steps 30 --batch 16 --optimizer adam \
    --lr 0.01 --threads 1 --emit model -o "$T/b.n3"
expect 0 '' -- n3-eval "$T/b.n3" --generate "And God" --tokens 20 --temperature 0
cp "$T/out" "$T/b1"
expect 0 '' -- n3-eval "$T/b.n3" --generate "And God" --tokens 20 --temperature 0 --no-cache
assert_eq "$(cmp -s "$T/out" "$T/b1" && echo same)" same "bytes: KV cache == no cache"
assert_eq "$(tr -d '\n' < "$T/b1" | wc -c)" 27 "prompt + 20 bytes"
finish

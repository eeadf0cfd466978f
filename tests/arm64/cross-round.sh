#!/usr/bin/env bash
# tests/arm64/cross-round.sh — records cross between x86-64 and arm64 builds of n3 and come out
# byte for byte as the formats promise: a model made on x86-64, updates packed (int8 + zstd,
# Reed-Solomon shards) and sealed by the arm64 tools, opened and merged on x86-64, and the same
# steps the other way round. N3_TOOLS is the x86-64 build's tools folder, N3_ARM64_TOOLS the
# arm64 build's emulated wrappers (make test-arm64 sets both). When N3_ARM64_TRAIN_TOOLS (or
# N3_ARM64_TOOLS) has n3-train and n3-eval (libtorch from Debian's arm64 packages), an update is also trained on arm64 from a model made
# on x86-64, merged on x86-64, and both architectures evaluate the same model alike.
source "$(dirname "$0")/../cli/lib.sh"
: "${N3_ARM64_TOOLS:?set N3_ARM64_TOOLS to the tools-emulated folder of an arm64 build}"
cd "$T"
x86() { "$N3_TOOLS/$1" "${@:2}"; }
arm() { "$N3_ARM64_TOOLS/$1" "${@:2}"; }
: "${N3_ARM64_TRAIN_TOOLS:=$N3_ARM64_TOOLS}"
armt() { "$N3_ARM64_TRAIN_TOOLS/$1" "${@:2}"; }
[ -x "$N3_ARM64_TOOLS/n3-seal" ] || skip "no arm64 build in $N3_ARM64_TOOLS"
"$N3_ARM64_TOOLS/n3-seal" --version >/dev/null 2>&1 || skip "the arm64 tools do not run here (qemu-user?)"

# A model and three updates, made on x86-64 from seeded numbers (safetensors, as numpy writes).
"$N3_PYTHON" - <<'PY'
import json, struct, numpy as np
def write(path, tensors):
    hdr, off, data = {}, 0, b''
    for name, a in tensors.items():
        b = a.astype('<f4').tobytes()
        hdr[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        off += len(b); data += b
    j = json.dumps(hdr).encode(); j += b' ' * (-len(j) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(j)) + j + data)
rng = np.random.default_rng(7)
shapes = {'fc1.weight': (128, 784), 'fc1.bias': (128,), 'fc2.weight': (10, 128), 'fc2.bias': (10,)}
write('model.st', {k: rng.standard_normal(s) * 0.05 for k, s in shapes.items()})
for i in range(3):
    write(f'u{i}.st', {k: rng.standard_normal(s) * 0.01 for k, s in shapes.items()})
PY
x86 n3-inspect --from-safetensors model.st --kind model --meta round=4 -o model.n3
base=$(x86 n3-inspect --json model.n3 | "$N3_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
for i in 0 1 2; do
    x86 n3-inspect --from-safetensors "u$i.st" --kind update --meta round=4 --meta base="$base" \
        --meta samples=$((100 * (i + 1))) -o "u$i.n3"
done
assert_eq "$(arm n3-inspect --json model.n3 | grep -o '"hash":"[0-9a-f]*"')" "\"hash\":\"$base\"" \
    "the model hash is the same on arm64"

# Keys on both sides: an authority on x86-64, a member enrolled by the arm64 tools, a hub on x86-64.
x86 n3-keys authority -o fed.ask 2>/dev/null
x86 n3-keys public fed.ask >fed.pub
arm n3-keys request --id edge -o edge.secret >edge.req
x86 n3-keys issue --authority fed.ask edge.req -o edge.partial
arm n3-keys complete --secret edge.secret --partial edge.partial -o edge.key 2>/dev/null
arm n3-keys public edge.key >edge.pub
x86 n3-keys request --id hub -o hub.secret >hub.req
x86 n3-keys issue --authority fed.ask hub.req -o hub.partial
x86 n3-keys complete --secret hub.secret --partial hub.partial -o hub.key 2>/dev/null
x86 n3-keys public hub.key >hub.pub
cat edge.pub >fed.roster

# Packing is deterministic: the same packed bytes on both architectures.
for i in 0 1 2; do
    arm n3-encode --quantize int8 --zstd "u$i.n3" -o "u$i.arm.packed"
    x86 n3-encode --quantize int8 --zstd "u$i.n3" -o "u$i.x86.packed"
    assert_eq "$(cmp -s "u$i.arm.packed" "u$i.x86.packed" && echo same)" same "update $i: packed bytes identical"
done
# Shards (random group ids, so compared by what they rebuild): any 4 of 6 made on one
# architecture decode on the other to the record the packed one decodes to.
x86 n3-encode -d u0.x86.packed -o u0.decoded
mkdir arm-shards x86-shards
arm n3-encode --shards 4+2 --shard-dir arm-shards u0.arm.packed
x86 n3-encode --shards 4+2 --shard-dir x86-shards u0.x86.packed
expect 0 '' -- x86 n3-encode -d $(ls arm-shards/* | sed -n '2,5p') -o rebuilt.x86.n3
assert_eq "$(cmp -s rebuilt.x86.n3 u0.decoded && echo same)" same "arm64 shards rebuild on x86-64"
expect 0 '' -- arm n3-encode -d $(ls x86-shards/* | sed -n '1p;3p;5,6p') -o rebuilt.arm.n3
assert_eq "$(cmp -s rebuilt.arm.n3 u0.decoded && echo same)" same "x86-64 shards rebuild on arm64"

# Sealed on arm64 (both suites), opened on x86-64; sealed on x86-64, opened on arm64.
for suite in aes-256-gcm xchacha20-poly1305; do
    cat u0.arm.packed u1.arm.packed u2.arm.packed |
        arm n3-seal --suite $suite --to hub.pub --key edge.key --round 4 -o "round.$suite.sealed"
    expect 0 '' -- x86 n3-seal --open --key hub.key --authority fed.pub --roster fed.roster \
        --allow-repeat-senders --round 4 "round.$suite.sealed" -o "round.$suite.opened"
    assert_eq "$(cat u0.x86.packed u1.x86.packed u2.x86.packed | cmp -s - "round.$suite.opened" && echo same)" same \
        "$suite: sealed on arm64, opened on x86-64, bytes identical"
    x86 n3-seal --suite $suite --to edge.pub --key hub.key model.n3 -o "model.$suite.sealed"
    expect 0 '' -- arm n3-seal --open --key edge.key --authority fed.pub "model.$suite.sealed" -o "model.$suite.opened"
    assert_eq "$(cmp -s model.n3 "model.$suite.opened" && echo same)" same "$suite: sealed on x86-64, opened on arm64"
done

# The merge is bit-identical on every CPU: the same global model from either architecture.
x86 n3-encode -d round.aes-256-gcm.opened -o updates.n3
x86 n3-merge --rule fedavg --base model.n3 updates.n3 -o global.x86.n3
arm n3-merge --rule fedavg --base model.n3 updates.n3 -o global.arm.n3
assert_eq "$(cmp -s global.x86.n3 global.arm.n3 && echo same)" same "fedavg: the same merged model on arm64 and x86-64"
for rule in median trimmed-mean:0.34; do
    x86 n3-merge --rule $rule --base model.n3 updates.n3 -o g.x86.n3
    arm n3-merge --rule $rule --base model.n3 updates.n3 -o g.arm.n3
    assert_eq "$(cmp -s g.x86.n3 g.arm.n3 && echo same)" same "$rule: the same merged model on both"
done
# Training across architectures: the model made by the x86-64 n3-train, one local epoch on
# arm64 (under qemu: two epochs over a small slice of Fashion-MNIST), the update merged on x86-64.
data=$(dpkg -L dataset-fashion-mnist 2>/dev/null | grep 'train-images' | head -1 | xargs -r dirname)
if [ ! -x "$N3_ARM64_TRAIN_TOOLS/n3-train" ]; then
    echo "cross-round.sh: no arm64 n3-train (built without libtorch): training across architectures not checked"
elif [ ! -x "$N3_TOOLS/n3-train" ]; then
    echo "cross-round.sh: no x86-64 n3-train: training across architectures not checked"
elif [ -z "$data" ]; then
    echo "cross-round.sh: dataset-fashion-mnist not installed: training across architectures not checked"
else
    x86 n3-train --model "$N3_SRC/examples/models/mlp.yaml" --init-only --seed 3 -o mlp.n3
    expect 0 '' -- armt n3-train --init mlp.n3 --data "$data" --partition iid --clients 8 --client 2 \
        --limit 512 --epochs 2 --batch 32 --lr 0.1 --seed 5 -o arm-update.n3
    mlp_hash=$(x86 n3-inspect --json mlp.n3 | "$N3_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
    assert_eq "$(x86 n3-inspect --json arm-update.n3 | "$N3_PYTHON" -c \
        'import json,sys; m=json.load(sys.stdin); print(m["type"], m["metadata"]["base"])')" \
        "update $mlp_hash" "the arm64 update names the x86-64 model as its base"
    expect 0 '' -- x86 n3-merge --rule fedavg --base mlp.n3 arm-update.n3 -o mlp-1.n3
    x86 n3-eval mlp-1.n3 --data "$data" --split test --limit 500 --json >eval.x86.json
    armt n3-eval mlp-1.n3 --data "$data" --split test --limit 500 --json >eval.arm.json
    _case="arm64 and x86-64 evaluate the merged model alike"
    if "$N3_PYTHON" - eval.x86.json eval.arm.json <<'PY'; then _pass; else _fail "accuracy or loss differ"; fi
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
print(f"cross-round.sh: merged model, x86-64 accuracy {a['accuracy']:.4f} loss {a['loss']:.5f}; "
      f"arm64 accuracy {b['accuracy']:.4f} loss {b['loss']:.5f}")
assert a['accuracy'] > 0.3, "the arm64 training taught the model nothing"
assert abs(a['accuracy'] - b['accuracy']) <= 0.004 and abs(a['loss'] - b['loss']) < 1e-3
PY
fi
finish

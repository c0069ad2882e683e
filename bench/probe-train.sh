#!/usr/bin/env bash
# Issue 17's training step on the GPU host, one length per device call (Flex's block mask at
# N = 16384 alone takes about 222 s and its first step 73 s: the two lengths do not fit one
# 600-second call):
#     N=4096  OUT=$OUT bash bench/probe-train.sh
#     N=16384 OUT=$OUT bash bench/probe-train.sh
# The table (tokens per second, spattn / Flex tuned / dense cuDNN, peak memory, the loss
# comparison) goes to $OUT/train_step-$N.md; the log to $OUT/train_step-$N.log.
source "$(dirname "$0")/probe-lib.sh"
N=${N:-4096}
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
echo "== N = $N"
timeout ${LIMIT:-570} python3 bench/train_step.py --seq-lens "$N" --steps 10 --out "$OUT/train_step-$N.md" \
    >"$OUT/train_step-$N.log" 2>&1
echo "== train_step rc=$?"
cat "$OUT/train_step-$N.md" 2>/dev/null || tail -n 20 "$OUT/train_step-$N.log"

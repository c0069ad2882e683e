#!/usr/bin/env python3
"""A list-scheduling model of the deterministic backward's turns (session 11, bench/NOTES-bwd.md).

CTAs (KV tile, kv head, batch) of the band plan's backward go to `slots` SMs in a dispatch
order; each step (one query tile of one head) takes 1 unit on the consumers, and its dQ goes to
a writer (NB staging buffers, one writer each) that waits for the tile's turn (the previous
tile in the order's rank at that query tile), adds, and releases after A units; the buffer is
free R units after the add starts.  Printed: the makespan of each deterministic order over the
default mode's (longest first, no turns).  Orders:
  det-head         main_sem's: head by head, KV tiles descending, turns descending, walk ascending
  det-tiledesc     tile-major descending tiles, turns descending, walk ascending
  det-lpt-asc      longest first, turns ascending, walk ascending
  det-lpt-asc-rev  longest first, turns ascending, each head's walk descending (the ws mirror order)
The model predicted the mirror order at <= 1% over the default everywhere; the GPU measured it
6-8% faster than main_sem's at d64 but 1.5-8% slower at head_dim 128 (call 1 of session 11):
it leaves out what the hardware adds (L2, the spinning writers, waves that start together).

    python3 bench/det_order_sim.py [A ...]      # A in steps, default 0.6; needs build/spattn
"""
import heapq
import json
import os
import subprocess
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

def bands(cfg, N):
    j = json.loads(subprocess.run([os.path.join(ROOT, "build/spattn"),"plan",cfg,"--seq-len",str(N),"--json"],capture_output=True,text=True).stdout)
    return [ [tuple(x) for x in h["intervals"]] for h in j["per_head"] ], j["kv_heads"]

def visits(rows, n0, n, BM, BN, reverse=False):
    n_last = min(n0+BN, n)-1
    out = []
    for r, ivs in enumerate(rows):
        nxt = 0; seg = []
        for lo, hi in ivs:
            i_lo = n0+lo; i_hi = min(n_last+hi-1, n-1)
            t_end = i_hi//BM if i_lo <= i_hi else -1
            t = max(i_lo//BM, nxt)
            while t <= t_end:
                seg.append((r, t)); t += 1
            nxt = max(nxt, t_end+1)
        if reverse: seg.reverse()
        out += seg
    return out

def sim(cfg, B, N, BM, BN, slots, order, det, rank_asc=False, rev=False, A=0.6, R=0.15, NB=1, E=2.0):
    rows, KVH = bands(cfg, N)
    H = len(rows); G = H//KVH
    tiles = (N+BN-1)//BN
    # CTA list in dispatch order
    ctas = []
    if order == "lpt":      # tile-major ascending
        for t in range(tiles):
            for b in range(B):
                for g in range(KVH): ctas.append((b,g,t))
    elif order == "tile_desc":
        for t in reversed(range(tiles)):
            for b in range(B):
                for g in range(KVH): ctas.append((b,g,t))
    elif order == "head_desc":  # current det: blockIdx.x fastest = descending tile
        for b in range(B):
            for g in range(KVH):
                for t in reversed(range(tiles)): ctas.append((b,g,t))
    vis = {}
    for (b,g,t) in ctas:
        vis[(b,g,t)] = visits(rows[g*G:(g+1)*G], t*BN, N, BM, BN, rev)
    release = {}   # (b, h, q, j) -> time
    who = defaultdict(list)
    for (b,g,t), v in vis.items():
        for (r,q) in v: who[(b,g*G+r,q)].append(t)
    pred = {}
    for key, js in who.items():
        js.sort(reverse=not rank_asc)
        for i, j in enumerate(js):
            pred[key+(j,)] = js[i-1] if i > 0 else None
    heap = [0.0]*slots
    heapq.heapify(heap)
    makespan = 0
    work = 0
    for (b,g,t) in ctas:
        t0 = heapq.heappop(heap)
        v = vis[(b,g,t)]
        c = t0 + 0.5   # K,V load
        wfree = [c]*NB; bfree = [c]*NB
        last = c
        for s, (r,q) in enumerate(v):
            c_end = c + 1.0
            bb = s % NB
            st = max(c_end, bfree[bb])
            h = g*G + r
            a = max(st, wfree[bb])
            if det:
                p = pred[(b,h,q,t)]
                if p is not None: a = max(a, release[(b,h,q,p)])
            bfree[bb] = a + R
            wfree[bb] = a + (A if det else R)
            release[(b,h,q,t)] = a + A
            c = st
            last = max(last, a + A)
        work += len(v)
        fin = max(c + E, last)
        makespan = max(makespan, fin)
        heapq.heappush(heap, fin)
    return makespan, work/slots

shapes = {
 "4k":   (os.path.join(ROOT, "configs/olmoe-1b-7b.yaml"), 4, 4096, 64, 128, 132, 1),
 "16k":  (os.path.join(ROOT, "configs/olmoe-1b-7b.yaml"), 1, 16384, 64, 128, 132, 1),
 "d64":  (os.path.join(ROOT, "configs/llama-8h-d64.yaml"), 4, 4096, 64, 64, 264, 2),
 "gqa":  (os.path.join(ROOT, "configs/gqa-32q-8kv.yaml"), 1, 16384, 64, 128, 132, 1),
}
As = [float(x) for x in sys.argv[1:]] or [0.6]
for name,(cfg,B,N,BM,BN,slots,NB) in shapes.items():
    for A in As:
        base,ideal = sim(cfg,B,N,BM,BN,slots,"lpt",False,NB=NB,A=A)
        res = [f"{name} A={A} ideal={ideal:.0f} default-lpt={base:.0f}"]
        for lab,o,ra,rv in [("det-head",'head_desc',False,False),("det-tiledesc","tile_desc",False,False),
                            ("det-lpt-asc","lpt",True,False),("det-lpt-asc-rev","lpt",True,True)]:
            m,_ = sim(cfg,B,N,BM,BN,slots,o,True,rank_asc=ra,rev=rv,NB=NB,A=A)
            res.append(f"{lab}={m/base:.3f}")
        print(" ".join(res), flush=True)

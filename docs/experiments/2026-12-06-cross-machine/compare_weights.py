"""Which weights two trainings (``choices.py`` with $STATE) differ in, largest relative difference first.

usage: python compare_weights.py A.pt B.pt
"""

import sys

import torch

a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
rows = []
for name, x in a.items():
    if not x.is_floating_point() or x.numel() == 0:
        continue
    diff = (x - b[name]).abs().max().item()
    rows.append((diff / (x.abs().max().item() + 1e-12), diff, name, tuple(x.shape)))
for rel, diff, name, shape in sorted(rows, reverse=True):
    print(f"{rel:.2e} {diff:.2e} {name} {shape}")
print(f"identical: {sum(1 for r in rows if r[1] == 0)} of {len(rows)} floating-point tensors")

import numpy as np, ast, sys
z = np.load(sys.argv[1]); keys = [k if k == "off" else ast.literal_eval(k) for k in z["keys"]]
V, n = z["values"], z["sizes"].astype(float)
idx = {k: i for i, k in enumerate(keys)}
grid = sorted({k[1] for k in keys if k != "off"})
priors = sorted({k[0] for k in keys if k != "off"}, key=str)
def value(prior, w, g):
    eff = w * np.maximum(n, 1) ** (-g)
    out = np.empty(len(n))
    for t in range(len(n)):
        e = eff[t]
        if e < grid[0] / np.sqrt(2): out[t] = V[idx["off"], t]; continue
        near = min(grid, key=lambda x: abs(np.log2(x) - np.log2(e)))
        out[t] = V[idx[(prior, near)], t]
    return out
off = np.nanmean(V[idx["off"]])
res = []
for g in (0.0, 0.5, 1.0, 1.5):
    for prior in priors:
        for w in [x * 2**j for x in grid for j in range(0, 4)]:
            if g == 0 and w > max(grid): continue
            v = value(prior, w, g); res.append((np.nanmean(v), g, prior, w))
res.sort(key=lambda r: -r[0])
print("off", round(off, 4))
for g in (0.0, 0.5, 1.0, 1.5):
    best = max(r for r in res if r[1] == g)
    print("gamma", g, "best", round(best[0], 4), best[2], best[3])

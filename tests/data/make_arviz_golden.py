"""Generates tests/data/arviz_golden.json: inputs and ArviZ 0.22.0 outputs
(rank-normalised split R-hat, bulk and tail ESS, MCSE of the mean) that the
Rust diagnostics are checked against. Run once: python3 make_arviz_golden.py"""
import json

import arviz as az
import numpy as np

rng = np.random.default_rng(20261123)


def ar1(c, t, rho, shift=None):
    z = rng.standard_normal((c, t))
    x = np.zeros_like(z)
    x[:, 0] = z[:, 0]
    for i in range(1, t):
        x[:, i] = rho * x[:, i - 1] + z[:, i]
    if shift is not None:
        x += np.asarray(shift)[:, None]
    return x


cases = {
    "iid_4x500": rng.standard_normal((4, 500)),
    "ar1_0.3_4x400": ar1(4, 400, 0.3),
    "ar1_0.9_4x1000": ar1(4, 1000, 0.9),
    "ar1_0.95_2x301_odd": ar1(2, 301, 0.95),
    "shifted_chain_4x200": ar1(4, 200, 0.5, shift=[0.0, 0.0, 0.0, 2.0]),
    "heavy_tail_3x400": rng.standard_t(2.0, (3, 400)),
    "ties_4x300": rng.integers(0, 5, (4, 300)).astype(float),
    "short_2x10": rng.standard_normal((2, 10)),
    "constant_3x50": np.full((3, 50), 1.25),
}
def num(v):
    """JSON has no NaN: store it as null."""
    v = float(v)
    return None if np.isnan(v) else v


out = {}
for name, x in cases.items():
    out[name] = {
        "x": x.tolist(),
        "rhat": num(az.rhat(x, method="rank")),
        "ess_bulk": num(az.ess(x, method="bulk")),
        "ess_tail": num(az.ess(x, method="tail")),
        "mcse_mean": num(az.mcse(x, method="mean")),
    }
out["_generator"] = "tests/data/make_arviz_golden.py with arviz " + az.__version__ + ", numpy " + np.__version__
with open("arviz_golden.json", "w") as f:
    json.dump(out, f)

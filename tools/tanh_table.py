"""Fit the table behind the AVX-512 build's tanh (csrc/simd.h, kTanhTable) and print it as C.

tanh(|x|) on [0, 9.6) is cut into 32 intervals of width 0.3; on interval i, with u = |x| - m_i,
    tanh(|x|) ~ c0 + c1 u + c2 u^2 + ... + c6 u^6
and the sign of x is put back afterwards. The kernel picks each interval's centre and coefficients with
one two-register permute per coefficient, so a tanh is 8 permutes and 7 multiply-adds, no exp and no
division.
 * interval 0 ([0, 0.3)): m = 0 and c0 = c1 = 0, the kernel adding u itself (u + u^2 (c2 + ...)), so
   tanh(x) = x for tiny x and the error is relative;
 * intervals 1-30: m is the float near the middle whose tanh lies closest to a float, and c0 is that float,
   so the polynomial's value at u = 0 is (almost) exact;
 * intervals 30 and 31 ([9.0, 9.6), |x| being clamped to 9.5): the constant 1. float32's tanh is 1 from
   9.011 on (0.99999994 below, 0.5 ulp away); a polynomial there stepped between the two.
Each polynomial is a minimax fit of the relative error (Lawson's iteratively reweighted least squares over
Chebyshev nodes, in float64 against mpmath's tanh), on its interval widened by 0.2% either side, as a
product rounded near a boundary can pick the neighbouring interval.

Needs numpy and mpmath (not dependencies of fastrnn). Run: python tools/tanh_table.py > table.txt
"""
import sys

import mpmath
import numpy as np

mpmath.mp.dps = 30
INTERVALS, DEGREE, WIDTH = 32, 6, 0.3
NODES, LAWSON_STEPS = 800, 400


def tanh(x):
    return np.array([float(mpmath.tanh(mpmath.mpf(float(v)))) for v in x])


def minimax(basis, target, weight):
    """Coefficients c minimising max |basis @ c - target| * weight (Lawson's algorithm)."""
    w = np.full(len(target), 1.0 / len(target))
    best_error, best = np.inf, None
    for _ in range(LAWSON_STEPS):
        scale = np.sqrt(w) * weight
        c = np.linalg.lstsq(basis * scale[:, None], target * scale, rcond=None)[0]
        error = (basis @ c - target) * weight
        if np.abs(error).max() < best_error:
            best_error, best = np.abs(error).max(), c
        w = w * np.abs(error) + 1e-300
        w /= w.sum()
    return best, best_error


def centre_near(middle, span):
    """The float32 within span of middle whose tanh is closest (in its ulps) to a float32."""
    bits = int(np.float32(middle).view(np.uint32))
    best = None
    for k in range(-4000, 4001):
        m = float(np.uint32(bits + k).view(np.float32))
        if abs(m - middle) > span:
            continue
        exact = mpmath.tanh(mpmath.mpf(m))
        rounded = np.float32(float(exact))
        miss = abs(float(exact - mpmath.mpf(float(rounded)))) / float(np.spacing(rounded))
        if best is None or miss < best[0]:
            best = (miss, m, float(rounded))
    return best[1], best[2]


def nodes(lo, hi):
    return lo + (hi - lo) * (1 - np.cos(np.linspace(0, np.pi, NODES))) / 2


def fit():
    rows, worst = [], 0.0
    for i in range(INTERVALS):
        if i >= INTERVALS - 2:
            rows.append([(i + 0.5) * WIDTH, 1.0] + [0.0] * DEGREE)
            continue
        lo, hi = i * WIDTH - 0.002 * WIDTH, (i + 1) * WIDTH + 0.002 * WIDTH
        if i == 0:  # tanh(u) - u = sum_{j >= 2} c_j u^j
            u = nodes(0.0, hi)[1:]
            t = tanh(u)
            c, error = minimax(np.stack([u ** j for j in range(2, DEGREE + 1)], 1), t - u, 1 / t)
            rows.append([0.0, 0.0, 0.0] + list(c))  # c1 = 0: the kernel adds u itself
        else:       # tanh(m + u) - c0 = sum_{j >= 1} c_j u^j
            m, c0 = centre_near((i + 0.5) * WIDTH, 0.02 * WIDTH)
            u = nodes(lo - m, hi - m)
            t = tanh(m + u)
            c, error = minimax(np.stack([u ** j for j in range(1, DEGREE + 1)], 1), t - c0, 1 / t)
            rows.append([m, c0] + list(c))
        worst = max(worst, error)
    print(f"// largest relative error of a fit: {worst / 2 ** -24:.3f} x 2^-24", file=sys.stderr)
    return np.array(rows, dtype=np.float32)


def c_float(v):
    text = f"{float(v):.9g}"  # 9 digits: the float32 back exactly
    return text + ("f" if "." in text or "e" in text else ".0f")


def main():
    table = fit()
    names = ["centre"] + [f"c{j}" for j in range(DEGREE + 1)]
    print(f"alignas(64) static const float kTanhTable[{DEGREE + 2}][{INTERVALS}] = {{")
    for j, name in enumerate(names):
        values = [c_float(v) for v in table[:, j]]
        lines = [", ".join(values[k:k + 4]) for k in range(0, INTERVALS, 4)]
        print(f"    {{// {name}\n     " + ",\n     ".join(lines) + "},")
    print("};")


if __name__ == "__main__":
    main()

"""Straightforward per-image numpy/scipy implementations of every metric, written from the formulas in
``../shared/reference/metrics.md`` (and VIFB's / pyiqa's code for Qcb, Qcv, NLPD), the way the field's
Python evaluators are written. Used as the independent expectation in the tests and as the speed
baseline in ``benchmarks/metrics_speed.py``. Inputs: 2-D float64 arrays on 0..255 (integer-valued).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal
from skimage.metrics import structural_similarity

# ---------------------------------------------------------------- histograms / information


def _hist(x: np.ndarray) -> np.ndarray:
    return np.bincount(np.round(x).astype(np.int64).ravel(), minlength=256)[:256].astype(np.float64)


def _entropy(counts: np.ndarray, base: float) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(base))


def en(f, a=None, b=None, base=2.0):
    return _entropy(_hist(f), base)


def _minmax_levels(x):
    y = (x - x.min()) / (x.max() - x.min()) * 255
    return np.floor(y + 0.5)  # int16(): round half away from zero (y >= 0)


def _mi_pair(x, y, base, joint_saturate):
    xi, yi = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    hx, hy = _entropy(_hist(x), base), _entropy(_hist(y), base)
    if joint_saturate:  # MATLAB: counter(uint8(F)+1, uint8(A)+1): uint8(255)+1 saturates at 255
        xi = np.minimum(xi + 1, 255) - 1
        yi = np.minimum(yi + 1, 255) - 1
    joint = np.zeros((256, 256))
    np.add.at(joint, (xi.ravel(), yi.ravel()), 1)
    return hx + hy - _entropy(joint.ravel(), base)


def mi(f, a, b, base=2.0, joint_saturate=False, normalize="none"):
    if normalize == "minmax":
        f, a, b = _minmax_levels(f), _minmax_levels(a), _minmax_levels(b)
    return _mi_pair(f, a, base, joint_saturate) + _mi_pair(f, b, base, joint_saturate)


def ce(f, a, b):
    def one(x):
        px, pf = _hist(x) / x.size, _hist(f) / f.size
        total = 0.0
        for k in range(256):
            if px[k] > 0 and pf[k] > 0:
                total += px[k] * math.log2(px[k] / pf[k])
        return total

    return (one(b) + one(a)) / 2


# ---------------------------------------------------------------- statistics


def sd(f, a=None, b=None):
    return float(np.std(f))


def _r(x, y):
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def cc(f, a, b):
    return (_r(a, f) + _r(b, f)) / 2


def scd(f, a, b):
    return _r(f - b, a) + _r(f - a, b)


# ---------------------------------------------------------------- gradients


def sf(f, a=None, b=None, norm="valid"):
    m, n = f.shape
    rf = sum(((f[i, 1:] - f[i, :-1]) ** 2).sum() for i in range(m))
    cf = sum(((f[1:, j] - f[:-1, j]) ** 2).sum() for j in range(n))
    if norm == "valid":
        return math.sqrt(rf / (m * (n - 1)) + cf / ((m - 1) * n))
    return math.sqrt(rf / (m * n) + cf / (m * n))


def ag(f, a=None, b=None, norm="size"):
    gy, gx = np.gradient(f)  # central differences inside, one-sided at the border (as MATLAB)
    s = np.sqrt((gx**2 + gy**2) / 2).sum()
    m, n = f.shape
    return float(s / (m * n if norm == "size" else (m - 1) * (n - 1)))


def ei(f, a=None, b=None):
    w = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
    gx = ndimage.correlate(f, w, mode="nearest")
    gy = ndimage.correlate(f, w.T, mode="nearest")
    return float(np.mean(np.sqrt(gx**2 + gy**2)))


# ---------------------------------------------------------------- errors


def mse(f, a, b, definition="standard"):
    if definition == "tang":
        f, a, b = f / 255, a / 255, b / 255
    return float((np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2)


def _vifb_e(x, f):
    m, n = f.shape
    return math.sqrt(((x - f) ** 2).sum()) / (m * n)


def psnr(f, a, b, definition="standard"):
    if definition == "vifb":
        return 20 * math.log10(255 / math.sqrt((_vifb_e(b, f) + _vifb_e(a, f)) / 2))
    if definition == "tang":
        return 20 * math.log10(255 / math.sqrt(mse(f, a, b, "tang")))
    peak = f.max() if definition == "cddfuse" else 255.0
    return 10 * math.log10(peak**2 / mse(f, a, b))


def rmse(f, a, b, definition="standard"):
    if definition == "vifb":
        return (_vifb_e(b, f) + _vifb_e(a, f)) / 2
    return (math.sqrt(np.mean((a - f) ** 2)) + math.sqrt(np.mean((b - f) ** 2))) / 2


# ---------------------------------------------------------------- SSIM


def fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    r = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(r, r)
    h = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def _ssim_matlab(x, y):
    w = fspecial_gaussian(11, 1.5)
    filt = lambda z: ndimage.correlate(z, w, mode="nearest")
    mx, my = filt(x), filt(y)
    sx, sy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sx + sy + c2))
    return float(s.mean())


def _ssim_one(x, y, definition):
    if definition == "skimage019":  # scikit-image 0.19 on float data: data_range = 2
        return structural_similarity(x, y, data_range=2.0)
    if definition == "wang":
        return structural_similarity(x, y, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    return _ssim_matlab(x, y)


def ssim(f, a, b, definition="wang", combine="mean"):
    s = _ssim_one(f, a, definition) + _ssim_one(f, b, definition)
    return s / 2 if combine == "mean" else s


def _ssim_cs_valid(x, y):
    w = fspecial_gaussian(11, 1.5)
    filt = lambda z: signal.correlate2d(z, w, mode="valid")
    mx, my = filt(x), filt(y)
    vx, vy, vxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    return float(np.mean((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs)), float(np.mean(cs))


def ms_ssim(f, a, b):
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]

    def one(x, y):
        total = 1.0
        for i, wt in enumerate(weights):
            sim, cs = _ssim_cs_valid(x, y)
            total *= max(sim if i == 4 else cs, 0.0) ** wt
            h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
            x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        return total

    return (one(a, f) + one(b, f)) / 2


# ---------------------------------------------------------------- VIF


def _vifp(ref, dist):
    sigma_nsq, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = fspecial_gaussian(n, n / 5)
        if scale > 1:
            ref = signal.convolve2d(ref, np.rot90(win, 2), mode="valid")[::2, ::2]
            dist = signal.convolve2d(dist, np.rot90(win, 2), mode="valid")[::2, ::2]
        filt = lambda z, win=win: signal.convolve2d(z, np.rot90(win, 2), mode="valid")
        mu1, mu2 = filt(ref), filt(dist)
        s1 = filt(ref * ref) - mu1 * mu1
        s2 = filt(dist * dist) - mu2 * mu2
        s12 = filt(ref * dist) - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g**2 * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return num / den


def vif(f, a, b, nan_to_one=False):
    terms = [_vifp(a, f), _vifp(b, f)]
    if nan_to_one:
        terms = [1.0 if math.isnan(t) else t for t in terms]
    return float(sum(terms))


def _vid_vind_g(ref, dist, sigma_nsq):
    """Han's ComVidVindG: per-scale VID, VIND and gain maps (MEFB metricsVIF.m)."""
    out = []
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        win = fspecial_gaussian(n, n / 5)
        if scale > 1:
            ref = signal.correlate2d(ref, win, mode="valid")[::2, ::2]
            dist = signal.correlate2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = signal.correlate2d(ref, win, mode="valid"), signal.correlate2d(dist, win, mode="valid")
        s1 = signal.correlate2d(ref * ref, win, mode="valid") - mu1**2
        s2 = signal.correlate2d(dist * dist, win, mode="valid") - mu2**2
        s12 = signal.correlate2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10] = 0
        sv[s1 < 1e-10] = s2[s1 < 1e-10]
        s1[s1 < 1e-10] = 0
        g[s2 < 1e-10] = 0
        sv[s2 < 1e-10] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= 1e-10] = 1e-10
        out.append((np.log10(1 + g**2 * s1 / (sv + sigma_nsq)), np.log10(1 + s1 / sigma_nsq), g))
    return out


def viff(f, a, b):
    sq, c, p = 0.005 * 255 * 255, 1e-7, np.array([1, 0, 0.15, 1]) / 2.15
    t1, t2 = _vid_vind_g(a, f, sq), _vid_vind_g(b, f, sq)
    fs = []
    for (n1, d1, g1), (n2, d2, g2) in zip(t1, t2):
        sel = g1 < g2
        fs.append(np.sum(np.where(sel, n1, n2) + c) / np.sum(np.where(sel, d1, d2) + c))
    return float(np.sum(np.array(fs) * p))


# ---------------------------------------------------------------- Qabf / Nabf


def qabf(f, a, b, tie_strength="one"):
    h1 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    h3 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)

    def feats(x):
        sx = signal.convolve2d(x, h1, mode="same")
        sy = signal.convolve2d(x, h3, mode="same")
        g = np.sqrt(sx**2 + sy**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.arctan(sy / sx)
        alpha[sx == 0] = math.pi / 2
        return g, alpha

    gf, af = feats(f)

    def q(x):
        gx, ax = feats(x)
        G = np.empty_like(gx)
        with np.errstate(divide="ignore", invalid="ignore"):
            G = np.where(gx > gf, gf / gx, np.where(gx < gf, gx / gf, 1.0 if tie_strength == "one" else gf))
        A = 1 - np.abs(ax - af) / (math.pi / 2)
        qg = 0.9994 / (1 + np.exp(-15 * (G - 0.5)))
        qa = 0.9879 / (1 + np.exp(-22 * (A - 0.8)))
        return qg * qa, gx

    qa_, ga = q(a)
    qb_, gb = q(b)
    return float((qa_ * ga + qb_ * gb).sum() / (ga + gb).sum())


def _nabf(f, a, b):
    """Tang's analysis_nabf(f, I1, I2) with per-pixel loops over the decision logic (small images only)."""
    hx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) / 8
    hy = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64) / 8

    def feats(x):
        p = np.pad(x, 1, mode="reflect")
        gv = signal.correlate2d(p, hx, mode="valid")
        gh = signal.correlate2d(p, hy, mode="valid")
        g = np.sqrt(gh**2 + gv**2)
        alpha = np.zeros_like(g)
        for i, j in np.ndindex(g.shape):
            if gh[i, j] == 0 and gv[i, j] == 0:
                alpha[i, j] = 0
            elif gh[i, j] == 0:
                alpha[i, j] = math.copysign(math.pi / 2, gv[i, j])
            else:
                alpha[i, j] = math.atan(gv[i, j] / gh[i, j])
        return g, alpha

    gf, af = feats(f)
    ga, aa = feats(a)
    gb, ab = feats(b)

    def q(gs, as_):
        out = np.zeros_like(gs)
        for i, j in np.ndindex(gs.shape):
            s, t = gs[i, j], gf[i, j]
            gr = 0.0 if s == 0 or t == 0 else min(s, t) / max(s, t)
            ar = abs(abs(as_[i, j] - af[i, j]) - math.pi / 2) * 2 / math.pi
            qg = 0.9999 / (1 + math.exp(-19 * (gr - 0.5)))
            qa = 0.9995 / (1 + math.exp(-22 * (ar - 0.5)))
            out[i, j] = math.sqrt(qg * qa)
        return out

    qaf, qbf = q(ga, aa), q(gb, ab)
    wa = np.where(ga >= 2, ga**1.5, 0.001)
    wb = np.where(gb >= 2, gb**1.5, 0.001)
    na = (gf > ga) & (gf > gb)
    return float((na * ((1 - qaf) * wa + (1 - qbf) * wb)).sum() / (wa + wb).sum())


def _nabf_vectorised(f, a, b):
    """The same computation with numpy array expressions (what a Python evaluator would ship)."""
    hx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64) / 8
    hy = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64) / 8

    def feats(x):
        p = np.pad(x, 1, mode="reflect")
        gv = signal.correlate2d(p, hx, mode="valid")
        gh = signal.correlate2d(p, hy, mode="valid")
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.arctan(gv / gh)
        alpha[(gh == 0) & (gv == 0)] = 0
        return np.sqrt(gh**2 + gv**2), alpha

    gf, af = feats(f)

    def q(x):
        gs, as_ = feats(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            gr = np.where((gs == 0) | (gf == 0), 0, np.minimum(gs, gf) / np.maximum(gs, gf))
        ar = np.abs(np.abs(as_ - af) - np.pi / 2) * 2 / np.pi
        qq = np.sqrt(0.9999 / (1 + np.exp(-19 * (gr - 0.5))) * 0.9995 / (1 + np.exp(-22 * (ar - 0.5))))
        return qq, gs, np.where(gs >= 2, gs**1.5, 0.001)

    qa, ga, wa = q(a)
    qb, gb, wb = q(b)
    na = (gf > ga) & (gf > gb)
    return float((na * ((1 - qa) * wa + (1 - qb) * wb)).sum() / (wa + wb).sum())


def nabf(f, a, b, argument_order="fused", loops=True):
    impl = _nabf if loops else _nabf_vectorised
    return impl(a, b, f) if argument_order == "tang_driver" else impl(f, a, b)


# ---------------------------------------------------------------- Qcb / Qcv (VIFB / Z. Liu)


def _normalize1(x):
    if x.max() == 0 and x.min() == 0:
        return x
    y = (x - x.min()) / (x.max() - x.min()) * 255
    return np.floor(y + 0.5)


def _freqspace(h, w):
    f1 = (np.arange(w) - w // 2) * (2 / w)
    f2 = (np.arange(h) - h // 2) * (2 / h)
    return np.meshgrid(f1, f2)


def qcb(f, a, b):
    im1, im2, fu = _normalize1(b), _normalize1(a), _normalize1(f)  # VIFB passes (VI, IR, F)
    hang, lie = im1.shape
    u, v = _freqspace(hang, lie)
    u, v = (lie / 30) * u, (hang / 30) * v
    r = np.sqrt(u**2 + v**2)
    sd_ = np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))
    filt = lambda x: np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * sd_))
    xx, yy = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))
    g1 = np.exp(-(xx**2 + yy**2) / 8) / (2 * math.pi * 4)
    g2 = np.exp(-(xx**2 + yy**2) / 32) / (2 * math.pi * 16)

    def contrast_p(x):
        c = signal.correlate2d(x, g1, mode="same") / signal.correlate2d(x, g2, mode="same") - 1
        c = np.abs(c)
        return c**3 / (c**2 + 1e-4)

    c1, c2, cf = contrast_p(filt(im1)), contrast_p(filt(im2)), contrast_p(filt(fu))
    q1 = np.where(c1 < cf, c1 / cf, cf / c1)
    q2 = np.where(c2 < cf, c2 / cf, cf / c2)
    lam1 = c1 * c1 / (c1 * c1 + c2 * c2)
    lam2 = c2 * c2 / (c1 * c1 + c2 * c2)
    return float(np.mean(lam1 * q1 + lam2 * q2))


def _blkproc(x, fun, size=16):
    h, w = x.shape
    hh, ww = -(-h // size) * size, -(-w // size) * size
    p = np.zeros((hh, ww), dtype=x.dtype)
    p[:h, :w] = x
    return np.array([[fun(p[i:i + size, j:j + size]) for j in range(0, ww, size)] for i in range(0, hh, size)])


def qcv(f, a, b):
    im1, im2, fu = _normalize1(b), _normalize1(a), _normalize1(f)
    f1 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    f2 = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)
    grad = lambda x: np.sqrt(signal.correlate2d(x, f1, mode="same") ** 2
                             + signal.correlate2d(x, f2, mode="same") ** 2)
    lam1 = _blkproc(grad(im1), lambda x: np.sum(x**5))
    lam2 = _blkproc(grad(im2), lambda x: np.sum(x**5))
    hang, lie = im1.shape
    u, v = _freqspace(hang, lie)
    u, v = (lie / 8) * u, (hang / 8) * v
    r = np.sqrt(u**2 + v**2)
    theta = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    filt = lambda x: np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * theta))
    d1 = _blkproc(filt(im1 - fu), lambda x: np.mean(x**2)).real
    d2 = _blkproc(filt(im2 - fu), lambda x: np.mean(x**2)).real
    return float((lam1 * d1 + lam2 * d2).sum() / (lam1 + lam2).sum())


# ---------------------------------------------------------------- NLPD (Laparra 2016, pyiqa parameters)

_NLPD_F = np.outer([0.05, 0.25, 0.4, 0.25, 0.05], [0.05, 0.25, 0.4, 0.25, 0.05])
_NLPD_SIG = [0.0248, 0.0185, 0.0179, 0.0191, 0.0220, 0.2782]
_NLPD_DN = [np.array(k, dtype=np.float64) for k in (
    [[0, 0.1011, 0], [0.1493, 0, 0.1460], [0, 0.1015, 0]],
    [[0, 0.0757, 0], [0.1986, 0, 0.1846], [0, 0.0837, 0]],
    [[0, 0.0477, 0], [0.2138, 0, 0.2243], [0, 0.0467, 0]],
    [[0, 0, 0], [0.2503, 0, 0.2616], [0, 0, 0]],
    [[0, 0, 0], [0.2598, 0, 0.2552], [0, 0, 0]],
    [[0, 0, 0], [0.2215, 0, 0.0717], [0, 0, 0]],
)]


def _nlp(x):
    out, j = [], x
    for i in range(5):
        low = signal.correlate2d(np.pad(j, 2, mode="symmetric"), _NLPD_F, mode="valid")[::2, ::2]
        rep = np.pad(low, 1, mode="edge")
        up = np.zeros((2 * rep.shape[0], 2 * rep.shape[1]))
        up[::2, ::2] = 4 * rep
        blur = signal.correlate2d(up, _NLPD_F, mode="same")[2:2 + j.shape[0], 2:2 + j.shape[1]]
        lap = j - blur
        out.append(lap / (_NLPD_SIG[i] + signal.convolve2d(np.abs(lap), _NLPD_DN[i], mode="same")))
        j = low
    out.append(j / (_NLPD_SIG[5] + signal.convolve2d(np.abs(j), _NLPD_DN[5], mode="same")))
    return out


def nlpd(f, a, b):
    def one(x, y):
        return np.mean([math.sqrt(np.mean((p - q) ** 2)) for p, q in zip(_nlp(x / 255), _nlp(y / 255))])

    return (one(a, f) + one(b, f)) / 2


FUNCTIONS = {
    "EN": en, "SD": sd, "SF": sf, "AG": ag, "EI": ei, "MI": mi, "CE": ce, "CC": cc, "SCD": scd,
    "MSE": mse, "PSNR": psnr, "RMSE": rmse, "SSIM": ssim, "MS_SSIM": ms_ssim, "VIF": vif, "VIFF": viff, "Qabf": qabf, "Nabf": nabf,
    "Qcb": qcb, "Qcv": qcv, "NLPD": nlpd,
}

# ---------------------------------------------------------------- colour handling of each profile

LUMA = {"fusebench": (0.299, 0.587, 0.114), "cddfuse": (0.299, 0.587, 0.114),
        "tang": (0.298936021293775, 0.587043074451121, 0.114020904255103)}


def to_grey(x: np.ndarray, profile: str, rounded: bool = True) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8-valued -> (H, W) float64 as each reference converts it."""
    x = x.astype(np.float64)
    if x.ndim == 2:
        return x
    if profile in ("fusebench", "cddfuse"):
        return np.round(0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])
    c = LUMA["tang"]  # MATLAB rgb2gray: rounds half away from zero on uint8, not on double input
    y = c[0] * x[..., 0] + c[1] * x[..., 1] + c[2] * x[..., 2]
    if rounded:
        return np.floor(y + 0.5)
    grey = (x[..., 0] == x[..., 1]) & (x[..., 1] == x[..., 2])
    return np.where(grey, x[..., 0], y)  # a grey pixel is its own luminance


def score(metric: str, profile_name: str, options: dict, f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """One metric of one triple under a profile, colour handled the reference's way."""
    fn = FUNCTIONS[metric]
    if profile_name == "vifb" and f.ndim == 3:
        ch = lambda x, k: x[..., k].astype(np.float64) if x.ndim == 3 else x.astype(np.float64)
        if metric == "SF":  # VIFB's M x 3N indexing of an RGB array
            wide = np.concatenate([f[..., k] for k in range(3)], axis=1).astype(np.float64)
            return fn(wide, **options)
        return float(np.mean([fn(ch(f, k), ch(a, k), ch(b, k), **options) for k in range(3)]))
    prof = "tang" if profile_name in ("tang", "tang_fixed", "vifb") else profile_name
    # VIFB's PSNR, RMSE and Qabf call rgb2gray on double(source) next to a grey F: no rounding
    rounded = not (profile_name == "vifb" and metric in ("PSNR", "RMSE", "Qabf"))
    return fn(to_grey(f, prof), to_grey(a, prof, rounded), to_grey(b, prof, rounded), **options)

"""Every metric under every profile against the independent numpy/scipy implementations in
``numpy_reference.py``, on random images, crops of real published fusions and full real triples; plus
published values and hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import numpy_reference as ref
import pytest
import torch
from metric_data import random_triple

import fusebench.metrics as M

RTOL = {"SSIM": 1e-4}  # the tolerances: 1e-6 relative for everything else
PROFILES = M.list_profiles()


def _close(got: float, want: float, metric: str) -> None:
    tol = RTOL.get(metric, 1e-6)
    assert got == pytest.approx(want, rel=tol, abs=1e-12), f"{metric}: {got} vs reference {want}"


def _crops(triples, rng):
    """48x64 crops at an edge-rich centre of each real triple, plus one structured random triple."""
    out = {}
    for name, (f, a, b) in triples.items():
        h, w = f.shape[:2]
        y, x = h // 2 - 24, w // 2 - 32
        out[name] = tuple(im[y:y + 48, x:x + 64] for im in (f, a, b))
    out["random"] = random_triple(rng, 48, 64)
    return out


@pytest.fixture(scope="module")
def crops(triples):
    return _crops(triples, np.random.default_rng(1))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("metric", [m for m in M.list_metrics() if M.get_metric(m).min_size <= 48])
def test_matches_reference_on_crops(crops, profile, metric):
    """Colour handling, options and formula of each (profile, metric) on grey, RGB and mixed triples."""
    p = M.get_profile(profile)
    for name, (f, a, b) in crops.items():
        got = M.evaluate(f, a, b, metrics=[metric], profile=profile)[metric].iloc[0]
        want = ref.score(metric, profile, p.options_for(metric), f, a, b)
        _close(got, want, f"{name}/{metric}")


FULL = ("EN", "SD", "SF", "AG", "MI", "CC", "SCD", "PSNR", "MSE", "SSIM", "MS_SSIM", "VIF", "VIFF", "Qabf", "Nabf", "CE",
        "EI", "RMSE")


@pytest.mark.parametrize(("triple", "profile"), [("tno_05_piafusion", "cddfuse"), ("tno_05_piafusion", "tang"),
                                                 ("vifb_walking2_u2fusion", "vifb"),
                                                 ("vifb_walking2_u2fusion", "fusebench")])
def test_matches_reference_on_full_triples(triples, triple, profile):
    f, a, b = triples[triple]
    p = M.get_profile(profile)
    df = M.evaluate(f, a, b, metrics=FULL, profile=profile)
    for metric in FULL:
        opts = p.options_for(metric)
        if metric == "Nabf":
            opts = {**opts, "loops": False}  # the per-pixel loop version is checked on the crops
        _close(df[metric].iloc[0], ref.score(metric, profile, opts, f, a, b), metric)


def test_vectorised_nabf_reference_equals_loops(crops):
    for f, a, b in crops.values():
        g = [ref.to_grey(x, "fusebench") for x in (f, a, b)]
        assert ref.nabf(*g, loops=False) == pytest.approx(ref.nabf(*g), rel=1e-12)


# Values published in ../shared/reference/metrics.md, measured by running the reference code itself
# (CDDFuse's Evaluator in its pinned environment, Tang's MATLAB code under Octave) on these triples.
PUBLISHED = [
    ("tno_05_piafusion", "cddfuse", "AG", 10.18871),
    ("tno_05_piafusion", "tang", "AG", 10.26188),
    ("tno_05_piafusion", "tang", "MI", 2.84344),
    ("tno_05_piafusion", "fusebench", "MI", 2.81438),  # "exact 2.81438 bits"
    ("tno_01_densefuse", "tang", "Qabf", 0.41359),
]


@pytest.mark.parametrize(("triple", "profile", "metric", "value"), PUBLISHED)
def test_published_values(triples, triple, profile, metric, value):
    f, a, b = triples[triple]
    got = M.evaluate(f, a, b, metrics=[metric], profile=profile)[metric].iloc[0]
    assert abs(got - value) <= 5e-6 * max(1.0, abs(value)), (got, value)  # 5 decimals were published


def test_published_tang_vif_two_digits(triples):
    # metrics.md: Tang's current code gives VIF 0.54 for DenseFuse on TNO-01 (older spreadsheets: 0.62)
    f, a, b = triples["tno_01_densefuse"]
    assert M.evaluate(f, a, b, metrics=["VIF"], profile="tang")["VIF"].iloc[0] == pytest.approx(0.54, abs=0.005)


def test_cddfuse_mi_is_exact_mi_in_nats(triples):
    f, a, b = triples["tno_05_piafusion"]
    nats = M.evaluate(f, a, b, metrics=["MI"], profile="cddfuse")["MI"].iloc[0]
    bits = M.evaluate(f, a, b, metrics=["MI"], profile="fusebench")["MI"].iloc[0]
    assert nats / math.log(2) == pytest.approx(bits, rel=1e-12)


# ------------------------------------------------------------------ hand-computable cases


def test_constant_image():
    c = torch.full((1, 1, 48, 48), 77, dtype=torch.uint8)
    for fn in (M.en, M.sd, M.sf, M.ag, M.ei):
        assert fn(c).item() == 0.0
    assert M.mse(c, c, c).item() == 0.0 and M.psnr(c, c, c).item() == math.inf
    # VIF of constant sources: 0/0 per term; CDDFuse's guard makes each term 1.0
    assert torch.isnan(M.vif(c, c, c)).all()
    assert M.vif(c, c, c, nan_to_one=True).item() == 2.0


def test_two_level_histograms():
    half = torch.zeros(1, 1, 4, 8, dtype=torch.uint8)
    half[..., 4:] = 255
    assert M.en(half).item() == pytest.approx(1.0, abs=1e-15)
    quarter = half.clone()
    quarter[..., :2, :] = quarter[..., :2, :] // 2 + 100  # levels 100, 227 in the top rows
    assert M.en(quarter).item() == pytest.approx(2.0, abs=1e-15)
    # F is the column pattern, A the row pattern: independent -> MI(F, A) = 0; MI(F, F) = H(F) = 1 bit
    rows = torch.zeros(1, 1, 4, 8, dtype=torch.uint8)
    rows[..., 2:, :] = 200
    assert M.mi(half, rows, half).item() == pytest.approx(0.0 + 1.0, abs=1e-12)
    assert M.mi(half, rows, half, base=math.e).item() == pytest.approx(math.log(2), abs=1e-12)


def test_tang_joint_saturation_on_known_histogram():
    # F = A with levels 254 and 255 in equal halves: exact MI(F,A) = 1 bit; Tang's merged joint bin gives
    # H(F) + H(A) - H(joint merged) = 1 + 1 - 0 = 2 bits.
    x = torch.full((1, 1, 2, 4), 254, dtype=torch.uint8)
    x[..., 2:] = 255
    assert M.mi(x, x, x).item() == pytest.approx(2.0)
    assert M.mi(x, x, x, joint_saturate=True).item() == pytest.approx(4.0)


def test_fused_with_itself():
    x = torch.from_numpy(random_triple(np.random.default_rng(3), 64, 64)[0])
    assert M.cc(x, x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert M.mi(x, x, x).item() == pytest.approx(2 * M.en(x).item(), rel=1e-12)
    assert M.ssim(x, x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert M.ce(x, x, x).item() == 0.0
    assert M.nabf(x, x, x).item() == 0.0
    assert M.nlpd(x, x, x).item() == 0.0
    assert M.qcv(x, x, x).item() == 0.0
    assert M.qcb(x, x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert M.vif(x, x, x).item() == pytest.approx(2.0, rel=1e-6)
    # Qabf: strength ratio 1 and orientation 1 everywhere -> Qg(1) Qa(1), independent of the weights
    q = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert M.qabf(x, x, x).item() == pytest.approx(q, rel=1e-12)
    # with the references' tie rule the ratio is gF (not 1) wherever gA == gF, so the value differs
    assert M.qabf(x, x, x, tie_strength="gf").item() != pytest.approx(q, rel=1e-6)


def test_psnr_definitions_relate():
    f, a, b = (torch.from_numpy(x) for x in random_triple(np.random.default_rng(4), 40, 50))
    std = M.psnr(f, a, b).item()
    assert M.psnr(f, a, b, definition="tang").item() == pytest.approx(std + 20 * math.log10(255), rel=1e-12)
    assert M.mse(f, a, b, definition="tang").item() == pytest.approx(M.mse(f, a, b).item() / 255**2, rel=1e-12)
    peak = float(f.max())
    assert M.psnr(f, a, b, definition="cddfuse").item() == pytest.approx(std + 20 * math.log10(peak / 255))


def test_ag_tang_and_cddfuse_differ_by_the_normalisation():
    f = torch.from_numpy(random_triple(np.random.default_rng(5), 30, 41)[0])
    assert M.ag(f, norm="interior").item() == pytest.approx(M.ag(f).item() * 30 * 41 / (29 * 40), rel=1e-12)

"""evaluate() and evaluate_files(): input forms, colour handling per profile, results metadata, streaming."""

from __future__ import annotations

import json

import numpy as np
import numpy_reference as ref
import pandas as pd
import pytest
import torch
from metric_data import random_triple
from PIL import Image

import fusebench.metrics as M
from fusebench.images import ImageError


@pytest.fixture(scope="module")
def rgb_triple():
    rng = np.random.default_rng(11)
    f, a, b = random_triple(rng, 48, 56)
    colour = np.stack([b, np.roll(b, 3, axis=1), 255 - b], axis=-1)  # (H, W, 3) unequal channels
    fused = np.stack([f, np.roll(f, 2, axis=0), f // 2], axis=-1)
    return fused, a, colour


def test_result_frame_and_metadata(rgb_triple):
    f, a, b = rgb_triple
    df = M.evaluate(f, a, b, ids=["x"])
    assert list(df.columns) == list(M.DEFAULT_METRICS) and list(df.index) == ["x"] and df.index.name == "id"
    assert df.attrs["profile"] == "fusebench"
    info = df.attrs["profile_info"]
    json.dumps(info)
    json.dumps(df.attrs["metrics"])
    assert info["metrics"]["MI"]["unit"] == "bits"
    assert df.attrs["metrics"]["Nabf"]["higher_is_better"] is False


def test_input_forms_agree(rgb_triple):
    f, a, b = rgb_triple
    want = M.evaluate(f, a, b, metrics=["EN", "Qabf", "SSIM"])
    as_torch = [torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0) if x.ndim == 3 else x[None]))[None]
                for x in (f, a, b)]
    pd.testing.assert_frame_equal(M.evaluate(*as_torch, metrics=["EN", "Qabf", "SSIM"]), want)
    pil = [Image.fromarray(x) for x in (f, a, b)]
    pd.testing.assert_frame_equal(M.evaluate(*pil, metrics=["EN", "Qabf", "SSIM"]), want)
    floats = [x.astype(np.float32) / 255 for x in (f, a, b)]
    pd.testing.assert_frame_equal(M.evaluate(*floats, metrics=["EN", "Qabf", "SSIM"], data_range=1.0), want)
    batched = [np.stack([x, x]) for x in (f, a, b)]  # (N, H, W, C) and (N, H, W)
    two = M.evaluate(*batched, metrics=["EN", "Qabf", "SSIM"])
    assert len(two) == 2 and np.allclose(two.to_numpy(), np.vstack([want.to_numpy()] * 2))


def test_float32_fast_path_close(rgb_triple):
    f, a, b = rgb_triple
    names = [m for m in M.list_metrics() if M.get_metric(m).min_size <= 48]  # all but MS-SSIM
    d64 = M.evaluate(f, a, b, metrics=names)
    d32 = M.evaluate(f, a, b, metrics=names, dtype=torch.float32)
    np.testing.assert_allclose(d32.to_numpy(), d64.to_numpy(), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("profile", ["fusebench", "cddfuse", "tang", "vifb"])
def test_colour_handling_matches_reference(rgb_triple, profile):
    f, a, b = rgb_triple
    p = M.get_profile(profile)
    names = ["EN", "SF", "MI", "SSIM", "Qabf", "PSNR"]
    df = M.evaluate(f, a, b, metrics=names, profile=profile)
    for m in names:
        want = ref.score(m, profile, p.options_for(m), f, a, b)
        assert df[m].iloc[0] == pytest.approx(want, rel=1e-9), m
    if profile == "vifb":  # per-channel means differ from luminance scores
        lum = M.evaluate(f, a, b, metrics=["EN"], profile="tang")["EN"].iloc[0]
        assert df["EN"].iloc[0] != pytest.approx(lum, rel=1e-6)


def test_bad_inputs(rgb_triple):
    f, a, b = rgb_triple
    with pytest.raises(ValueError, match="pass data_range=1.0"):
        M.evaluate(f / 255.0, a, b)
    with pytest.raises(ValueError, match="same number of images, height and width"):
        M.evaluate(f, a[:-1], b)
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        M.evaluate(np.zeros((1, 4, 48, 56), np.uint8), a, b)
    with pytest.raises(TypeError, match="uint8"):
        M.evaluate(f.astype(np.int64), a, b)
    with pytest.raises(ValueError, match="finite"):
        M.evaluate(np.full(a.shape, np.nan), a, b, data_range=1.0)
    with pytest.raises(ValueError, match="values in"):
        M.evaluate(f.astype(np.float64), a, b, data_range=1.0)
    with pytest.raises(ValueError, match="at least 41x41"):
        M.evaluate(f[:30], a[:30], b[:30], metrics=["VIF"])
    with pytest.raises(KeyError, match="Unknown metric profile 'cdfuse'"):
        M.evaluate(f, a, b, profile="cdfuse")
    with pytest.raises(ValueError, match=r"one id per image \(1\). Got 2 ids"):
        M.evaluate(f, a, b, ids=["a", "b"])


def test_profiles_and_info():
    assert M.list_profiles()[0] == "fusebench"
    assert set(M.list_profiles()) == {"fusebench", "cddfuse", "tang", "tang_fixed", "vifb"}
    for name in M.list_profiles():
        info = M.profile_info(name)
        json.dumps(info)
        assert set(info["metrics"]) == set(M.list_metrics())
    assert "Nabf" in M.profile_info("cddfuse")["fallback"] and "CE" in M.profile_info("tang")["fallback"]
    assert M.profile_info("vifb")["metrics"]["MI"]["options"] == {"base": pytest.approx(np.e), "normalize": "minmax"}
    assert "driver" in M.profile_info("tang")["metrics"]["Nabf"]["definition"]


def test_tang_nabf_driver_order(rgb_triple):
    f, a, b = rgb_triple
    t = M.evaluate(f, a, b, metrics=["Nabf"], profile="tang")["Nabf"].iloc[0]
    fixed = M.evaluate(f, a, b, metrics=["Nabf"], profile="tang_fixed")["Nabf"].iloc[0]
    g = [ref.to_grey(x, "tang") for x in (f, a, b)]
    assert t == pytest.approx(ref.nabf(g[1], g[2], g[0], loops=False), rel=1e-9)  # analysis_nabf(ir, vi, F)
    assert fixed == pytest.approx(ref.nabf(*g, loops=False), rel=1e-9)


def _triples_on_disk(root, names):
    return [(n, root / "triples" / n / "fused.png", root / "triples" / n / "ir.png", root / "triples" / n / "vi.png")
            for n in names]


def test_evaluate_files_streams_and_keeps_order(shared_data, triples):
    names = ["msrs_00537D_cddvariant", "tno_05_piafusion", "vifb_walking2_u2fusion", "msrs_00881N_piafusion",
             "tno_05_piafusion"]
    items = _triples_on_disk(shared_data, names)
    items[-1] = ("again", *items[-1][1:])
    metrics = ["EN", "SF", "Qabf", "MI", "SSIM"]
    df = M.evaluate_files(items, metrics=metrics, profile="tang", batch_size=2)
    assert list(df.index) == [*names[:-1], "again"] and df.attrs["profile"] == "tang"
    for name, f, a, b in items:
        arrays = [np.array(Image.open(p)) for p in (f, a, b)]
        one = M.evaluate(*arrays, metrics=metrics, profile="tang")
        np.testing.assert_allclose(df.loc[name].to_numpy(), one.iloc[0].to_numpy(), rtol=1e-12)
    assert df.loc["again"].equals(df.loc["tno_05_piafusion"])


def test_evaluate_files_progress_shows_the_total_of_a_list(shared_data, capsys):
    items = _triples_on_disk(shared_data, ["tno_05_piafusion", "msrs_00537D_cddvariant"])
    M.evaluate_files(items, metrics=["EN"], progress=True)
    assert "2/2" in capsys.readouterr().err
    M.evaluate_files(iter(items), metrics=["EN"], progress=True)  # an iterator: no length, a count only
    assert "2/2" not in capsys.readouterr().err


def test_evaluate_files_errors_name_the_file(shared_data, tmp_path):
    good = _triples_on_disk(shared_data, ["tno_05_piafusion"])[0]
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="nope.png"):
        M.evaluate_files([(good[0], missing, good[2], good[3])], metrics=["EN"])
    other = _triples_on_disk(shared_data, ["vifb_walking2_u2fusion"])[0]
    with pytest.raises(ValueError, match="differ in size: .*fused.png"):
        M.evaluate_files([(good[0], good[1], other[2], good[3])], metrics=["EN"])
    assert M.evaluate_files([], metrics=["EN"]).empty


def test_ambiguous_layouts_and_ranges_are_refused(rgb_triple):
    f, a, b = rgb_triple
    chw = torch.from_numpy(np.moveaxis(f, -1, 0).copy())  # one RGB image as (3, H, W)
    with pytest.raises(ValueError, match=r"ambiguous: pass one RGB image as \(1, 3, H, W\)"):
        M.evaluate(chw, a, b)
    with pytest.raises(ValueError, match="data_range=255 but all its values are in \\[0, 1\\]: pass data_range=1.0"):
        M.evaluate(f / 255.0, a / 255.0, b / 255.0, data_range=255.0)


def test_lists_and_paths_of_different_sizes(tmp_path, rgb_triple):
    f, a, b = rgb_triple
    small = [x[:44, :50] for x in (f, a, b)]
    want_big = M.evaluate(f, a, b, metrics=["EN", "Qabf"])
    want_small = M.evaluate(*small, metrics=["EN", "Qabf"])
    for name, x in zip(("f", "a", "b"), (f, a, b), strict=True):
        Image.fromarray(x).save(tmp_path / f"{name}.png")
    df = M.evaluate([small[0], tmp_path / "f.png", small[0]], [small[1], str(tmp_path / "a.png"), small[1]],
                    [small[2], tmp_path / "b.png", small[2]], metrics=["EN", "Qabf"], ids=["s1", "big", "s2"])
    assert list(df.index) == ["s1", "big", "s2"]
    np.testing.assert_allclose(df.loc["big"].to_numpy(), want_big.iloc[0].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(df.loc["s2"].to_numpy(), want_small.iloc[0].to_numpy(), rtol=1e-12)
    one = M.evaluate(tmp_path / "f.png", tmp_path / "a.png", tmp_path / "b.png", metrics=["EN"])
    assert one["EN"].iloc[0] == pytest.approx(want_big["EN"].iloc[0], rel=1e-12)
    with pytest.raises(ValueError, match=r"as many `ir` and `vi` images as `fused` images \(2\)"):
        M.evaluate([f, f], [a], [b, b])


@pytest.mark.parametrize("metric", ["PSNR", "RMSE", "Qabf", "SSIM", "MI"])
def test_vifb_grey_fused_with_colour_sources(rgb_triple, metric):
    """VIFB converts a colour source with an unrounded rgb2gray for PSNR, RMSE and Qabf, rounded for the rest."""
    f, a, b = rgb_triple
    grey_f = f[..., 0]
    p = M.get_profile("vifb")
    got = M.evaluate(grey_f, a, b, metrics=[metric], profile="vifb")[metric].iloc[0]
    want = ref.score(metric, "vifb", p.options_for(metric), grey_f, a, b)
    assert got == pytest.approx(want, rel=1e-12)
    rounded_b = ref.to_grey(b, "tang").round().astype(np.uint8)  # a stand-in with the luma rounded first
    other = M.evaluate(grey_f, a, rounded_b, metrics=[metric], profile="vifb")[metric].iloc[0]
    assert (other != pytest.approx(got, rel=1e-12)) == (metric in p.unrounded_luma)

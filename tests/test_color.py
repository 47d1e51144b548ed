"""BT.601 colour handling against the standard's published coefficients."""

from __future__ import annotations

import numpy as np
import torch

from fusebench.color import luminance, replace_luminance, rgb_to_ycbcr, ycbcr_to_rgb


def test_ycbcr_of_primaries_matches_bt601() -> None:
    rgb = torch.eye(3, dtype=torch.float64).reshape(3, 3, 1, 1).permute(1, 0, 2, 3)  # columns: R, G, B pixels
    ycc = rgb_to_ycbcr(rgb.permute(1, 0, 2, 3))  # (3 pixels as batch) -> check each
    # Y of pure red, green, blue are the BT.601 weights; Cb of blue and Cr of red are +0.5 from centre.
    np.testing.assert_allclose(ycc[:, 0, 0, 0].numpy(), [0.299, 0.587, 0.114], atol=1e-12)
    np.testing.assert_allclose(ycc[2, 1, 0, 0].item(), 1.0, atol=1e-12)
    np.testing.assert_allclose(ycc[0, 2, 0, 0].item(), 1.0, atol=1e-12)


def test_round_trip_and_grey_is_neutral() -> None:
    rgb = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-10, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.3, dtype=torch.float64)
    ycc = rgb_to_ycbcr(grey)
    torch.testing.assert_close(ycc[:, 1:], torch.full_like(ycc[:, 1:], 0.5))
    torch.testing.assert_close(luminance(grey), torch.full((1, 1, 2, 2), 0.3, dtype=torch.float64))


def test_replace_luminance_keeps_chroma() -> None:
    vi = torch.rand(1, 3, 4, 4, dtype=torch.float64) * 0.5 + 0.25
    new_y = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 0.2 + 0.4
    out = replace_luminance(vi, new_y)
    torch.testing.assert_close(rgb_to_ycbcr(out)[:, :1], new_y, atol=1e-10, rtol=0)
    torch.testing.assert_close(rgb_to_ycbcr(out)[:, 1:], rgb_to_ycbcr(vi)[:, 1:], atol=1e-10, rtol=0)
    grey_vi = torch.rand(1, 1, 4, 4)
    assert replace_luminance(grey_vi, new_y.float()) is not None
    assert replace_luminance(grey_vi, new_y.float()).shape == (1, 1, 4, 4)

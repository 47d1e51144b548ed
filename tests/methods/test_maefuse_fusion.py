"""MaeFuse's fusion layer: attention over tokens, CFM symmetry, the MFM formula, batch independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusebench.methods.maefuse.fusion import CrossAttention, FusionLayer

DIM, HEADS, L = 32, 4, 12


def _reference_mha(attn: CrossAttention) -> nn.MultiheadAttention:
    """torch's own MultiheadAttention (batch-first, over tokens) with the same weights."""
    ref = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
    ref.load_state_dict(attn.state_dict())
    return ref.eval()


def _tokens(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(n, L, DIM), torch.randn(n, L, DIM), torch.randn(L, DIM)


def test_cross_attention_matches_torch_mha_over_tokens() -> None:
    attn = CrossAttention(DIM, HEADS)
    q, kv = torch.randn(3, 5, DIM), torch.randn(3, 9, DIM)
    expected, _ = _reference_mha(attn)(q, kv, kv, need_weights=False)
    torch.testing.assert_close(attn(q, kv), expected, atol=1e-5, rtol=1e-5)


def test_parameter_names_match_official_modules() -> None:
    """The official cross_fusion uses nn.MultiheadAttention, fc1, fc2, ln: keys must map one to one."""
    assert set(CrossAttention(DIM, HEADS).state_dict()) == set(nn.MultiheadAttention(DIM, HEADS).state_dict())
    keys = set(FusionLayer(DIM, HEADS).state_dict())
    assert {"cross_model.in_proj_weight", "merge_model.out_proj.bias", "fc1.weight", "fc2.bias", "ln.weight"} <= keys


def test_fusion_layer_matches_the_composed_reference() -> None:
    layer = FusionLayer(DIM, HEADS).eval()
    v, i, pos = _tokens()
    cross, merge = _reference_mha(layer.cross_model), _reference_mha(layer.merge_model)
    vp, ip = v + pos, i + pos
    phi_d = cross(ip, vp, vp)[0] + cross(vp, ip, ip)[0]
    both = torch.cat([vp, ip], dim=1)
    merged = merge(phi_d, both, both)[0]
    expected = F.layer_norm(merged + layer.fc2(F.gelu(layer.fc1(merged))), (DIM,), layer.ln.weight, layer.ln.bias)
    with torch.no_grad():
        torch.testing.assert_close(layer(v, i, pos, cfm_only=True), phi_d, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer(v, i, pos), expected, atol=1e-5, rtol=1e-5)


def test_cfm_is_symmetric_in_the_modalities() -> None:
    layer = FusionLayer(DIM, HEADS)
    v, i, _ = _tokens()
    torch.testing.assert_close(layer.cfm(v, i), layer.cfm(i, v))


def test_tokens_attend_to_other_tokens() -> None:
    """Changing one token changes the output at the other positions (the official code never does this)."""
    layer = FusionLayer(DIM, HEADS)
    v, i, pos = _tokens(1)
    v2 = v.clone()
    v2[:, 0] += 5.0
    with torch.no_grad():
        delta = (layer(v2, i, pos) - layer(v, i, pos))[:, 1:].abs().max()
    assert delta > 1e-3


def test_output_of_a_pair_does_not_depend_on_its_batch_mates() -> None:
    layer = FusionLayer(DIM, HEADS)
    v, i, pos = _tokens(3)
    with torch.no_grad():
        batched = layer(v, i, pos)
        other = layer(torch.cat([v[:1], torch.randn(2, L, DIM)]), torch.cat([i[:1], torch.randn(2, L, DIM)]), pos)
        alone = layer(v[:1], i[:1], pos)
    torch.testing.assert_close(batched[:1], alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(other[:1], alone, atol=1e-6, rtol=1e-5)


def test_mfm_prefers_the_modality_that_agrees_with_the_guide() -> None:
    """One softmax over both modalities: with identity projections the merge copies the agreeing tokens."""
    layer = FusionLayer(DIM, 1)
    with torch.no_grad():
        layer.merge_model.in_proj_weight.copy_(torch.cat([torch.eye(DIM) * 4] * 2 + [torch.eye(DIM)]))
        layer.merge_model.in_proj_bias.zero_()
        layer.merge_model.out_proj.weight.copy_(torch.eye(DIM))
        layer.merge_model.out_proj.bias.zero_()
        v = F.normalize(torch.randn(1, L, DIM), dim=-1) * 3
        i = F.normalize(torch.randn(1, L, DIM), dim=-1) * 3
        merged = layer.merge_model(v, torch.cat([v, i], dim=1))  # guide == the visible tokens
    assert (merged - v).norm() < 0.05 * v.norm()


def test_ir_guide_replaces_the_cfm_with_infrared_tokens() -> None:
    layer = FusionLayer(DIM, HEADS, guide="ir")
    v, i, pos = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(layer(v, i, pos), layer.mfm(v + pos, i + pos, i + pos))
    with pytest.raises(ValueError, match="no CFM"):
        layer(v, i, pos, cfm_only=True)


def test_bad_token_shapes_are_rejected() -> None:
    layer = FusionLayer(DIM, HEADS)
    with pytest.raises(ValueError, match="same shape"):
        layer(torch.randn(1, L, DIM), torch.randn(1, L + 1, DIM))
    with pytest.raises(ValueError, match="guide must be"):
        FusionLayer(DIM, HEADS, guide="mean")  # type: ignore[arg-type]


def test_bf16_autocast_on_cpu_stays_close_to_fp32() -> None:
    layer = FusionLayer(DIM, HEADS)
    v, i, pos = _tokens()
    with torch.no_grad():
        ref = layer(v, i, pos)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(v, i, pos)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()

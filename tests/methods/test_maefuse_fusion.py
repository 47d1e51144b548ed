"""MaeFuse's fusion layer against the paper's equations (both MFM forms): attention over tokens, CFM symmetry,
batch independence."""

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


def _paper_attention(query: torch.Tensor, key_value: torch.Tensor, state: dict[str, torch.Tensor],
                     heads: int) -> torch.Tensor:
    """Scaled dot-product attention written out from the equations (packed in-projection, out-projection):
    softmax(Q K^T / sqrt(d)) V per head, with Q = q W_q + b_q, K = kv W_k + b_k, V = kv W_v + b_v."""
    w_q, w_k, w_v = state["in_proj_weight"].split(DIM)
    b_q, b_k, b_v = state["in_proj_bias"].split(DIM)
    d = DIM // heads

    def split(x: torch.Tensor) -> torch.Tensor:  # (N, L, D) -> (N, heads, L, d)
        return x.reshape(x.shape[0], x.shape[1], heads, d).permute(0, 2, 1, 3)

    q, k, v = split(query @ w_q.T + b_q), split(key_value @ w_k.T + b_k), split(key_value @ w_v.T + b_v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], DIM)
    return out @ state["out_proj.weight"].T + state["out_proj.bias"]


def _paper_fusion(layer: FusionLayer, v: torch.Tensor, i: torch.Tensor, pos: torch.Tensor, mfm: str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2 from the paper's text and the official fusion.py (reference 1.4), over tokens:
    Phi_D = C(I, V) = Attn_c(q=I, kv=V) + Attn_c(q=V, kv=I);
    separate: M = Attn_m(q=Phi_D, kv=V) + Attn_m(q=Phi_D, kv=I) (Phi_D compared "with each" modality, the
    official code's two merge_model calls); joint: M = Attn_m(q=Phi_D, kv=[V; I]) (one softmax);
    Phi_F = LN(M + fc2(GELU(fc1(M))))."""
    cross = {k[len("cross_model."):]: t for k, t in layer.state_dict().items() if k.startswith("cross_model.")}
    merge = {k[len("merge_model."):]: t for k, t in layer.state_dict().items() if k.startswith("merge_model.")}
    vp, ip = v + pos, i + pos
    phi_d = _paper_attention(ip, vp, cross, HEADS) + _paper_attention(vp, ip, cross, HEADS)
    if mfm == "separate":
        merged = _paper_attention(phi_d, vp, merge, HEADS) + _paper_attention(phi_d, ip, merge, HEADS)
    else:
        merged = _paper_attention(phi_d, torch.cat([vp, ip], dim=1), merge, HEADS)
    hidden = F.gelu(merged @ layer.fc1.weight.T + layer.fc1.bias) @ layer.fc2.weight.T + layer.fc2.bias
    x = merged + hidden
    x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    return phi_d, x * layer.ln.weight + layer.ln.bias


@pytest.mark.parametrize("mfm", ["separate", "joint"])
def test_fusion_layer_matches_the_paper_equations(mfm: str) -> None:
    layer = FusionLayer(DIM, HEADS, mfm=mfm).eval()  # type: ignore[arg-type]
    with torch.no_grad():  # non-trivial LayerNorm parameters, so the reference's LN is checked too
        layer.ln.weight.uniform_(0.5, 1.5)
        layer.ln.bias.uniform_(-0.5, 0.5)
        v, i, pos = _tokens()
        phi_d, expected = _paper_fusion(layer, v, i, pos, mfm)
        torch.testing.assert_close(layer(v, i, pos, cfm_only=True), phi_d, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer(v, i, pos), expected, atol=1e-5, rtol=1e-5)


def test_separate_mfm_is_the_default_and_differs_from_joint() -> None:
    """Regression: the MFM used to be one softmax over both modalities' tokens, and the test's reference made
    the same choice, so nothing could catch it. The faithful default runs two attentions and sums them."""
    layer = FusionLayer(DIM, HEADS)
    assert layer.mfm_mode == "separate"
    v, i, pos = _tokens()
    with torch.no_grad():
        separate = layer(v, i, pos)
        layer.mfm_mode = "joint"
        joint = layer(v, i, pos)
        _, reference_joint = _paper_fusion(layer, v, i, pos, "joint")
        _, reference_separate = _paper_fusion(layer, v, i, pos, "separate")
    torch.testing.assert_close(joint, reference_joint, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(separate, reference_separate, atol=1e-5, rtol=1e-5)
    assert (separate - joint).abs().max() > 1e-2
    with pytest.raises(ValueError, match="mfm must be"):
        FusionLayer(DIM, HEADS, mfm="concat")  # type: ignore[arg-type]


def test_separate_mfm_gives_each_modality_its_own_softmax() -> None:
    """With two softmaxes each modality contributes a full convex combination of its own values, whatever
    the other holds: if every infrared token is the same, its attention returns that token's projection."""
    layer = FusionLayer(DIM, HEADS)
    v, i, _ = _tokens(1)
    i = i[:, :1].expand(-1, L, -1)
    state = {k[len("merge_model."):]: t for k, t in layer.state_dict().items() if k.startswith("merge_model.")}
    with torch.no_grad():
        phi_d = layer.cfm(v, i)
        ir_part = layer.merge_model(phi_d, i)
        value = i[:, :1] @ state["in_proj_weight"][2 * DIM:].T + state["in_proj_bias"][2 * DIM:]
        constant = value @ state["out_proj.weight"].T + state["out_proj.bias"]
    torch.testing.assert_close(ir_part, constant.expand(-1, L, -1), atol=1e-5, rtol=1e-5)


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


def test_joint_mfm_prefers_the_modality_that_agrees_with_the_guide() -> None:
    """``mfm="joint"``, one softmax over both modalities: with identity projections the merge copies the
    agreeing tokens."""
    layer = FusionLayer(DIM, 1, mfm="joint")
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

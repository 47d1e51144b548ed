"""MAE backbone: any-size shapes, sin-cos tables, a literal official-style forward, masking, checkpointing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusebench.color import luminance
from fusebench.methods.mae import MAE_ARCHS, build_mae, from_mae_output, sincos_pos_embed, to_mae_input
from fusebench.methods.mae.preprocess import IMAGENET_MEAN, IMAGENET_STD


def _reference_sincos(dim: int, h: int, w: int) -> np.ndarray:
    """Element by element: token r*w+c, channel j; first half = column c, second half = row r, [sin, cos]."""
    quarter = dim // 4
    table = np.zeros((h * w, dim))
    for r in range(h):
        for c in range(w):
            for half, pos in ((0, c), (1, r)):
                for k in range(quarter):
                    omega = 1.0 / 10000 ** (k / quarter)
                    table[r * w + c, half * dim // 2 + k] = math.sin(pos * omega)
                    table[r * w + c, half * dim // 2 + quarter + k] = math.cos(pos * omega)
    return table


@pytest.mark.parametrize(("dim", "h", "w"), [(16, 3, 5), (32, 4, 4), (8, 1, 7)])
def test_sincos_matches_formula(dim: int, h: int, w: int) -> None:
    ours = sincos_pos_embed(dim, (h, w)).numpy()
    np.testing.assert_allclose(ours, _reference_sincos(dim, h, w), atol=1e-6)


def test_sincos_offset_is_a_window_of_the_big_table() -> None:
    big = sincos_pos_embed(16, (9, 11)).reshape(9, 11, 16)
    window = sincos_pos_embed(16, (3, 4), offset=(5, 6)).reshape(3, 4, 16)
    torch.testing.assert_close(window, big[5:8, 6:10])


def test_sincos_rejects_dim_not_multiple_of_4() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed(10, (2, 2))


def test_any_size_round_trip_shapes() -> None:
    model = build_mae("test").eval()
    x = torch.rand(2, 1, 37, 53)
    inp, size = to_mae_input(x, model.patch_size)
    assert inp.shape == (2, 3, 48, 64) and size == (37, 53)
    tokens = model.encode(inp)
    assert tokens.shape == (2, 3 * 4, model.embed_dim)
    out = model.decode(tokens, (3, 4))
    assert out.shape == (2, 3, 48, 64)
    fused = from_mae_output(out, size)
    assert fused.shape == (2, 1, 37, 53) and fused.min() >= 0 and fused.max() <= 1


def test_encode_requires_patch_multiple() -> None:
    model = build_mae("test")
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        model.encode(torch.rand(1, 3, 37, 48))


def test_preprocess_round_trip_is_luminance() -> None:
    rgb = torch.rand(2, 3, 21, 35)
    inp, size = to_mae_input(rgb, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(inp[..., :21, :35], (rgb - mean) / std)
    # reflect padding: column 35 mirrors column 33
    torch.testing.assert_close(inp[..., :21, 35], inp[..., :21, 33])
    torch.testing.assert_close(from_mae_output(inp, size), luminance(rgb), atol=1e-5, rtol=0)
    grey = torch.rand(1, 1, 5, 9)  # smaller than the pad: edge replication
    inp, size = to_mae_input(grey, 16)
    assert inp.shape == (1, 3, 16, 16)
    torch.testing.assert_close(from_mae_output(inp, size), grey, atol=1e-5, rtol=0)


def test_warp_resizes_to_square_and_back() -> None:
    x = torch.rand(1, 1, 30, 50)
    inp, size = to_mae_input(x, 16, warp=64)
    assert inp.shape == (1, 3, 64, 64)
    back = from_mae_output(inp, size, warp=True)
    assert back.shape == x.shape
    assert (back - x).abs().mean() < 0.1  # a smooth-enough approximation after two resizes
    with pytest.raises(ValueError, match="not a multiple"):
        to_mae_input(x, 16, warp=60)


def _literal_block(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str, heads: int) -> torch.Tensor:
    """timm 0.4.5 Block written out: explicit softmax(q k^T * scale) attention, exact GELU, eps 1e-6."""

    def ln(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, t.shape[-1:], sd[f"{prefix}{name}.weight"], sd[f"{prefix}{name}.bias"], 1e-6)

    n, length, dim = x.shape
    qkv = ln(x, "norm1") @ sd[f"{prefix}attn.qkv.weight"].T + sd[f"{prefix}attn.qkv.bias"]
    q, k, v = qkv.reshape(n, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(n, length, dim)
    x = x + out @ sd[f"{prefix}attn.proj.weight"].T + sd[f"{prefix}attn.proj.bias"]
    hidden = F.gelu(ln(x, "norm2") @ sd[f"{prefix}mlp.fc1.weight"].T + sd[f"{prefix}mlp.fc1.bias"])
    return x + hidden @ sd[f"{prefix}mlp.fc2.weight"].T + sd[f"{prefix}mlp.fc2.bias"]


def test_encode_decode_match_literal_official_forward() -> None:
    arch = MAE_ARCHS["test"]
    model = build_mae("test").eval()
    sd = model.state_dict()
    x = torch.randn(2, 3, 32, 48)
    # official: patch_embed, + pos, blocks, norm; decoder_embed, + pos, blocks, norm, pred, unpatchify
    patches = x.reshape(2, 3, 2, 16, 3, 16).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 3 * 256)
    tokens = (
        patches @ sd["patch_embed.proj.weight"].reshape(arch.embed_dim, -1).T + sd["patch_embed.proj.bias"]
    )
    tokens = tokens + torch.from_numpy(_reference_sincos(arch.embed_dim, 2, 3)).float()
    for i in range(arch.depth):
        tokens = _literal_block(tokens, sd, f"blocks.{i}.", arch.num_heads)
    tokens = F.layer_norm(tokens, (arch.embed_dim,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), tokens, atol=1e-5, rtol=1e-5)
    dec = tokens @ sd["decoder_embed.weight"].T + sd["decoder_embed.bias"]
    dec = dec + torch.from_numpy(_reference_sincos(arch.decoder_embed_dim, 2, 3)).float()
    for i in range(arch.decoder_depth):
        dec = _literal_block(dec, sd, f"decoder_blocks.{i}.", arch.decoder_num_heads)
    dec = F.layer_norm(
        dec, (arch.decoder_embed_dim,), sd["decoder_norm.weight"], sd["decoder_norm.bias"], 1e-6
    )
    pred = dec @ sd["decoder_pred.weight"].T + sd["decoder_pred.bias"]
    # official unpatchify: (n, h, w, p, q, c) -> einsum nhwpqc->nchpwq
    image = torch.einsum("nhwpqc->nchpwq", pred.reshape(2, 2, 3, 16, 16, 3)).reshape(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(tokens, (2, 3)), image, atol=1e-5, rtol=1e-5)


def test_patchify_inverts_unpatchify() -> None:
    model = build_mae("test")
    x = torch.randn(1, 3, 32, 80)
    torch.testing.assert_close(model.unpatchify(model.patchify(x), (2, 5)), x)


def test_pretrain_loss_without_mask_is_full_mse() -> None:
    model = build_mae("test").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ((model(x) - x) ** 2).mean()
        torch.testing.assert_close(model.forward_pretrain(x, 0.0), expected)


def test_pretrain_loss_counts_only_masked_patches() -> None:
    """Make the decoder's prediction constant: the loss must be the MSE over exactly the hidden patches."""
    model = build_mae("test").eval()
    with torch.no_grad():
        model.decoder_pred.weight.zero_()
        model.decoder_pred.bias.zero_()
    x = torch.randn(1, 3, 64, 64)
    per_patch = (model.patchify(x) ** 2).mean(-1)[0]  # prediction 0 everywhere
    torch.manual_seed(3)
    loss = model.forward_pretrain(x, 0.75)
    torch.manual_seed(3)
    order = torch.rand(1, 16).argsort(dim=1)[0]
    hidden = order[4:]  # 16 patches, 4 kept
    torch.testing.assert_close(loss, per_patch[hidden].mean())
    assert not torch.isclose(loss, per_patch.mean())
    with pytest.raises(ValueError, match="mask_ratio"):
        model.forward_pretrain(x, 1.0)


def test_gradient_checkpointing_same_values_and_grads() -> None:
    plain = build_mae("test")
    ckpt = build_mae("test", grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    losses = []
    for model in (plain, ckpt):
        loss = model.forward_pretrain(x, 0.0)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1])
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        if a.grad is None:
            assert name == "mask_token" and b.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_masked_pretrain_reaches_every_parameter() -> None:
    model = build_mae("test")
    model.forward_pretrain(torch.randn(2, 3, 32, 32), 0.5).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_bf16_autocast_smoke_cpu() -> None:
    model = build_mae("test").eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_encode_on_cuda_matches_cpu(cuda: torch.device) -> None:
    model = build_mae("test").eval()
    x = torch.randn(1, 3, 48, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.to(cuda).encode(x.to(cuda)).cpu(), model.cpu().encode(x), atol=1e-4, rtol=1e-4
        )


def test_build_mae_sizes_and_unknown_arch() -> None:
    large = MAE_ARCHS["large"]
    assert (large.embed_dim, large.depth, large.num_heads, large.decoder_depth) == (1024, 24, 16, 4)
    assert MAE_ARCHS["huge"].patch_size == 14
    with pytest.raises(
        ValueError, match="Unknown MAE arch 'giant'. Available: large, base, huge, compact, test"
    ):
        build_mae("giant")
    model = build_mae("test", decoder_depth=1)
    assert len(model.decoder_blocks) == 1


def test_compact_fits_the_8_mb_budget_in_fp16() -> None:
    n = sum(p.numel() for p in build_mae("compact").parameters())
    assert n * 2 < 8e6


def test_large_parameter_counts_match_the_official_definitions() -> None:
    """Reference notes 1.2: encoder 303,098,880; 4-block decoder 13,529,344 (+ our mask token)."""
    with torch.device("meta"):
        model = build_mae("large")
    encoder = sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("patch_embed", "blocks", "norm"))
    )
    decoder = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder"))
    assert (encoder, decoder, model.mask_token.numel()) == (303_098_880, 13_529_344, 512)


def test_blocks_and_patch_embedding_are_timms_with_the_official_names() -> None:
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import Block

    model = build_mae("test")
    assert all(isinstance(b, Block) for b in [*model.blocks, *model.decoder_blocks])
    assert isinstance(model.patch_embed, PatchEmbed) and model.patch_embed.img_size is None
    block = model.blocks[0]
    assert block.norm1.eps == 1e-6 and block.attn.qkv.bias is not None and isinstance(block.mlp.act, torch.nn.GELU)
    names = {k for k in model.state_dict() if k.startswith(("blocks.0.", "patch_embed."))}
    assert names == {"patch_embed.proj.weight", "patch_embed.proj.bias"} | {
        f"blocks.0.{m}.{p}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for p in ("weight", "bias")
    }

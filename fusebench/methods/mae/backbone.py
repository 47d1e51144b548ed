"""The masked-autoencoder ViT backbone MaeFuse builds on: encoder without cls token + full-image decoder.

Paper: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (arXiv 2111.06377);
official code ``facebookresearch/mae`` (``models_mae.py``). MaeFuse (Li et al., IEEE TIP 2025) uses a
copy without cls/mask tokens, a 4-block 512-d decoder and a fixed 640x640 input.

What differs from the official code (and why):

* timm's ``Block`` and ``PatchEmbed`` (as the official code), built with the official parameter names
  (``blocks.N.attn.qkv`` ...), so official MAE, MaeFuse and timm ``*.mae`` checkpoints load by name;
  attention runs through ``F.scaled_dot_product_attention``. timm 1.x ``Block`` has no ``qk_scale``
  (the official code passes ``None``, i.e. the default 1/sqrt(head_dim)).
* Any input size whose sides are multiples of the patch size: the fixed 2-D sin-cos position tables are
  regenerated for each patch grid (MAE layout: first half of the channels encodes the column, second half
  the row, each as [sin, cos]) and cached per grid, never interpolated. Non-square grids unpatchify too.
* No cls token (MaeFuse never uses it). A ``mask_token`` exists only for masked pre-training
  (:meth:`MaskedAutoencoder.forward_pretrain` with ``mask_ratio > 0``); fusion never reads it.
* Optional gradient checkpointing of every block, for training on large inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from timm.layers import PatchEmbed as TimmPatchEmbed
from timm.models.vision_transformer import Block as TimmBlock
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

LN_EPS = 1e-6


def sincos_pos_embed(dim: int, grid: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> Tensor:
    """Fixed 2-D sin-cos table (h*w, dim) in raster order, MAE channel layout, computed in float64.

    Channels ``[0, dim/2)`` encode the column index and ``[dim/2, dim)`` the row index; each half is
    ``[sin(pos*w_k), cos(pos*w_k)]`` with ``w_k = 10000^(-k/(dim/4))``, ``k = 0..dim/4-1``. ``offset``
    (rows, cols) shifts the positions, so small training crops can see the positions of large images.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a dim divisible by 4, got {dim}")
    (h, w), (r0, c0) = grid, offset
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    rows, cols = np.meshgrid(
        np.arange(r0, r0 + h, dtype=np.float64), np.arange(c0, c0 + w, dtype=np.float64), indexing="ij"
    )

    def one_d(pos: np.ndarray) -> np.ndarray:
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return torch.from_numpy(np.concatenate([one_d(cols), one_d(rows)], axis=1)).float()


def _block(dim: int, num_heads: int, mlp_ratio: float) -> TimmBlock:
    """timm's pre-norm ViT block as MAE builds it: qkv bias, exact GELU, LayerNorm eps 1e-6.

    ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; parameters ``norm1``, ``attn.qkv``, ``attn.proj``,
    ``norm2``, ``mlp.fc1``, ``mlp.fc2`` (the official MAE names). Attention runs through
    ``F.scaled_dot_product_attention`` (timm's fused path).
    """
    if dim % num_heads:
        raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
    return TimmBlock(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=LN_EPS))


class PatchEmbed(TimmPatchEmbed):
    """timm's patch embedding (official name ``patch_embed.proj``) for any size that is a patch multiple.

    No fixed image size (``img_size=None``: timm then checks nothing); returns the tokens and the patch grid.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__(img_size=None, patch_size=patch_size, in_chans=in_chans, embed_dim=dim,
                         strict_img_size=False)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:  # type: ignore[override]
        p = self.patch_size[0]
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"Expected height and width to be multiples of the patch size {p}. Got {tuple(x.shape)}; "
                "pad with fusebench.methods.mae.preprocess.to_mae_input first."
            )
        return super().forward(x), (x.shape[-2] // p, x.shape[-1] // p)


@dataclass(frozen=True)
class MaeArch:
    """Architecture of one MAE size; the decoder is MaeFuse's retrained one for L/B/H."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    mlp_ratio: float = 4.0


MAE_ARCHS: dict[str, MaeArch] = {
    "large": MaeArch(16, 1024, 24, 16, 512, 4, 16),
    "base": MaeArch(16, 768, 12, 12, 512, 4, 16),
    "huge": MaeArch(14, 1280, 32, 16, 512, 4, 16),
    # the shipped CPU-trainable backbone: ViT-Ti-like encoder, 2-block decoder (fp16 file < 8 MB)
    "compact": MaeArch(16, 192, 6, 3, 128, 2, 4),
    # tiny, for tests only
    "test": MaeArch(16, 32, 2, 2, 32, 2, 2),
}


class MaskedAutoencoder(nn.Module):
    """ViT encoder (patch tokens, no cls token) plus a decoder that reconstructs every patch.

    Images are (N, 3, H, W) in ImageNet-normalised space with H, W multiples of ``patch_size``
    (see :func:`fusebench.methods.mae.preprocess.to_mae_input`).
    """

    def __init__(
        self,
        patch_size: int = 16,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 4,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.patch_size, self.embed_dim, self.decoder_embed_dim = patch_size, embed_dim, decoder_embed_dim
        self.in_chans = in_chans
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.blocks = nn.ModuleList(_block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.decoder_blocks = nn.ModuleList(
            _block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=LN_EPS)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self._pos_cache: dict[tuple[int, int, int, torch.device], Tensor] = {}
        self._init_weights()

    def _init_weights(self) -> None:
        """Official MAE init: xavier-uniform linears and patch conv, zero biases, N(0, 0.02) mask token."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    # -- position tables ---------------------------------------------------------------------------------
    def pos_embed(
        self, dim: int, grid: tuple[int, int], device: torch.device, offset: tuple[int, int] = (0, 0)
    ) -> Tensor:
        """The fixed (1, h*w, dim) sin-cos table for a patch grid, cached per (grid, dim, device).

        Shifted tables (``offset``, random per pre-training step) are not cached: they are cheap and many.
        """
        if offset != (0, 0):
            return sincos_pos_embed(dim, grid, offset).to(device)[None]
        key = (dim, grid[0], grid[1], device)
        if key not in self._pos_cache:
            self._pos_cache[key] = sincos_pos_embed(dim, grid).to(device)[None]
        return self._pos_cache[key]

    # -- building blocks -----------------------------------------------------------------------------------
    def _run(self, blocks: nn.ModuleList, x: Tensor) -> Tensor:
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled() and x.requires_grad
        for blk in blocks:
            x = checkpoint(blk, x, use_reentrant=False) if use_ckpt else blk(x)
        return x

    def patchify(self, x: Tensor) -> Tensor:
        """(N, C, h*p, w*p) -> (N, h*w, p*p*C), each patch ordered (row, col, channel) as in MAE."""
        n, c, height, width = x.shape
        p = self.patch_size
        h, w = height // p, width // p
        x = x.reshape(n, c, h, p, w, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, h * w, p * p * c)

    def unpatchify(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """(N, h*w, p*p*C) -> (N, C, h*p, w*p) for any (h, w) grid."""
        h, w = grid
        p, c = self.patch_size, self.in_chans
        if x.shape[1] != h * w:
            raise ValueError(f"Expected {h * w} tokens for grid {grid}. Got {x.shape[1]}.")
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def embed(self, x: Tensor, offset: tuple[int, int] = (0, 0)) -> tuple[Tensor, tuple[int, int]]:
        """Patch tokens plus the encoder position table, and the patch grid."""
        tokens, grid = self.patch_embed(x)
        return tokens + self.pos_embed(self.embed_dim, grid, x.device, offset).to(tokens.dtype), grid

    def encode(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) normalised -> (N, h*w, D) patch tokens after the final norm."""
        tokens, _ = self.embed(x)
        return self.norm(self._run(self.blocks, tokens))

    def decode_tokens(
        self, tokens: Tensor, grid: tuple[int, int], offset: tuple[int, int] = (0, 0)
    ) -> Tensor:
        """(N, h*w, D) encoder tokens (all positions) -> (N, h*w, p*p*C) predicted patches."""
        x = self.decoder_embed(tokens)
        x = x + self.pos_embed(self.decoder_embed_dim, grid, x.device, offset).to(x.dtype)
        return self.decoder_pred(self.decoder_norm(self._run(self.decoder_blocks, x)))

    def decode(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """(N, h*w, D) -> (N, C, h*p, w*p) image in ImageNet-normalised space."""
        return self.unpatchify(self.decode_tokens(tokens, grid), grid)

    def forward(self, x: Tensor) -> Tensor:
        """Full-image reconstruction: ``decode(encode(x))``."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        return self.decode(self.encode(x), grid)

    # -- pre-training ----------------------------------------------------------------------------------------
    def forward_pretrain(
        self, x: Tensor, mask_ratio: float = 0.75, pos_offset: tuple[int, int] = (0, 0),
        noise: Tensor | None = None,
    ) -> Tensor:
        """MAE loss: per-patch pixel MSE in normalised space, averaged over masked patches.

        ``mask_ratio=0`` decodes every patch from the full encoding and averages over all patches (the
        MaeFuse decoder retraining). Masking follows the official per-sample random shuffle: each sample keeps
        the patches of its smallest ``noise`` (N, h*w) values, drawn from the global generator when None (a
        caller passes its own so that data-parallel ranks can take their rows of one global draw).
        ``pos_offset`` shifts both position tables (crops then stand in for any place in a large image).
        """
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        target = self.patchify(x)
        tokens, grid = self.embed(x, pos_offset)
        n, length, dim = tokens.shape
        keep = max(1, int(length * (1 - mask_ratio)))
        if mask_ratio == 0.0:
            pred = self.decode_tokens(self.norm(self._run(self.blocks, tokens)), grid, pos_offset)
            return ((pred.float() - target.float()) ** 2).mean()
        if noise is None:
            noise = torch.rand(n, length, device=x.device)
        elif noise.shape != (n, length):
            raise ValueError(f"noise must have shape {(n, length)}, got {tuple(noise.shape)}")
        order = noise.argsort(dim=1)
        restore = order.argsort(dim=1)
        kept = torch.gather(tokens, 1, order[:, :keep, None].expand(-1, -1, dim))
        latent = self.decoder_embed(self.norm(self._run(self.blocks, kept)))
        masks = self.mask_token.to(latent.dtype).expand(n, length - keep, -1)
        full = torch.cat([latent, masks], dim=1)
        full = torch.gather(full, 1, restore[:, :, None].expand(-1, -1, full.shape[-1]))
        full = full + self.pos_embed(self.decoder_embed_dim, grid, x.device, pos_offset).to(full.dtype)
        pred = self.decoder_pred(self.decoder_norm(self._run(self.decoder_blocks, full)))
        masked = (restore >= keep).float()  # 1 where the patch was hidden from the encoder
        per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
        return (per_patch * masked).sum() / masked.sum()


def build_mae(arch: str = "large", **overrides: Any) -> MaskedAutoencoder:
    """Build an MAE of a named size ("large", "base", "huge", "compact", "test"); kwargs override fields."""
    if arch not in MAE_ARCHS:
        raise ValueError(f"Unknown MAE arch {arch!r}. Available: {', '.join(MAE_ARCHS)}")
    kwargs = {**MAE_ARCHS[arch].__dict__, **overrides}
    return MaskedAutoencoder(**kwargs)

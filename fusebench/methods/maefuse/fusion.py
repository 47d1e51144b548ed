"""MaeFuse's fusion layer (Li et al., "MaeFuse", TIP 2025, Sec. 3.1): CFM, MFM and FFN on encoder tokens.

As the paper describes it, not as the released code computes it: the official ``nn.MultiheadAttention`` is
fed batch-first tensors with ``batch_first=False``, so it attends over the *batch* and never over tokens
(see ``reference/maefuse-official.md`` 1.4). Here every attention runs over the L tokens of one pair, so a
pair's output never depends on its batch mates. Parameter names match the official ``cross_fusion`` module
(``in_proj_weight``, ``out_proj``, ``fc1``, ``fc2``, ``ln``), so official checkpoints map key by key.

- CFM: one shared cross-attention used both ways, Phi_D = Attn(q=I, kv=V) + Attn(q=V, kv=I).
- MFM, ``mfm="separate"`` (default, faithful): Phi_D is compared with *each* modality by its own attention
  and the two results are summed, Attn(q=Phi_D, kv=V) + Attn(q=Phi_D, kv=I), as the paper words it ("the
  original encoded features Phi_V and Phi_I ... are then compared with Phi_D") and as the official code runs
  two ``merge_model`` calls. ``mfm="joint"`` (fusebench's earlier form, kept because ``maefuse-compact`` was
  trained with it): one softmax over the concatenated tokens of both modalities, so at each position the
  modality whose tokens agree with Phi_D takes the weight and the other is de-emphasised.
- FFN: LN(f + fc2(GELU(fc1(f)))), post-norm as in the official code.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Guide = Literal["cfm", "ir"]
MfmMode = Literal["separate", "joint"]
MFM_MODES = ("separate", "joint")


class CrossAttention(nn.Module):
    """Multi-head attention over tokens (N, L, D) with ``nn.MultiheadAttention``'s parameter layout.

    Uses ``scaled_dot_product_attention``, so CUDA picks a fused (flash) kernel in bf16.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        return x.reshape(n, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key_value: Tensor) -> Tensor:
        """(N, Lq, D) queries attend over (N, Lk, D) keys = values; returns (N, Lq, D)."""
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = self._heads(F.linear(query, wq, bq))
        k = self._heads(F.linear(key_value, wk, bk))
        v = self._heads(F.linear(key_value, wv, bv))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class FusionLayer(nn.Module):
    """CFM -> MFM -> FFN on the two modalities' encoder tokens.

    ``guide="ir"`` is the paper's Sec. 4.4 variant: the infrared tokens replace the CFM output as MFM guide.
    ``mfm`` picks the MFM form (see the module notes); it has no parameters of its own, so the same weights
    load under either form (but were trained under one: the variant's cfg records which).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, guide: Guide = "cfm",
                 mfm: MfmMode = "separate") -> None:
        super().__init__()
        if guide not in ("cfm", "ir"):
            raise ValueError(f"guide must be 'cfm' or 'ir', got {guide!r}")
        self.guide = guide
        self.mfm_mode = check_mfm(mfm)
        self.cross_model = CrossAttention(dim, num_heads)  # CFM
        self.merge_model = CrossAttention(dim, num_heads)  # MFM
        hidden = int(dim * mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.ln = nn.LayerNorm(dim)

    def cfm(self, phi_v: Tensor, phi_i: Tensor) -> Tensor:
        """Phi_D: symmetric cross-attention between the modalities (inputs already carry positions)."""
        return self.cross_model(phi_i, phi_v) + self.cross_model(phi_v, phi_i)

    def mfm(self, phi_v: Tensor, phi_i: Tensor, phi_d: Tensor) -> Tensor:
        """Phi_D-guided merge (two attentions summed, or one softmax over both modalities), then the FFN."""
        if self.mfm_mode == "separate":
            merged = self.merge_model(phi_d, phi_v) + self.merge_model(phi_d, phi_i)
        else:
            merged = self.merge_model(phi_d, torch.cat([phi_v, phi_i], dim=1))
        return self.ln(merged + self.fc2(F.gelu(self.fc1(merged))))

    def forward(self, phi_v: Tensor, phi_i: Tensor, pos: Tensor | None = None, cfm_only: bool = False) -> Tensor:
        """Fuse (N, L, D) visible and infrared tokens; ``pos`` (L, D) is added first; ``cfm_only`` returns Phi_D."""
        if phi_v.shape != phi_i.shape or phi_v.ndim != 3:
            raise ValueError(
                f"Expected `phi_v` and `phi_i` of the same shape (N, L, D). Got {tuple(phi_v.shape)} and "
                f"{tuple(phi_i.shape)}."
            )
        if pos is not None:
            phi_v, phi_i = phi_v + pos, phi_i + pos
        if self.guide == "ir":
            if cfm_only:
                raise ValueError("the 'ir' guide has no CFM to train or return")
            phi_d = phi_i
        else:
            phi_d = self.cfm(phi_v, phi_i)
        return phi_d if cfm_only else self.mfm(phi_v, phi_i, phi_d)

    def cfm_parameters(self) -> list[nn.Parameter]:
        return list(self.cross_model.parameters())

    def mfm_parameters(self) -> list[nn.Parameter]:
        """MFM attention, FFN and norm: everything but the CFM."""
        cfm = {id(p) for p in self.cfm_parameters()}
        return [p for p in self.parameters() if id(p) not in cfm]


def check_mfm(mode: str) -> MfmMode:
    if mode not in MFM_MODES:
        raise ValueError(f"mfm must be 'separate' or 'joint', got {mode!r}")
    return mode  # type: ignore[return-value]

"""Transformer building blocks shared by the bundled models (pre-LayerNorm, SDPA attention).

Masks are boolean with True meaning "may attend", shaped (B, 1, 1, S) for key padding.
Everything here exports cleanly with ``torch.export``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        mem: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        b, t, d = x.shape
        src = x if mem is None else mem
        q = self.q(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(src).view(b, src.shape[1], 2, self.heads, d // self.heads).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim)
        self.proj = nn.Linear(4 * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Self-attention (+ optional cross-attention) + MLP, each with a pre-LN residual."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, cross: bool = False):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.cross = Attention(dim, heads, dropout) if cross else None
        self.ln_c = nn.LayerNorm(dim) if cross else None
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        mem: torch.Tensor | None = None,
        mem_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask=mask, causal=causal))
        if self.cross is not None and self.ln_c is not None and mem is not None:
            x = x + self.drop(self.cross(self.ln_c(x), mem=mem, mask=mem_mask))
        return x + self.mlp(self.ln2(x))


class Stack(nn.Module):
    """Token + learned position embeddings, N blocks, final LayerNorm."""

    def __init__(
        self,
        vocab: int,
        max_len: int,
        dim: int,
        heads: int,
        layers: int,
        *,
        dropout: float = 0.0,
        cross: bool = False,
        padding_idx: int | None = None,
    ):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.pos = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, cross) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        mem: torch.Tensor | None = None,
        mem_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.tok(ids) + self.pos(pos))
        for blk in self.blocks:
            x = blk(x, mask=mask, causal=causal, mem=mem, mem_mask=mem_mask)
        return self.ln(x)


def key_mask(ids: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """(B, S) ids -> (B, 1, 1, S) boolean mask, True where the key is not padding."""
    return (ids != pad)[:, None, None, :]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2 style init: N(0, 0.02) for Linear/Embedding weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

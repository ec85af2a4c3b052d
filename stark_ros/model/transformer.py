"""The encoder-decoder transformer of STARK (DETR style, post-norm) and its sine position encoding.

Tensors are sequence-first, ``(tokens, batch, channels)``, as in DETR. Padding masks are float
(1.0 = padding) rather than bool so that the same code exports to ONNX graphs without boolean
tensors (TensorRT rejects boolean gathers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Added to attention logits of padded keys. Finite (not -inf) so that 0 * it stays 0 in the
# float-mask arithmetic; exp() of it underflows to exactly 0, as -inf would.
MASKED_LOGIT = -1e9
POS_ENCODING_EPS = 1e-6
POS_ENCODING_SCALE = 2 * math.pi


class MultiheadAttention(nn.Module):
    """Scaled dot-product multi-head attention with the parameter layout of
    ``torch.nn.MultiheadAttention`` (``in_proj_weight``, ``in_proj_bias``, ``out_proj``), so the
    official checkpoints load unchanged, written out so it exports to plain ONNX ops."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None):
        """query (Lq, B, C), key/value (Lk, B, C), key_padding_mask (B, Lk) float, 1 = ignore."""
        lq, batch, dim = query.shape
        lk = key.shape[0]
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q) * (self.head_dim ** -0.5)
        k = F.linear(key, w_k, b_k)
        v = F.linear(value, w_v, b_v)
        # (L, B, C) -> (B, heads, L, head_dim)
        q = q.reshape(lq, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)
        k = k.reshape(lk, batch, self.num_heads, self.head_dim).permute(1, 2, 3, 0)
        v = v.reshape(lk, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)
        logits = torch.matmul(q, k)
        if key_padding_mask is not None:
            logits = logits + key_padding_mask.reshape(batch, 1, 1, lk) * MASKED_LOGIT
        attn = self.dropout(torch.softmax(logits, dim=-1))
        out = torch.matmul(attn, v).permute(2, 0, 1, 3).reshape(lq, batch, dim)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, attention_dropout)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src, mask, pos):
        q = k = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, key_padding_mask=mask)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, attention_dropout)
        self.multihead_attn = MultiheadAttention(dim, heads, attention_dropout)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt, memory, memory_mask, pos, query_pos):
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt)))
        cross = self.multihead_attn(tgt + query_pos, memory + pos, memory, key_padding_mask=memory_mask)
        tgt = self.norm2(tgt + self.dropout2(cross))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, dim: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn_dim, dropout, attention_dropout)
                                    for _ in range(num_layers))

    def forward(self, src, mask, pos):
        for layer in self.layers:
            src = layer(src, mask, pos)
        return src


class Decoder(nn.Module):
    def __init__(self, num_layers: int, dim: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim, dropout, attention_dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt, memory, memory_mask, pos, query_pos):
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_mask, pos, query_pos)
        return self.norm(tgt)


class Transformer(nn.Module):
    def __init__(self, dim: int, heads: int, enc_layers: int, dec_layers: int, ffn_dim: int, dropout: float,
                 attention_dropout: float | None = None):
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.encoder = Encoder(enc_layers, dim, heads, ffn_dim, dropout, attention_dropout)
        self.decoder = Decoder(dec_layers, dim, heads, ffn_dim, dropout, attention_dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, feat, mask, pos, query_embed):
        """feat/pos (L, B, C), mask (B, L) float, query_embed (Q, C) ->
        (decoder output (Q, B, C), encoder memory (L, B, C))."""
        batch = feat.shape[1]
        memory = self.encoder(feat, mask, pos)
        # repeat, not expand: expand's -1 handling exports as a boolean Equal node.
        query_pos = query_embed.unsqueeze(1).repeat(1, batch, 1)
        tgt = torch.zeros_like(query_pos)
        return self.decoder(tgt, memory, mask, pos, query_pos), memory


def sine_position_encoding(mask: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """DETR's normalised sine encoding of a padding mask (B, H, W) float (1 = padding) ->
    (B, 2 * num_feats, H, W): y features first, then x, each sin/cos interleaved."""
    not_mask = 1.0 - mask
    y_embed = not_mask.cumsum(1)
    x_embed = not_mask.cumsum(2)
    y_embed = y_embed / (y_embed[:, -1:, :] + POS_ENCODING_EPS) * POS_ENCODING_SCALE
    x_embed = x_embed / (x_embed[:, :, -1:] + POS_ENCODING_EPS) * POS_ENCODING_SCALE
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=mask.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    batch, height, width = mask.shape
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).reshape(batch, height, width, -1)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).reshape(batch, height, width, -1)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

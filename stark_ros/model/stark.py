"""STARK: backbone + transformer + corner head (+ score head for STARK-ST), in two stages.

Stage 1, :meth:`StarkModel.forward_backbone`: one crop -> its tokens (features, padding mask,
position encoding). Run once per template and once per search frame.
Stage 2, :meth:`StarkModel.forward_head`: template tokens + search tokens -> box and score.
The split mirrors the official tracker and becomes the two ONNX graphs of the exporter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stark_ros.model.backbone import build_backbone
from stark_ros.model.boxes import xyxy_to_cxcywh
from stark_ros.model.config import BACKBONE_STRIDE, MATCHING_CORRELATION, ModelConfig
from stark_ros.model.heads import CornerHead, ScoreHead
from stark_ros.model.transformer import Transformer, sine_position_encoding


def feature_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """Padding mask (B, H, W) -> (B, h, w) float at feature resolution: nearest-neighbour
    downsampling, as the official backbone does (the identity when it is already that size)."""
    return F.interpolate(mask[:, None].float(), size=tuple(size), mode="nearest")[:, 0]


def cosine_similarities(search: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """(B, HW, C) search tokens, (B, hw, C) template tokens -> (B, HW, hw) cosine similarities."""
    return torch.matmul(F.normalize(search, dim=-1), F.normalize(template, dim=-1).transpose(1, 2))


class StarkModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        self.bottleneck = nn.Conv2d(self.backbone.out_channels, config.hidden_dim, 1)
        self.correlation_proj = None
        if config.matching == MATCHING_CORRELATION:
            # Orthonormal columns keep inner products: at the start of training the cosine
            # similarities are those of the ImageNet features themselves (the untrained matcher's).
            nn.init.orthogonal_(self.bottleneck.weight.view(config.hidden_dim, -1))
            nn.init.zeros_(self.bottleneck.bias)
            template_tokens = config.template_feat_size ** 2
            self.correlation_proj = nn.Linear(config.num_templates * template_tokens, config.hidden_dim)
        self.transformer = Transformer(config.hidden_dim, config.num_heads, config.enc_layers,
                                       config.dec_layers, config.ffn_dim, config.dropout,
                                       attention_dropout=config.attention_dropout)
        self.query_embed = nn.Embedding(config.num_queries, config.hidden_dim)
        prior_channels = 1 if config.similarity_prior else 0
        self.box_head = CornerHead(config.hidden_dim + prior_channels, config.head_channels, config.search_feat_size,
                                   BACKBONE_STRIDE)
        self.score_head = ScoreHead(config.hidden_dim, config.score_head_layers) if config.score_head else None

    # -------------------------------------------------------------------------------- stage 1
    def forward_backbone(self, img: torch.Tensor, mask: torch.Tensor) -> dict:
        """img (B, 3, H, W) normalised, mask (B, H, W) bool or float (1 = padding) ->
        feat (HW, B, C), mask (B, HW) float, pos (HW, B, C)."""
        return self.tokens_from_features(self.backbone(img), mask)

    def tokens_from_features(self, backbone_feat: torch.Tensor, mask: torch.Tensor) -> dict:
        """The rest of stage 1 after the backbone: backbone features (B, C_backbone, h, w) and the
        crop's padding mask (B, H, W) at pixel or feature resolution -> tokens. A frozen backbone's
        features can be computed once and cached (:mod:`stark_ros.training.feature_cache`)."""
        feat = self.bottleneck(backbone_feat)
        feat_mask = feature_mask(mask, feat.shape[-2:])
        pos = sine_position_encoding(feat_mask, self.config.hidden_dim // 2, self.config.pos_temperature)
        return {"feat": feat.flatten(2).permute(2, 0, 1),
                "mask": feat_mask.flatten(1),
                "pos": pos.flatten(2).permute(2, 0, 1)}

    # -------------------------------------------------------------------------------- stage 2
    def forward_head(self, template_dicts: list[dict], search_dict: dict) -> dict:
        """Template token dicts (the initial template first, then dynamic ones) + search tokens ->
        pred_boxes (B, Q, 4) cxcywh normalised to the search crop, pred_logits (B, Q, 1) or None."""
        if self.correlation_proj is not None:
            feat = self.correlation_proj(self._correlation(template_dicts, search_dict))
            mask, pos = search_dict["mask"].float(), search_dict["pos"]
        else:
            parts = [*template_dicts, search_dict]
            feat = torch.cat([p["feat"] for p in parts], dim=0)
            mask = torch.cat([p["mask"].float() for p in parts], dim=1)
            pos = torch.cat([p["pos"] for p in parts], dim=0)
        hs, memory = self.transformer(feat, mask, pos, self.query_embed.weight)
        num_search = search_dict["feat"].shape[0]
        prior = self._similarity_prior(template_dicts[0], search_dict) if self.config.similarity_prior else None
        return {"pred_boxes": self._box_from_tokens(hs, memory[-num_search:], prior),
                "pred_logits": self.score_head(hs).transpose(0, 1) if self.score_head is not None else None}

    @staticmethod
    def _correlation(template_dicts: list[dict], search_dict: dict) -> torch.Tensor:
        """(HW, B, templates x hw) cosine similarity of every search token to every template token;
        a template's padded tokens give 0 (they carry no image)."""
        search = search_dict["feat"].permute(1, 0, 2)                                # (B, HW, C)
        maps = []
        for template in template_dicts:
            valid = (1.0 - template["mask"].float()).unsqueeze(1)                     # (B, 1, hw)
            maps.append(cosine_similarities(search, template["feat"].permute(1, 0, 2)) * valid)
        return torch.cat(maps, dim=-1).permute(1, 0, 2)

    def _similarity_prior(self, template: dict, search: dict) -> torch.Tensor:
        """(B, HW) best cosine similarity of each search token to the template's target tokens
        (tokens before the transformer; the target fills the central half of the template crop)."""
        size = self.config.template_feat_size
        lo, hi = size // 4, size - size // 4
        t = template["feat"].permute(1, 0, 2)                          # (B, hw, C)
        t = t.reshape(t.shape[0], size, size, t.shape[-1])[:, lo:hi, lo:hi].reshape(t.shape[0], -1, t.shape[-1])
        return cosine_similarities(search["feat"].permute(1, 0, 2), t).amax(dim=-1)

    def _box_from_tokens(self, hs: torch.Tensor, search_memory: torch.Tensor,
                         prior: torch.Tensor | None = None) -> torch.Tensor:
        # Weight every search token by its similarity to each query's decoder output, then read the
        # weighted token map as an image for the corner head.
        enc = search_memory.permute(1, 0, 2)                          # (B, HW, C)
        dec = hs.permute(1, 2, 0)                                     # (B, C, Q)
        att = torch.matmul(enc, dec)                                  # (B, HW, Q)
        weighted = enc.unsqueeze(-1) * att.unsqueeze(-2)              # (B, HW, C, Q)
        batch, _, channels, queries = weighted.shape
        size = self.config.search_feat_size
        maps = weighted.permute(0, 3, 2, 1).reshape(batch * queries, channels, size, size)
        if prior is not None:
            prior_maps = prior.reshape(batch, 1, 1, size, size).repeat(1, queries, 1, 1, 1)
            maps = torch.cat([maps, prior_maps.reshape(batch * queries, 1, size, size)], dim=1)
        boxes = xyxy_to_cxcywh(self.box_head(maps))
        return boxes.reshape(batch, queries, 4)

    def forward(self, template_imgs, template_masks, search_img, search_mask, from_features: bool = False) -> dict:
        """Convenience end-to-end pass (training): lists of template crops + one search crop, or,
        with ``from_features``, their cached backbone features (training with a frozen backbone)."""
        tokens = self.tokens_from_features if from_features else self.forward_backbone
        templates = [tokens(i, m) for i, m in zip(template_imgs, template_masks, strict=True)]
        return self.forward_head(templates, tokens(search_img, search_mask))


def build_model(config: ModelConfig) -> StarkModel:
    return StarkModel(config)

"""Original-PatchTST checkpoints load into the transformers-based backbone with identical patch outputs.

`Ref*` below is a small re-implementation of the original repository's arithmetic
(PatchTST_supervised: RevIN, W_P, W_pos, TSTEncoderLayer with BatchNorm or LayerNorm, residual
attention scores, end padding) in that repository's parameter layout, written for this test only.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import PatchTSTConfig, PatchTSTForPrediction, PatchTSTModel

from tsplugin.models.encoders.patchtst_original import (
    build_patchtst_backbone,
    config_from_original_checkpoint,
    from_original_checkpoint,
    load_original_checkpoint,
    load_transformers_patchtst,
    read_checkpoint,
)

L, P, S, D, H, FF, C, LAYERS, PRED = 30, 8, 4, 16, 4, 24, 3, 2, 5  # (L - P) % S != 0: alignment matters
# Our PatchTST path and the reference differ only in summation order: tolerances from dtype and these sizes.
REDUCE, DEPTH = max(D, FF, L), 8 * LAYERS + 2


# ----------------------------------------------------------------------------- reference (test only)
class RefTranspose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class RefSDP(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor((D // H) ** -0.5), requires_grad=False)


class RefAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.W_Q, self.W_K, self.W_V = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.sdp_attn = RefSDP()
        self.to_out = nn.Sequential(nn.Linear(D, D), nn.Dropout(0.0))

    def forward(self, x, prev):
        b, n, _ = x.shape
        q = self.W_Q(x).view(b, n, H, D // H).transpose(1, 2)
        k = self.W_K(x).view(b, n, H, D // H).permute(0, 2, 3, 1)
        v = self.W_V(x).view(b, n, H, D // H).transpose(1, 2)
        scores = torch.matmul(q, k) * self.sdp_attn.scale
        if prev is not None:
            scores = scores + prev
        out = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, n, D)
        return self.to_out(out), scores


def _ref_norm(kind):
    return nn.Sequential(RefTranspose(), nn.BatchNorm1d(D), RefTranspose()) if kind == "batch" else nn.LayerNorm(D)


class RefLayer(nn.Module):
    def __init__(self, norm, pre_norm):
        super().__init__()
        self.self_attn = RefAttention()
        self.norm_attn, self.norm_ffn = _ref_norm(norm), _ref_norm(norm)
        self.ff = nn.Sequential(nn.Linear(D, FF), nn.GELU(), nn.Dropout(0.0), nn.Linear(FF, D))
        self.pre_norm = pre_norm

    def forward(self, x, prev):
        if self.pre_norm:
            x = self.norm_attn(x)
        y, scores = self.self_attn(x, prev)
        x = x + y
        if not self.pre_norm:
            x = self.norm_attn(x)
        if self.pre_norm:
            x = self.norm_ffn(x)
        x = x + self.ff(x)
        if not self.pre_norm:
            x = self.norm_ffn(x)
        return x, scores


class RefEncoder(nn.Module):
    def __init__(self, norm, pre_norm):
        super().__init__()
        self.layers = nn.ModuleList([RefLayer(norm, pre_norm) for _ in range(LAYERS)])


class RefBackbone(nn.Module):
    def __init__(self, n_patches, norm, pre_norm):
        super().__init__()
        self.W_P = nn.Linear(P, D)
        self.W_pos = nn.Parameter(torch.empty(n_patches, D).uniform_(-0.5, 0.5))
        self.encoder = RefEncoder(norm, pre_norm)


class RefRevIN(nn.Module):
    def __init__(self):
        super().__init__()
        self.affine_weight = nn.Parameter(1 + 0.3 * torch.randn(C))
        self.affine_bias = nn.Parameter(0.3 * torch.randn(C))


class RefHead(nn.Module):
    def __init__(self, n_patches):
        super().__init__()
        self.linear = nn.Linear(D * n_patches, PRED)


class RefPatchTST(nn.Module):
    """PatchTST_backbone's representation path: RevIN -> (pad) -> patches -> W_P + W_pos -> layers."""

    def __init__(self, res_attention, padding_patch, affine, norm="batch", pre_norm=False):
        super().__init__()
        self.res_attention, self.padding_patch, self.affine = res_attention, padding_patch, affine
        n = (L - P) // S + 1 + (padding_patch == "end")
        if affine:
            self.revin_layer = RefRevIN()
        self.backbone = RefBackbone(n, norm, pre_norm)
        self.head = RefHead(n)

    def representations(self, x):  # x: (B, L, C) -> (B, C, N, D)
        mean = x.mean(1, keepdim=True)
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
        x = (x - mean) / std
        if self.affine:
            x = x * self.revin_layer.affine_weight + self.revin_layer.affine_bias
        z = x.permute(0, 2, 1)  # (B, C, L)
        if self.padding_patch == "end":
            z = nn.functional.pad(z, (0, S), mode="replicate")
        z = z.unfold(-1, P, S)  # (B, C, N, P)
        b, c, n, _ = z.shape
        u = self.backbone.W_P(z).reshape(b * c, n, D) + self.backbone.W_pos
        prev = None
        for layer in self.backbone.encoder.layers:
            u, scores = layer(u, prev)
            prev = scores if self.res_attention else None
        return u.reshape(b, c, n, D)


class RefRoot(nn.Module):  # exp_main saves Model.state_dict(): keys start with `model.`
    def __init__(self, **kw):
        super().__init__()
        self.model = RefPatchTST(**kw)


def make_checkpoint(tmp_path, seed=0, **kw):
    torch.manual_seed(seed)
    root = RefRoot(**kw)
    for m in root.modules():  # non-trivial norm statistics and affine maps, so a mis-mapping shows
        if isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    root.eval()
    setting = f"etth1_PatchTST_ETTh1_ftM_sl{L}_ll48_pl{PRED}_dm{D}_nh{H}_el{LAYERS}_dl1_df{FF}_fc1_ebtimeF_dtTrue_Exp_0"
    path = tmp_path / "checkpoints" / setting / "checkpoint.pth"
    path.parent.mkdir(parents=True)
    torch.save(root.state_dict(), path)
    return root.model, path


def run(module, x):
    """Per-patch outputs (B, C, N, D); a one-channel backbone sees every channel as its own series."""
    b, _, c = x.shape
    if module.config.num_input_channels == 1 and c > 1:
        x = x.permute(0, 2, 1).reshape(b * c, L, 1)
        return module(past_values=x).last_hidden_state.reshape(b, c, -1, D)
    return module(past_values=x).last_hidden_state


def series(batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, L, C, generator=g) * 3 + torch.linspace(-2, 5, L).unsqueeze(-1)


VARIANTS = [
    dict(res_attention=True, padding_patch="end", affine=True),  # the original repository's defaults (+affine)
    dict(res_attention=False, padding_patch=None, affine=False),
    dict(res_attention=True, padding_patch=None, affine=False),
    dict(res_attention=False, padding_patch="end", affine=True),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_original_checkpoint_reproduces_patch_representations(tmp_path, variant, fp_close):
    ref, path = make_checkpoint(tmp_path, **variant)
    module, report = from_original_checkpoint(path, stride=S, res_attention=variant["res_attention"])
    assert report.variant["padding_patch"] == variant["padding_patch"]  # inferred from W_pos + seq_len
    assert report.variant["revin_affine"] == variant["affine"]
    assert module.config.original_variant["res_attention"] == variant["res_attention"]
    assert report.missing == []
    assert sorted(report.unexpected) == ["model.head.linear.bias", "model.head.linear.weight"]
    x = series()
    with torch.no_grad():
        want = ref.representations(x)
        got = run(module, x)  # (B, C, N, D)
    assert got.shape == want.shape
    fp_close(got, want, REDUCE, DEPTH)


def test_layernorm_variant(tmp_path, fp_close):
    ref, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False, norm="layer")
    module, report = from_original_checkpoint(path, stride=S)
    assert module.config.norm_type == "layernorm" and report.missing == []
    x = series()
    with torch.no_grad():
        fp_close(run(module, x), ref.representations(x), REDUCE, DEPTH)


def test_original_pre_norm_is_rejected(tmp_path):
    """The original's pre-norm adds the residual to the normalised input: transformers cannot reproduce it."""
    _, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False,
                              norm="layer", pre_norm=True)
    with pytest.raises(ValueError, match="pre_norm=True"):
        from_original_checkpoint(path, stride=S, pre_norm=True)


def test_variant_is_needed_for_equality(tmp_path):
    """Loading the same weights without residual scores gives different numbers (the test can fail)."""
    ref, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False)
    module, _ = from_original_checkpoint(path, stride=S, res_attention=False)
    x = series()
    with torch.no_grad():
        diff = (run(module, x) - ref.representations(x)).abs().max()
    assert diff > 1e-3


def test_variant_round_trips_through_config_json(tmp_path):
    _, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=True)
    module, _ = from_original_checkpoint(path, stride=S)
    module.save_pretrained(tmp_path / "saved")
    text = (tmp_path / "saved" / "config.json").read_text()
    assert '"original_variant"' in text and '"padding_patch": "end"' in text
    config = PatchTSTConfig.from_pretrained(tmp_path / "saved")
    again = build_patchtst_backbone(config, **{k: v for k, v in config.original_variant.items()})
    report = load_transformers_patchtst(again, tmp_path / "saved")
    assert report.missing == [] and report.unexpected == []
    x = series()
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(past_values=x).last_hidden_state,
                                   module(past_values=x).last_hidden_state)


def test_one_channel_of_a_multichannel_checkpoint(tmp_path, fp_close):
    ref, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=True)
    module, _ = from_original_checkpoint(path, stride=S, channel=2)
    assert module.config.num_input_channels == 1
    x = series()
    with torch.no_grad():
        got = module(past_values=x[..., 2:3]).last_hidden_state  # (B, 1, N, D)
        want = ref.representations(x)[:, 2:3]
    fp_close(got, want, REDUCE, DEPTH)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "checkpoint.pth"
    torch.save({"model.backbone.W_P.weight": Payload()}, path)
    config = PatchTSTConfig(context_length=L, patch_length=P, patch_stride=S, d_model=D, num_attention_heads=H)
    with pytest.raises(ValueError, match="refused to load: the file holds Python objects besides tensors") as err:
        load_original_checkpoint(build_patchtst_backbone(config, res_attention=True), path)
    assert not marker.exists() and "weights_only=False" not in str(err.value)


def test_shape_mismatch_names_both_shapes(tmp_path):
    _, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False)
    config, _ = config_from_original_checkpoint(read_checkpoint(path), context_window=L, stride=S, n_heads=H)
    config.ffn_dim = FF * 2
    module = build_patchtst_backbone(config, res_attention=True, padding_patch="end")
    with pytest.raises(ValueError, match=rf"checkpoint shape \({FF}, {D}\) vs module shape \({2 * FF}, {D}\)"):
        load_original_checkpoint(module, path)
    report = load_original_checkpoint(module, path, strict_shapes=False)
    assert any("ff.0.weight" in m and f"({2 * FF}, {D})" in m for m in report.missing)


def test_missing_and_extra_keys_are_reported(tmp_path):
    _, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False)
    sd = torch.load(path, weights_only=True)
    del sd["model.backbone.encoder.layers.1.ff.3.bias"]
    sd["model.backbone.extra_thing"] = torch.zeros(2)
    torch.save(sd, path)
    module, report = from_original_checkpoint(path, stride=S)
    assert report.missing == ["encoder.layers.1.ff.3.bias"]
    assert "model.backbone.extra_thing" in report.unexpected and "model.head.linear.weight" in report.unexpected
    assert "missing ['encoder.layers.1.ff.3.bias']" in str(report)


def test_unmappable_options_are_rejected(tmp_path):
    _, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False)
    sd = read_checkpoint(path)
    with pytest.raises(ValueError, match="subtract_last"):
        config_from_original_checkpoint(sd, context_window=L, stride=S, n_heads=H, subtract_last=True)
    with pytest.raises(ValueError, match=r"cannot infer \['n_heads'\]"):
        config_from_original_checkpoint(sd, context_window=L, stride=S)
    with pytest.raises(ValueError, match="attention scale"):  # wrong head count shows in the stored scale
        config_from_original_checkpoint(sd, context_window=L, stride=S, n_heads=2)
    with pytest.raises(ValueError, match="W_pos has"):
        config_from_original_checkpoint(sd, context_window=L, stride=S + 2, n_heads=H)
    decomposed = {k.replace("model.", "model_trend.", 1): v for k, v in sd.items()}
    with pytest.raises(ValueError, match="decomposition"):
        config_from_original_checkpoint(decomposed, context_window=L, stride=S, n_heads=H)


def test_non_identity_affine_needs_an_affine_module(tmp_path):
    _, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=True)
    config, _ = config_from_original_checkpoint(read_checkpoint(path), context_window=L, stride=S, n_heads=H)
    module = build_patchtst_backbone(config, res_attention=True, padding_patch="end")  # no revin_affine
    with pytest.raises(ValueError, match="revin_affine=True"):
        load_original_checkpoint(module, path)


def test_transformers_prediction_directory_loads_into_backbone(tmp_path):
    torch.manual_seed(0)
    config = PatchTSTConfig(num_input_channels=C, context_length=L, patch_length=P, patch_stride=S, d_model=D,
                            num_attention_heads=H, num_hidden_layers=LAYERS, ffn_dim=FF, prediction_length=PRED)
    full = PatchTSTForPrediction(config).eval()
    full.save_pretrained(tmp_path / "pred")
    backbone = build_patchtst_backbone(PatchTSTConfig.from_pretrained(tmp_path / "pred"))
    assert type(backbone) is PatchTSTModel
    report = load_transformers_patchtst(backbone, tmp_path / "pred")
    assert report.missing == [] and report.unexpected and all(k.startswith("head.") for k in report.unexpected)
    x = series()
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(past_values=x).last_hidden_state,
                                   full.model(past_values=x).last_hidden_state)
    other = build_patchtst_backbone(PatchTSTConfig(num_input_channels=C, context_length=L, patch_length=P,
                                                   patch_stride=S + 1, d_model=D, num_attention_heads=H))
    with pytest.raises(ValueError, match="patch_stride: directory 4 vs module 5"):
        load_transformers_patchtst(other, tmp_path / "pred")


def test_patchtst_encoder_block_uses_original_backbone(tmp_path, fp_close):
    """The registered `patchtst` encoder builds this backbone and loads an original checkpoint."""
    from tsplugin.models.encoders import get_encoder

    ref, path = make_checkpoint(tmp_path, res_attention=True, padding_patch="end", affine=False)
    block = {"name": "patchtst", "context_window": L, "patch_len": P, "stride": S, "d_model": D, "num_layers": LAYERS,
             "num_heads": H, "ffn_dim": FF, "res_attention": True, "padding_patch": "end",
             "extra": {"pre_norm": False, "positional_encoding_type": "random"}}
    encoder = get_encoder("patchtst")(block, None).eval()
    config, _ = config_from_original_checkpoint(read_checkpoint(path), stride=S, setting=path.parent.name, channel=0)
    report = load_original_checkpoint(encoder.backbone, path)
    assert report.missing == []
    x = series(batch=2)[..., :1]  # (2, L, 1)
    ts = torch.cat([x, torch.ones_like(x)], dim=-1)  # (S, T, 2) [value, mask]
    features, counts = encoder(ts)
    n = (L - P) // S + 2
    assert counts.tolist() == [n, n] and features.shape == (2 * n, D)
    with torch.no_grad():
        want = ref.representations(x.expand(-1, -1, C))[:, 0].reshape(2 * n, D)
    fp_close(features, want, REDUCE, DEPTH)
    assert config.original_variant == {"res_attention": True, "padding_patch": "end", "revin_affine": False}

"""The architecture registry, peft-style: every registered model_type x encoder x projector that is valid
is built tiny and checked for forward, LLaMA-Factory's composite keys, never-quantised modules and a
save/reload round trip; invalid combinations fail with an error naming both widths.

The composite keys are checked with LLaMA-Factory's own `get_forbidden_modules` (its freeze options
and its substring rule), not with a re-implementation.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from tsplugin.architectures import ARCHITECTURES, get_spec
from tsplugin.models.encoders import ENCODERS
from tsplugin.models.projectors import PROJECTORS

HIDDEN, HEADS = 48, 4  # the LLM width differs from every small encoder width below except the LLM-width ones
TEXT = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=HEADS, num_key_value_heads=2,
            max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=None)
# Small geometry per encoder (CLI flags of `tsplugin build-model`); an encoder not listed gets its defaults.
ENCODER_FLAGS = {
    "chatts_mlp": {"patch_len": 8},  # emits the LLM width: `identity` is valid
    "patchtst": {"context_window": 64, "patch_len": 16, "stride": 8, "d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
    "timellm": {"context_window": 64, "patch_len": 16, "stride": 8, "d_model": 16, "num_heads": 2},  # emits the LLM width
}
FORECAST = dict(seq_len=32, pred_len=8, patch_len=8, stride=4, d_model=16, d_ff=16, num_heads=2, num_prototypes=16, dropout=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    from tsplugin.build.tokenizer import build_tokenizer

    return build_tokenizer(vocab_size=600, seed=0)


def _text(tokenizer, **extra):
    return dict(TEXT, vocab_size=-(-len(tokenizer) // 64) * 64, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, **extra)


def _ids(tokenizer):
    return dict(ts_token_start_index=tokenizer.convert_tokens_to_ids("<ts>"), ts_token_end_index=tokenizer.convert_tokens_to_ids("<ts/>"))


def _fixed_backbone(model_type, tokenizer, encoder, projector):
    spec = get_spec(model_type)
    extra = {"head_dim": HIDDEN // HEADS} if spec.backbone == "qwen3" else {}
    return spec.config_class()(**_text(tokenizer, **extra), ts=dict(spec.init_ts_block, hidden_size=HIDDEN), **_ids(tokenizer))


def _qwen_ts(model_type, tokenizer, encoder, projector):
    from tsplugin.build.build_model import encoder_block

    text = {"model_type": "qwen3", **_text(tokenizer, head_dim=HIDDEN // HEADS)}
    ts = {"encoder": encoder_block(encoder, ENCODER_FLAGS.get(encoder, {})), "projector": projector}
    return get_spec(model_type).config_class()(text_config=text, ts=ts, **_ids(tokenizer))


def _timellm(model_type, tokenizer, encoder, projector):
    text = {"model_type": "qwen2", **_text(tokenizer)}
    return get_spec(model_type).config_class()(text_config=text, forecast=dict(FORECAST), **_ids(tokenizer))


# model_type -> (tiny config builder, encoders it takes, projectors it takes); None: its own, fixed one.
TINY = {
    "chatts": (_fixed_backbone, None, None),
    "qwen3ts": (_fixed_backbone, None, None),
    "qwen_ts": (_qwen_ts, ENCODERS.names(), PROJECTORS.names()),
    "timellm": (_timellm, None, None),
}
MATRIX = [
    pytest.param(model_type, encoder, projector, id=f"{model_type}-{encoder or 'own'}-{projector or 'own'}")
    for model_type, (_, encoders, projectors) in TINY.items()
    for encoder in (encoders or [None])
    for projector in (projectors or [None])
]


def test_every_registered_architecture_is_in_the_matrix():
    assert set(TINY) == set(ARCHITECTURES), "add a tiny config builder for each new model_type to TINY"


def _build(model_type, tokenizer, encoder, projector):
    config = TINY[model_type][0](model_type, tokenizer, encoder, projector)
    torch.manual_seed(0)
    return get_spec(model_type).model_class()(config).eval()


def _llamafactory_forbidden(model, **freeze):
    """Parameters LLaMA-Factory freezes for these options, by its own keys and substring rule."""
    import tsplugin._bootstrap  # noqa: F401  (the composite-model hook, also without the .pth)
    from llamafactory.model.model_utils.visual import COMPOSITE_MODELS, get_forbidden_modules

    args = SimpleNamespace(**{k: freeze.get(k, False) for k in ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model")})
    forbidden = get_forbidden_modules(model.config, args)
    return COMPOSITE_MODELS, {n for n, _ in model.named_parameters() if any(f in n for f in forbidden)}


def _under(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _inputs(model, model_type, directory):
    """(forward kwargs, output to compare) through the user's path: AutoProcessor for chat models."""
    if get_spec(model_type).chat:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(directory)
        series = [[float(i % 7) for i in range(40)], [0.5 * i for i in range(21)]]
        batch = processor(text="Compare <ts><ts/> with <ts><ts/>.", timeseries=series, return_tensors="pt")
        return dict(batch, labels=batch["input_ids"]), "logits"
    g = torch.Generator().manual_seed(0)
    ts = torch.ones(2, FORECAST["seq_len"], 2)
    ts[..., 0] = torch.randn(2, FORECAST["seq_len"], generator=g)
    return dict(timeseries=ts, forecast_target=torch.randn(2, FORECAST["pred_len"], generator=g)), "forecast"


@pytest.mark.parametrize("model_type,encoder,projector", MATRIX)
def test_architecture_matrix(model_type, encoder, projector, tokenizer, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = get_spec(model_type)
    if projector == "identity" and encoder is not None:
        try:
            model = _build(model_type, tokenizer, encoder, projector)
        except ValueError as err:  # an encoder narrower than the LLM: the error names both widths
            assert f"equal the LLM hidden size ({HIDDEN})" in str(err)
            return
    else:
        model = _build(model_type, tokenizer, encoder, projector)
    assert type(model) is spec.model_class() and model.config.model_type == model_type

    # LLaMA-Factory's composite keys: every parameter is in exactly the groups it should be.
    names = {n for n, _ in model.named_parameters()}
    composite, language = _llamafactory_forbidden(model, freeze_language_model=True)
    _, vision = _llamafactory_forbidden(model, freeze_vision_tower=True)
    _, projectors = _llamafactory_forbidden(model, freeze_multi_modal_projector=True)
    assert names == language | vision | projectors, sorted(names - language - vision - projectors)
    assert not language & (vision | projectors), sorted(language & (vision | projectors))
    assert vision and language and (projectors or projector == "identity")  # identity: a projector without parameters
    assert composite[model_type].get_projectors(model), spec.projector_keys  # LLaMA-Factory finds the projector modules

    # Never quantised: everything outside the language model, and only existing modules.
    for module in spec.no_quantize_modules:
        model.get_submodule(module)
    assert {n for n in names if _under(n, spec.no_quantize_modules)} == vision | projectors

    # Save, reload through the Auto classes, same outputs.
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == model_type and "auto_map" not in saved
    assert type(AutoConfig.from_pretrained(tmp_path)) is spec.config_class()
    if not spec.chat:
        model.bind_tokenizer(tokenizer)
    inputs, key = _inputs(model, model_type, tmp_path)
    with torch.no_grad():
        out = model(**inputs)
    assert out.loss is not None and torch.isfinite(out.loss)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reloaded) is spec.model_class()
    if not spec.chat:
        reloaded.bind_tokenizer(tokenizer)
    with torch.no_grad():
        again = reloaded(**inputs)
    assert torch.equal(getattr(out, key), getattr(again, key))


def test_spec_tables_agree_with_the_rest_of_the_plugin():
    """Names a spec gives (templates, profiles, decoders, processor) are registered where they are used."""
    from tsplugin.llamafactory.templates import TEMPLATES
    from tsplugin.models.qwen_ts.configuration_qwen_ts import SUPPORTED_TEXT_MODEL_TYPES
    from tsplugin.processing.profiles import PROFILES

    for spec in ARCHITECTURES.values():
        assert spec.config_class().model_type == spec.model_type
        assert spec.chat == (spec.default_template is not None)  # a chat model has a template, a forecaster none
        for template in (spec.default_template, *spec.templates_by_decoder.values()):
            assert template is None or template in TEMPLATES
        assert set(spec.templates_by_decoder) <= set(SUPPORTED_TEXT_MODEL_TYPES)
        assert spec.default_profile is None or spec.default_profile in PROFILES
        assert bool(spec.released_classes) == bool(spec.backbone)
    with pytest.raises(ValueError, match="is already registered"):
        from tsplugin.architectures import register_architecture

        register_architecture(ARCHITECTURES["chatts"])


def test_auto_classes_follow_the_specs():
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    import tsplugin.models  # noqa: F401

    for spec in ARCHITECTURES.values():
        assert type(AutoConfig.for_model(spec.model_type)) is spec.config_class()
        assert (spec.config_class() in PROCESSOR_MAPPING) == spec.chat

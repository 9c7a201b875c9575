"""ChatTS's README inference snippet, run on the layout twins, gives what ChatTS's own code gives.

The reference below is written here from the public ChatTS code's behaviour (processing_qwen*_ts.py,
modeling_qwen*.py), not copied from it and not taken from tsplugin:
- processor: each `<ts><ts/>` gets the release's prefix written before it and stays in the text; a
  series becomes `[y0, 1, y1, 1, ...]` as (2L, 1), zero right-padded across the batch, cast to float16;
  prompts are tokenised with left padding;
- model: `<ts>` and `<ts/>` are removed and the series' patch embeddings inserted in their place
  (patches of `patch_size` points, the last one padded with the last value, or with zeros in the first
  14B release; with a position embedding, padded points take index `max_sequence_length`); position
  ids count real tokens. Greedy decoding recomputes the whole sequence each step (no cache).
The snippet loads the model in float16 (`torch_dtype='float16'`), as the README does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

RELEASE_NAMES = ["chatts-14b", "chatts-8b", "chatts-14b-first"]
PREFIX_STYLE = {"chatts-14b": "stats", "chatts-8b": "stats", "chatts-14b-first": "value_offset"}
ZERO_LAST_PATCH = {"chatts-14b": False, "chatts-8b": False, "chatts-14b-first": True}
NEW_TOKENS = 8


def readme_prompt(question: str) -> str:
    return f"<|im_start|>system\nYou are a helpful assistant.<|im_end|><|im_start|>user\n{question}<|im_end|><|im_start|>assistant\n"


def readme_series() -> list[np.ndarray]:
    ts = np.sin(np.arange(256) / 10) * 5.0
    ts[100:] -= 10.0
    return [ts, np.cos(np.arange(75) / 4.0) * 30.0 + 100.0]  # 75 points: a partial last patch


QUESTION = "I have a time series length of 256: <ts><ts/>. And another of 75: <ts><ts/>. Please analyze the local changes."


# ---------------------------------------------------------------- the reference (ChatTS's behaviour)


def ref_prefix(x: np.ndarray, style: str) -> str:
    mean = float(np.mean(x))
    y = x - mean
    scale = float(np.max(np.abs(y)) / 3.0) if np.any(np.abs(y) >= 3.0) else 1.0
    if style == "value_offset":
        return f"[Value Offset: {-mean:.4f}|Value Scaling: {scale:.4f}]"
    return (f"[offset={-mean:.4f}|scaling={scale:.4f}|length={len(x)}|max={max(x):.4f}|min={min(x):.4f}"
            f"|left={x[0]:.4f}|right={x[-1]:.4f}]")


def ref_processor(tokenizer, texts: list[str], series: list[np.ndarray], release: str, padding_side: str = "left") -> dict:
    encoded, prompts, k = [], [], 0
    for text in texts:
        pieces = text.split("<ts><ts/>")
        out = pieces[0]
        for piece in pieces[1:]:
            x = np.asarray(series[k], dtype=np.float64)
            y = x - x.mean()
            if np.any(np.abs(y) >= 3.0):
                y = y / (np.max(np.abs(y)) / 3.0)
            encoded.append(np.stack([y, np.ones_like(y)], axis=-1).reshape(-1, 1))
            out += ref_prefix(x, PREFIX_STYLE[release]) + "<ts><ts/>" + piece
            k += 1
        prompts.append(out)
    width = max(e.shape[0] for e in encoded)
    ts = np.stack([np.pad(e, ((0, width - e.shape[0]), (0, 0))) for e in encoded])
    batch = tokenizer(prompts, padding=True, padding_side=padding_side, return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "timeseries": torch.from_numpy(ts).half()}


def ref_patch_embeddings(model, timeseries: torch.Tensor, release: str) -> tuple[torch.Tensor, list[int]]:
    ts_cfg, mlp = model.config.ts, model.ts_encoder.mlp
    p = ts_cfg["patch_size"]
    dtype = mlp[0].weight.dtype
    x = timeseries.reshape(timeseries.shape[0], -1, 2).to(dtype)  # (S, L, 2) [value, mask]
    patches, counts = [], []
    for row in x:
        n = int(row[:, 1].sum())
        pc = -(-n // p)
        values = row[:n, 0]
        pad = pc * p - n
        fill = torch.zeros(pad, dtype=dtype) if ZERO_LAST_PATCH[release] else values[-1:].repeat(pad)
        values = torch.cat([values, fill]).reshape(pc, p)
        if ts_cfg.get("use_position_embedding"):
            positions = torch.cat([torch.arange(n), torch.full((pad,), ts_cfg["max_sequence_length"])]).reshape(pc, p)
            values = torch.cat([values, model.ts_encoder.position_embedding(positions).flatten(1)], dim=1)
        patches.append(values)
        counts.append(pc)
    return mlp(torch.cat(patches)), counts


def ref_embeddings(model, inputs: dict, release: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (embeddings, attention mask) with each `<ts><ts/>` replaced by its patch embeddings."""
    start, end = model.config.ts_token_start_index, model.config.ts_token_end_index
    features, counts = ref_patch_embeddings(model, inputs["timeseries"], release)
    offsets = np.cumsum([0] + counts)
    embed = model.get_input_embeddings()
    rows, k = [], 0
    for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"]):
        parts = []
        for token in ids[mask.bool()].tolist():
            if token == start:
                parts.append(features[offsets[k] : offsets[k + 1]])
                k += 1
            elif token != end:
                parts.append(embed(torch.tensor([token])))
        rows.append(torch.cat(parts))
    width = max(r.shape[0] for r in rows)
    out = torch.zeros(len(rows), width, rows[0].shape[1], dtype=rows[0].dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : r.shape[0]], mask[b, : r.shape[0]] = r, 1
    return out, mask


def ref_logits(model, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = model.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
    return model.lm_head(hidden)


def ref_greedy(model, inputs: dict, release: str, steps: int, eos: set[int]) -> tuple[list[int], list[torch.Tensor]]:
    """One prompt: greedy tokens and each step's logits, recomputing the whole sequence every step."""
    embeds, mask = ref_embeddings(model, inputs, release)
    tokens, step_logits = [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = ref_logits(model, embeds, mask)[0, -1]
            step_logits.append(logits.float())
            token = int(logits.argmax())
            tokens.append(token)
            if token in eos:
                break
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([[token]]))], dim=1)
            mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1)
    return tokens, step_logits


def logit_tol(model, logits: torch.Tensor) -> float:
    """Rounding bound for two evaluation orders of the same network (cached decoding vs full recompute):
    the model dtype's eps * the longest reduction * the logits' scale."""
    cfg = model.config
    return float(torch.finfo(model.dtype).eps * max(cfg.hidden_size, cfg.intermediate_size) * logits.abs().max())


def _eos(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


@pytest.fixture(scope="module")
def fp16_models(layout_twins):
    from transformers import AutoModelForCausalLM

    return {name: AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float16).eval()
            for name, path in layout_twins.items()}


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_readme_snippet_gives_the_original_codes_answer(layout_twins, fp16_models, release):
    """AutoProcessor(trust_remote_code=True) -> processor(text, timeseries, padding=True) -> generate."""
    from transformers import AutoProcessor, AutoTokenizer

    path, model = layout_twins[release], fp16_models[release]
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True, tokenizer=tokenizer)
    inputs = processor(text=[readme_prompt(QUESTION)], timeseries=readme_series(), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)
    answer = out.sequences[0][len(inputs["input_ids"][0]) :].tolist()

    reference = ref_processor(tokenizer, [readme_prompt(QUESTION)], readme_series(), release)
    ref_tokens, ref_step_logits = ref_greedy(model, reference, release, NEW_TOKENS, _eos(model))
    assert answer == ref_tokens
    assert tokenizer.decode(answer, skip_special_tokens=True) == tokenizer.decode(ref_tokens, skip_special_tokens=True)
    for ours, theirs in zip(out.logits, ref_step_logits):
        torch.testing.assert_close(ours[0].float(), theirs, rtol=0, atol=logit_tol(model, theirs))


@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_generate_takes_the_original_processors_inputs(layout_twins, fp16_models, release):
    """Unexpanded `<ts><ts/>` ids + (S, 2L, 1) float16 series, as ChatTS's processor returns them."""
    from transformers import AutoTokenizer

    model = fp16_models[release]
    tokenizer = AutoTokenizer.from_pretrained(layout_twins[release])
    reference = ref_processor(tokenizer, [readme_prompt(QUESTION)], readme_series(), release)
    assert reference["timeseries"].shape == (2, 512, 1) and reference["timeseries"].dtype == torch.float16
    with torch.no_grad():
        out = model.generate(**reference, max_new_tokens=NEW_TOKENS, do_sample=False)
    prompt = reference["input_ids"][0]
    assert torch.equal(out[0, : len(prompt)], prompt)  # the caller's own ids come back first, as with ChatTS's code
    ref_tokens, _ = ref_greedy(model, reference, release, NEW_TOKENS, _eos(model))
    assert out[0, len(prompt) :].tolist() == ref_tokens


def test_right_padded_batch_of_original_inputs_matches_per_row(layout_twins):
    """A forward over a right-padded batch of ChatTS-processor prompts: logits at every real position as the
    reference's (ChatTS's right-padded arithmetic is correct); float32 model, series cast to it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    release = "chatts-8b"
    model = AutoModelForCausalLM.from_pretrained(layout_twins[release], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(layout_twins[release])
    texts = [readme_prompt("short: <ts><ts/>?"), readme_prompt(QUESTION)]
    series = [np.arange(20.0), *readme_series()]
    batch = ref_processor(tokenizer, texts, series, release, padding_side="right")
    with torch.no_grad():
        ours = model(**batch).logits
        embeds, mask = ref_embeddings(model, batch, release)
        theirs = ref_logits(model, embeds, mask)
    assert ours.shape[:2] == mask.shape
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], rtol=0, atol=logit_tol(model, theirs[real]))


def test_left_padded_batch_generates_what_each_row_generates_alone(layout_twins, fp16_models):
    """Left padding (the released processor's default) with rows whose series differ in length: each row
    continues exactly as it does alone (ChatTS's own left-padded arithmetic would misplace patches here)."""
    from transformers import AutoTokenizer

    release = "chatts-14b"
    model = fp16_models[release]
    tokenizer = AutoTokenizer.from_pretrained(layout_twins[release])
    texts = [readme_prompt("short: <ts><ts/>?"), readme_prompt(QUESTION)]
    series = [np.arange(20.0), *readme_series()]
    batch = ref_processor(tokenizer, texts, series, release, padding_side="left")
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row, (text, row_series) in enumerate(zip(texts, ([series[0]], series[1:]))):
            alone = ref_processor(tokenizer, [text], row_series, release)
            ref_tokens, _ = ref_greedy(model, alone, release, NEW_TOKENS, _eos(model))
            generated = together[row, batch["input_ids"].shape[1] :].tolist()
            assert generated[: len(ref_tokens)] == ref_tokens, row


def test_pair_without_series_and_broken_pairs_are_clear_errors(layout_twins, fp16_models):
    from transformers import AutoTokenizer

    model = fp16_models["chatts-14b"]
    tokenizer = AutoTokenizer.from_pretrained(layout_twins["chatts-14b"])
    batch = ref_processor(tokenizer, [readme_prompt(QUESTION)], readme_series(), "chatts-14b")
    with pytest.raises(ValueError, match=r"the prompts hold 2 <ts><ts/> pairs but `timeseries` has 1 series"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], timeseries=batch["timeseries"][:1])
    ids = batch["input_ids"].clone()
    first_start = int((ids[0] == model.config.ts_token_start_index).nonzero()[0])
    ids[0, first_start] = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with pytest.raises(ValueError, match=r"input_ids row 0, position \d+: <ts/> \(id \d+\) without a <ts> before it"):
        model(input_ids=ids, attention_mask=batch["attention_mask"], timeseries=batch["timeseries"])

"""`timeseries_chunked_loss`: the same loss and gradients as transformers' ForCausalLMLoss, without ever
keeping the (positions x vocab) logits for backward (tiny random models, fp32, CPU)."""

from __future__ import annotations


import pytest
import torch

from conftest import lf_args, make_qwen_base, run_lf, trainer_losses

from tsplugin.models.chunked_loss import chunked_causal_lm_loss
from tsplugin.models.modeling_ts import set_loss_chunk_size


def load(path):
    from transformers import AutoModelForCausalLM

    import tsplugin.models  # noqa: F401

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def batch(model, seed: int = 0):
    """Two records, right-padded: prompt + one series (labels -100) then an answer; padding labelled -100."""
    g = torch.Generator().manual_seed(seed)
    series = torch.zeros(2, 40, 2)
    series[0, :40, 0], series[0, :40, 1] = torch.randn(40, generator=g), 1.0
    series[1, :24, 0], series[1, :24, 1] = torch.randn(24, generator=g), 1.0
    _, counts = model.get_base_model().ts_encoder(series) if hasattr(model, "get_base_model") else model.ts_encoder(series)
    ts_id = model.config.ts_token_start_index
    rows, labels = [], []
    for i, c in enumerate(counts.tolist()):
        prompt = [5, 6, 7] + [ts_id] * c + [8]
        answer = torch.randint(10, 200, (12 - 5 * i,), generator=g).tolist()
        rows.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    length = max(map(len, rows))
    ids = torch.full((2, length), 0, dtype=torch.long)
    lab = torch.full((2, length), -100, dtype=torch.long)
    mask = torch.zeros((2, length), dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        ids[i, : len(r)], lab[i, : len(l)], mask[i, : len(r)] = torch.tensor(r), torch.tensor(l), 1
    return dict(input_ids=ids, attention_mask=mask, labels=lab, timeseries=series)


def loss_and_grads(model, inputs, chunk: int, **loss_kwargs):
    set_loss_chunk_size(model, chunk)
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(**inputs, **loss_kwargs)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return out, grads


def assert_same(a, b, model, inputs, fp_close):
    """Chunking changes only summation orders: equal within the dtype's rounding for these sizes."""
    (out_a, grads_a), (out_b, grads_b) = a, b
    sizes = dict(model=model, tokens=inputs["input_ids"].numel(), backward=True)
    fp_close(out_a.loss, out_b.loss, **sizes)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        fp_close(grads_a[name], grads_b[name], **sizes)


@pytest.fixture(scope="module", params=["tiny_chatts", "tiny_qwen3ts"])
def tiny(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("num_items", [None, 37])
def test_full_model_loss_and_every_gradient_equal_the_stock_loss(tiny, num_items, fp_close):
    torch.manual_seed(0)
    model = load(tiny)
    inputs = batch(model)
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    stock, chunked = loss_and_grads(model, inputs, 0, **kwargs), loss_and_grads(model, inputs, 3, **kwargs)
    assert stock[0].logits is not None and chunked[0].logits is None
    assert len(stock[1]) == len(list(model.parameters()))  # every parameter, lm_head and ts_encoder included
    assert_same(stock, chunked, model, inputs, fp_close)
    # a chunk bigger than the supervised rows is one chunk: same numbers
    assert_same(stock, loss_and_grads(model, inputs, 4096, **kwargs), model, inputs, fp_close)


def test_under_peft_lora_and_gradient_checkpointing(tiny_chatts, fp_close):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = load(tiny_chatts)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, init_lora_weights=False))
    inputs = batch(model)
    stock, chunked = loss_and_grads(model, inputs, 0), loss_and_grads(model, inputs, 5)
    assert any("lm_head.lora_A" in n for n in chunked[1])
    assert_same(stock, chunked, model, inputs, fp_close)


def test_eval_and_generation_keep_logits(tiny_chatts):
    model = set_loss_chunk_size(load(tiny_chatts), 4)
    inputs = batch(model)
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits is not None and out.logits.shape[-1] == model.config.vocab_size and out.loss is not None


def test_the_seq_by_vocab_logits_are_never_saved_for_backward(tiny_qwen3ts):
    model = load(tiny_qwen3ts)
    inputs = batch(model)
    vocab = model.config.vocab_size
    supervised = int((inputs["labels"][:, 1:] != -100).sum())

    def largest_saved(chunk: int) -> int:
        sizes = []

        def pack(t):
            sizes.append(t.numel() if t.shape and t.shape[-1] == vocab else 0)
            return t

        set_loss_chunk_size(model, chunk)
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(**inputs).loss.backward()
        return max(sizes)

    positions = inputs["input_ids"].numel()
    assert largest_saved(0) >= positions * vocab  # the stock loss keeps all logits (the test can fail)
    assert largest_saved(4) == 0  # chunked: no vocab-wide tensor is kept across the forward
    assert supervised > 4  # several chunks were needed


def test_loss_function_matches_transformers_reference_directly():
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(3, 9, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 9))
    labels[0, :4] = -100
    labels[2, :] = -100
    for n in (None, 11):
        ref = ForCausalLMLoss(head(hidden), labels, 50, num_items_in_batch=n)
        got = chunked_causal_lm_loss(hidden, head, labels, 2, num_items_in_batch=n)
        torch.testing.assert_close(got, ref)
    shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
    torch.testing.assert_close(chunked_causal_lm_loss(hidden, head, None, 4, shift_labels=shift),
                               ForCausalLMLoss(head(hidden), None, 50, shift_labels=shift))
    # nothing supervised: NaN for the mean (as the stock loss), 0 with a graph under num_items_in_batch
    none = torch.full((1, 5), -100)
    assert torch.isnan(chunked_causal_lm_loss(hidden[:1, :5], head, none, 2))
    zero = chunked_causal_lm_loss(hidden[:1, :5], head, none, 2, num_items_in_batch=3)
    zero.backward()
    assert zero.item() == 0.0 and hidden.grad is not None
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        chunked_causal_lm_loss(hidden, head, labels, 0)


def test_set_loss_chunk_size_refuses_other_models_and_negative_sizes(tiny_chatts):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    stock = Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match="enable_liger_kernel"):
        set_loss_chunk_size(stock, 8)
    with pytest.raises(ValueError, match=">= 0"):
        set_loss_chunk_size(load(tiny_chatts), -1)


def test_qwen_ts_model_goes_through_the_same_path(tmp_path, fp_close):
    from tsplugin.build.build_model import build_qwen_ts

    base = make_qwen_base(tmp_path / "base", "qwen2", tie=False)
    built = build_qwen_ts(base, tmp_path / "qts", encoder="chatts_mlp", flags={"patch_len": 8})
    torch.manual_seed(0)
    model = load(built)
    inputs = batch(model)
    assert_same(loss_and_grads(model, inputs, 0), loss_and_grads(model, inputs, 3), model, inputs, fp_close)


def test_llamafactory_trains_with_the_same_losses(tiny_qwen3ts, tmp_path):
    stock, chunked = tmp_path / "stock", tmp_path / "chunked"
    run_lf(**lf_args(tiny_qwen3ts, stock, max_steps=2, gradient_accumulation_steps=2))
    run_lf(**lf_args(tiny_qwen3ts, chunked, max_steps=2, gradient_accumulation_steps=2, timeseries_chunked_loss=16))
    a, b = trainer_losses(stock), trainer_losses(chunked)
    assert len(a) == len(b) == 2
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


def test_the_yaml_key_reaches_the_model_through_llamafactory(tiny_qwen3ts, tmp_path):
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    def loaded(**overrides):
        model_args, _, _, finetuning_args, _ = get_train_args(lf_args(tiny_qwen3ts, tmp_path, **overrides))
        return load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)

    assert loaded(timeseries_chunked_loss=16).get_base_model().loss_chunk_size == 16
    assert loaded().get_base_model().loss_chunk_size == 0
    with pytest.raises(ValueError, match="cannot be combined with `use_dft_loss: true`"):
        get_train_args(lf_args(tiny_qwen3ts, tmp_path, timeseries_chunked_loss=16, use_dft_loss=True))
    with pytest.raises(ValueError, match="must be >= 0"):
        get_train_args(lf_args(tiny_qwen3ts, tmp_path, timeseries_chunked_loss=-1))

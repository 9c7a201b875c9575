"""A small Qwen-style tokenizer built offline, for random test/demo models.

Design choices:
- Byte-level BPE (any text encodes, Chinese included), trained with the `tokenizers` library on a
  built-in corpus: English and Chinese sentences about process data and trends, tag names such as
  `PIC-3105.PV`, digits and punctuation. Training is deterministic, so builds are reproducible.
- Qwen conventions: the Qwen2 pre-tokenizer regex (digits split one by one), special tokens
  `<|endoftext|>` (pad), `<|im_start|>`, `<|im_end|>` (eos) and a ChatML chat template.
- The time-series tokens `<ts>` / `<ts/>` are added as extra special tokens; their ids are whatever
  the tokenizer assigns (read them back with `ts_token_ids`, never hard-code them).
"""

from __future__ import annotations

import inspect
import random
from typing import Any

TS_TOKEN = "<ts>"
TS_END_TOKEN = "<ts/>"
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
QWEN_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# The Qwen2 pre-tokenizer split pattern.
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5-style ChatML template (no tool calls): a default system turn when none is given.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_EN_SENTENCES = [
    "Please analyze the trend of the time series and describe any anomalies.",
    "The value rises steadily, then drops sharply near the end of the window.",
    "There is a periodic fluctuation with a period of about 24 points.",
    "The temperature sensor shows a sudden spike followed by a slow recovery.",
    "Compare the pressure and the flow rate: are they correlated?",
    "The series is stationary with small random noise around the mean.",
    "A level shift happens at index 120; before it the mean is lower.",
    "The answer is yes. The maximum value is 98.6 and the minimum is -3.25.",
    "What is the local characteristic of this curve between points 40 and 80?",
    "The controller output oscillates, which suggests the loop is poorly tuned.",
    "Valve opening, tank level, pump current and outlet temperature are shown below.",
    "Forecast the next 16 values of the series given the history.",
    "The trend is upward, the seasonality is weak, and the noise level is high.",
    "No obvious anomaly is found; the process runs normally during this period.",
    "You are a helpful assistant that reads industrial process data.",
]
_ZH_SENTENCES = [
    "请分析下图中 PIC-3105.PV 的运行数据",
    "请分析这条时间序列的整体趋势，并指出异常点。",
    "该曲线先平稳上升，随后在末尾出现急剧下降。",
    "温度、压力、流量和液位的变化趋势如下所示。",
    "数据存在明显的周期性波动，周期约为二十四个点。",
    "在第一百二十个点处出现突变，之后均值升高。",
    "是的，最大值为九十八点六，最小值为负三点二五。",
    "整个时间段内装置运行正常，没有发现明显异常。",
    "控制器输出持续振荡，说明回路参数需要重新整定。",
    "请比较两条曲线的相关性，并给出可能的原因。",
    "阀门开度、泵电流与出口温度之间存在滞后关系。",
    "预测接下来十六个时间点的数值。",
    "趋势：上升；季节性：较弱；噪声：较大。",
    "报警、联锁、停车、开车、检修、负荷、工况、设定值、测量值。",
]
_TAG_PREFIXES = ["PIC", "FIC", "TIC", "LIC", "PI", "FI", "TI", "LI", "AI", "HV", "XV"]
_TAG_SUFFIXES = ["PV", "SP", "OP", "MV", "DACA.PV"]
_UNITS = ["MPa", "kPa", "°C", "m3/h", "t/h", "%", "mm", "A", "rpm"]
_EN_WORDS = (
    "the of and to in is was for that with as on by at from this are be it an or which has have not but "
    "series time value values trend trends rising falling increase decrease upward downward stable steady "
    "sudden sharp slow fast spike drop peak valley noise noisy periodic period season seasonal cycle "
    "anomaly anomalies outlier normal abnormal mean average median maximum minimum range variance "
    "temperature pressure flow level valve pump motor current voltage speed power load sensor signal "
    "controller setpoint output input process plant unit tank column reactor furnace compressor boiler "
    "alarm shutdown startup operation operator maintenance fault failure leak blockage vibration "
    "analyze analysis describe compare explain forecast predict detect classify answer question "
    "first second third last next previous before after during between around about above below "
    "high low higher lower large small long short early late begin end start stop change shift "
    "correlation correlated lag delay response oscillation oscillates tuned tuning data point points "
    "window segment interval hour hours minute minutes day days week month year daily hourly "
    "model chart figure curve line shows shown indicates suggests likely because therefore however"
).split()
_ZH_CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而"
    "方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好"
    "应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向"
    "道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特"
    "件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理"
    "府研质温压液位阀泵塔罐炉换热器报警联锁停车检修负荷工况测趋势升降稳波周异峰谷均值偏差频率采样预曲"
)


def _random_zh(rng: random.Random) -> str:
    return "".join(rng.choice(_ZH_CHARS) for _ in range(rng.randint(2, 6)))


def builtin_corpus(seed: int = 0, n_generated: int = 4000) -> list[str]:
    """The training corpus: fixed sentences plus templated lines (tags, numbers, ChatTS prefixes)."""
    rng = random.Random(seed)
    lines = list(_EN_SENTENCES) + list(_ZH_SENTENCES)
    for _ in range(n_generated):
        tag = f"{rng.choice(_TAG_PREFIXES)}-{rng.randint(1000, 9999)}.{rng.choice(_TAG_SUFFIXES)}"
        value = f"{rng.uniform(-500, 5000):.{rng.randint(0, 4)}f}"
        offset, scale = rng.uniform(-1000, 1000), rng.uniform(1, 300)
        lines.append(
            rng.choice(
                [
                    f"请分析下图中 {tag} 的运行数据",
                    f"The value of {tag} is {value} {rng.choice(_UNITS)}.",
                    f"{tag} 的当前值为 {value} {rng.choice(_UNITS)}，{rng.choice(['趋势上升', '趋势下降', '保持平稳', '出现波动'])}。",
                    f"[Value Offset: {offset:.4f}|Value Scaling: {scale:.4f}]",
                    f"Point {rng.randint(0, 4999)}: {value}, {rng.choice(['rising', 'falling', 'flat', 'noisy'])}.",
                    " ".join(str(rng.randint(0, 99999)) for _ in range(rng.randint(3, 12))),
                    rng.choice(_EN_SENTENCES) + " " + rng.choice(_ZH_SENTENCES),
                    " ".join(rng.choice(_EN_WORDS) for _ in range(rng.randint(5, 14))).capitalize() + ".",
                    "，".join(_random_zh(rng) for _ in range(rng.randint(2, 5))) + "。",
                ]
            )
        )
    lines.append("0123456789 +-*/=()[]{}<>.,;:!?'\"@#$%^&_|~` ，。；：！？、（）【】《》“”‘’")
    return lines


def build_tokenizer(vocab_size: int = 4096, seed: int = 0, ts_tokens: bool = True) -> Any:
    """Train the byte-level BPE and wrap it as a `PreTrainedTokenizerFast`.

    With `ts_tokens` (default) `<ts>`/`<ts/>` are added; without, it is a plain Qwen-style tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    backend.train_from_iterator(builtin_corpus(seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    # Qwen order: <|endoftext|>, <|im_start|>, <|im_end|> right after the BPE vocabulary.
    tokenizer.add_tokens(list(QWEN_SPECIAL_TOKENS), special_tokens=True)
    tokenizer.chat_template = CHATML_TEMPLATE
    if ts_tokens:
        add_ts_tokens(tokenizer)
    return tokenizer


def add_ts_tokens(tokenizer: Any) -> tuple[int, int]:
    """Add `<ts>` and `<ts/>` as extra special tokens (kept if already there); return their ids."""
    current = list(getattr(tokenizer, "additional_special_tokens", None) or [])
    if not current:
        current = [str(t) for t in (getattr(tokenizer, "extra_special_tokens", None) or [])]
    new = [t for t in (TS_TOKEN, TS_END_TOKEN) if t not in current]
    if new:
        params = inspect.signature(tokenizer.add_special_tokens).parameters
        keep = {}
        for name in ("replace_extra_special_tokens", "replace_additional_special_tokens"):
            if name in params:
                keep = {name: False}
                break
        tokenizer.add_special_tokens({"additional_special_tokens": current + new}, **keep)
    return ts_token_ids(tokenizer)


def ts_token_ids(tokenizer: Any) -> tuple[int, int]:
    """Ids of `<ts>` and `<ts/>` in `tokenizer`; raises if either is not a single known token."""
    ids = []
    for token in (TS_TOKEN, TS_END_TOKEN):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == getattr(tokenizer, "unk_token_id", None) or (
            tokenizer.encode(token, add_special_tokens=False) != [token_id]
        ):
            raise ValueError(f"tokenizer has no single token {token!r}; add it with tsplugin.build.tokenizer.add_ts_tokens")
        ids.append(int(token_id))
    return ids[0], ids[1]


__all__ = [
    "CHATML_TEMPLATE",
    "TS_END_TOKEN",
    "TS_TOKEN",
    "add_ts_tokens",
    "build_tokenizer",
    "builtin_corpus",
    "ts_token_ids",
]

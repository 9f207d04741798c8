"""hetsim against measured end-to-end serving runs (issue 15 §3).

Replays the closed-loop serving runs aiconfigurator-core ships in
``systems/silicon_sample.csv`` through hetsim, one scenario per row (its system, model,
precision, TP, aggregated or disaggregated workers, ISL/OSL and concurrency), and prints the
absolute percentage error of mean TTFT and mean TPOT, per row and by runtime and system, with
AIConfigurator's own estimate of the same rows beside it where one is stored.

**Held out**: rows of the Llama and DeepSeek families (``meta-llama/*``, ``nvidia/Llama-*``,
``deepseek-ai/*``, ``nvidia/DeepSeek-*``) judge hetsim independently. :func:`allowed_rows` is
the only reader of the file and drops them (and rows with no model) before anything else sees
the frame; every other function here takes that frame.

What the measurements are: the mean TTFT and mean TPOT of one closed-loop benchmark run at
``silicon_concurrency`` clients (named in ``silicon_data_source``; ``batch_size`` for agg
rows). aiconfigurator's campaigns record ``mean_ttft``/``mean_tpot`` as these columns, and its
replay of them runs ``10 x concurrency`` requests (its ``eval`` client's count; its generator's
client runs 50 x: docs/aic-campaign-client.md); so does this one: C clients start together
(their start burst is in the statistics: ``vllm bench serve`` and aiperf keep no warm-up by
default, and where a campaign sets one, aiperf's and InferenceX's warm-ups finish before the
measured phase opens with its burst: docs/runtime-rules.md §6, docs/aic-campaign-client.md,
docs/inferencex-minimax-kimi-knobs.md §1), each sends its next request when the last ends.

    python benchmarks/serving_accuracy.py [--limit N] [--model qwen3-32b] [--system h100_sxm]
    python benchmarks/serving_accuracy.py --jobs 2 --readme README.md    # README's block
    python benchmarks/serving_accuracy.py --refresh-aic                  # aic's own estimates
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

import hetsim
from hetsim import kerneldb
from hetsim.errors import ConfigError
from hetsim.scenario import parse_scenario

SAMPLE = "silicon_sample.csv"
HELD_OUT = ("meta-llama/", "nvidia/llama-", "deepseek-ai/", "nvidia/deepseek-")
AIC_CSV = Path(__file__).parent / "data" / "aic_serving_estimates.csv"
MARK = ("<!-- serving_accuracy -->", "<!-- /serving_accuracy -->")
DECOMPOSITION = ("<!-- serving_decomposition -->", "<!-- /serving_decomposition -->")
#: model_path (lower case) -> hetsim catalog model; quantized checkpoints map to the base model
MODELS = {"qwen/qwen3-32b": "qwen3-32b", "nvidia/qwen3-32b-nvfp4": "qwen3-32b",
          "qwen/qwen3-235b-a22b-fp8": "qwen3-235b-a22b", "qwen/qwen3-235b-a22b": "qwen3-235b-a22b",
          "openai/gpt-oss-120b": "gpt-oss-120b", "qwen/qwen3-30b-a3b": "qwen3-30b-a3b",
          "minimaxai/minimax-m2.5": "minimax-m2.5",
          "qwen/qwen3.5-397b-a17b": "qwen3.5-397b-a17b",
          # its nvfp4 rows serve kimi-k2.5-nvfp4 (:func:`model_of`): vLLM and TRT-LLM cannot
          # make NVFP4 of Moonshot's int4 experts, so they ran NVIDIA's re-quantization
          # (assumed: no row names it)
          "moonshotai/kimi-k2.5": "kimi-k2.5"}
#: what a release appends to its base model's name: instruction tuning, a quantized
#: re-release, a dated or numbered revision (``-Instruct``, ``-FP8``, ``-0528``, ``-v2``)
RELEASE_SUFFIX = re.compile(r"-(?:instruct|it|chat|hf|fp8|fp4|nvfp4|v\d+|\d{4})$", re.I)
#: gemm_quant_mode (else precision) -> (compute, weights); the KV cache stays bf16, the
#: runtimes' default (vLLM/SGLang kv_cache_dtype auto), unless the campaign's scripts set fp8
#: (:func:`deployment`)
FORMATS = {"bf16": ("bf16", "bf16"), "fp16": ("fp16", "fp16"), "fp8": ("fp8", "fp8"),
           "bfloat16": ("bf16", "bf16"), "float16": ("fp16", "fp16"),
           # aiconfigurator's static-scale fp8 (ModelOpt's per-tensor checkpoints): the fp8
           # tables less the activation-scale computation (precision ``fp8-static``)
           "fp8_static": ("fp8", "fp8-static"),
           "fp8_block": ("fp8", "fp8-block"), "nvfp4": ("fp4", "fp4"), "fp4": ("fp4", "fp4"),
           "int4_wo": ("bf16", "int4"), "int8_wo": ("bf16", "int8")}
#: runtime -> (token budget per step, max running requests) as each defaults on 80-192 GB GPUs
#: (docs/runtime-rules.md §1: vLLM serve 8192/1024; SGLang chunked_prefill_size 8192 below
#: 160 GiB, else 16384; TRT-LLM LLM-API max_num_tokens 8192, max_batch_size 2048)
BUDGET = {"vllm": (8192, 1024), "sglang": (8192, 2048), "trtllm": (8192, 2048)}


def allowed_rows(path: str | Path | None = None) -> pd.DataFrame:
    """The measured runs the team may use: every row but the held-out families' (matched
    case-insensitively, surrounding spaces ignored) and rows with no ``model_path``. The one
    place the file is read."""
    if path is None:
        path = resources.files("aiconfigurator_core") / "systems" / SAMPLE
    df = pd.read_csv(path)
    model = df["model_path"].astype("string").str.strip().str.lower()
    # anywhere in the path (a local copy, /models/meta-llama/..., is the same family)
    held = model.isna() | model.str.contains("|".join(map(re.escape, HELD_OUT))).fillna(True)
    return df[~held.to_numpy()].reset_index(drop=True)


#: what makes two rows the same measurement: InferenceX's 2026-03-25 and 04-06 exports and its
#: db-dump repeat runs (333 of the allowed rows; the parallelism columns may be written
#: differently, :func:`parallelism`, so they are not part of the key)
SAME_RUN = ["model_path", "system", "backend", "mode", "isl", "osl", "clients",
            "silicon_ttft_ms", "silicon_tpot_ms"]


def measurements(rows: pd.DataFrame) -> pd.DataFrame:
    """Each measurement once: a row repeating an earlier row's run (:data:`SAME_RUN`: the
    same configuration, clients and measured TTFT and TPOT to the digit) is dropped, so no run
    counts twice in a median."""
    key = rows.assign(clients=rows.apply(concurrency, axis=1) if len(rows) else [])
    return rows[~key.duplicated(SAME_RUN).to_numpy()]


def _int(v, default: int = 1) -> int:
    return default if pd.isna(v) or int(v) <= 0 else int(v)


def concurrency(row) -> int:
    """Clients of the run: ``silicon_concurrency`` from the source note, else the batch of
    every worker (``batch_size`` is per attention-DP rank, as aic reads it)."""
    m = re.search(r"silicon_concurrency=(\d+)", str(row.get("silicon_data_source", "")))
    if m:
        return int(m.group(1))
    if row["mode"] == "disagg":
        return (_int(row.get("decode_batch_size")) * _int(row.get("decode_num_workers"))
                * _int(row.get("decode_attention_dp_size")))
    return _int(row.get("batch_size")) * _int(row.get("attention_dp_size"))


def agg_workers(row) -> int:
    """Aggregated workers: the clients over one worker's batch (no column names them; rows
    where ``silicon_concurrency`` is a multiple of ``batch_size x attention_dp_size`` ran several)."""
    per_worker = _int(row.get("batch_size")) * _int(row.get("attention_dp_size"))
    return max(1, round(concurrency(row) / per_worker))


#: checkpoints published in one format whatever a row's quant-mode label says: gpt-oss ships
#: MXFP4 experts (the catalog model's expert_weights) and bf16 everything else (OpenAI's model
#: card); the runtimes serve that checkpoint, they do not re-quantize attention to fp4 or fp8
CHECKPOINT = {"openai/gpt-oss-120b": "bf16",
              # Qwen's FP8 release: "fine-grained fp8 quantization with block size 128" (its
              # model card; config.json weight_block_size [128, 128]), whatever the row says
              "qwen/qwen3-235b-a22b-fp8": "fp8_block",
              # (model_path, quant label): Kimi-K2.5's int4_wo rows serve Moonshot's own
              # checkpoint, int4-g32 routed experts (the catalog model's expert_weights) and
              # bf16 elsewhere (its config's ignore list), not int4 attention; its nvfp4 rows
              # stay fp4 (kimi-k2.5-nvfp4 keeps its attention bf16 itself)
              ("moonshotai/kimi-k2.5", "int4_wo"): "bf16"}


def _checkpoint(row) -> tuple[str, object]:
    """(model_path in lower case, the row's quant label: gemm_quant_mode, else precision)."""
    label = row.get("gemm_quant_mode")
    return (str(row.get("model_path", "")).strip().lower(),
            row.get("precision") if pd.isna(label) else label)


#: catalog models whose publisher's fp8 checkpoint is block-scaled: their fp8 rows serve it
#: (MiniMax's config.json ``weight_block_size`` [128, 128]; DeepSeek-V3's and R1's, in
#: aiconfigurator-core's model_configs/deepseek-ai--DeepSeek-{V3,R1}_config.json: DeepSeek
#: trained and released them in fp8 blocks). Rows whose ``moe_quant_mode`` says fp8_block
#: (Qwen3.5's, GLM-5's) say so themselves; NVIDIA's re-releases are not these (:func:`precision`).
BLOCK_FP8 = {"minimax-m2.5", "deepseek-v3"}
#: quant labels of a checkpoint in NVFP4 (aiconfigurator writes nvfp4, some rows fp4)
FP4_LABELS = ("nvfp4", "fp4")


def _label(row) -> str | None:
    """The row's quant label as the checkpoint it names was published (:data:`CHECKPOINT`
    applied: gpt-oss's nvfp4 rows are OpenAI's bf16 + MXFP4 checkpoint); None: none given."""
    model, label = _checkpoint(row)
    mode = CHECKPOINT.get((model, label), CHECKPOINT.get(model, label))
    return None if pd.isna(mode) else str(mode)


def model_of(row) -> str:
    """The hetsim model a row serves (:func:`served_model` of its path and label)."""
    return served_model(str(row["model_path"]), _label(row))


@functools.lru_cache(maxsize=None)
def served_model(path: str, label: str | None) -> str:
    """The hetsim model a release at ``path`` serves under quant ``label``: a catalog name
    (:data:`MODELS`, :func:`catalog_model`), else the published config.json of a model the
    catalog has not (:func:`published_config`). An NVFP4 row serves NVIDIA's NVFP4 release of
    the model, whatever path it names: the runtimes serve NVFP4 from ModelOpt checkpoints, they
    do not make it of another checkpoint (Kimi-K2.5's nvfp4 rows name Moonshot's int4
    release). That release is the catalog's ``<model>-nvfp4`` where there is one, else
    NVIDIA's own ``<name>-NVFP4`` config.json as aiconfigurator-core ships it (MiniMax-M2.5,
    Qwen3.5, GLM-5, DeepSeek-V3.2: read with its ``hf_quant_config.json``), else the model in
    fp4 throughout."""
    key = path.strip().lower()
    model = MODELS.get(key) or catalog_model(path)
    if label in FP4_LABELS:
        if model is not None and f"{model.removesuffix('-nvfp4')}-nvfp4" in _catalog_names():
            return f"{model.removesuffix('-nvfp4')}-nvfp4"
        *_, base = _release_names(key.rpartition("/")[2])
        nvidia = [f for org, f in _model_configs().get(f"{base}-nvfp4", []) if org == "nvidia"]
        if nvidia:
            return nvidia[0]
    model = model or published_config(path)
    if model is None:
        raise ConfigError(f"hetsim has no model for {path}")
    return model


@functools.lru_cache(maxsize=1)
def _catalog_names() -> frozenset:
    return frozenset(hetsim.list_models())


@functools.lru_cache(maxsize=1)
def _model_configs() -> dict[str, list[tuple[str, str]]]:
    """aiconfigurator-core's copies of published config.json files: lower-case name ->
    [(organisation, file)], organisations in file order."""
    out: dict[str, list] = {}
    for f in sorted((kerneldb.data_root().parent / "model_configs").glob("*_config.json")):
        if f.name.endswith("_hf_quant_config.json"):
            continue
        org, _, name = f.name.lower().removesuffix("_config.json").partition("--")
        out.setdefault(name, []).append((org, str(f)))
    return out


def catalog_model(model_path: str) -> str | None:
    """The catalog model a release serves, for a path :data:`MODELS` does not name: its name
    without the organisation and a leading ``Meta-``, as a catalog name or alias, release
    suffixes (:data:`RELEASE_SUFFIX`) taken off one at a time from the end until one is
    (``meta-llama/Meta-Llama-3.1-8B-Instruct`` -> llama-3.1-8b, ``deepseek-ai/DeepSeek-V3-0324``
    -> deepseek-v3: ``-V3`` is the name's); None where the catalog has no such model. A release
    whose name says fp4 (``-FP4``, ``-NVFP4``) serves the catalog's ``<model>-nvfp4`` where
    there is one: NVIDIA's NVFP4 recipe keeps some layers out of fp4, which that entry says
    (``nvidia/DeepSeek-R1-0528-FP4-v2`` -> deepseek-v3-nvfp4)."""
    full = model_path.strip().rpartition("/")[2].lower().removeprefix("meta-")
    for name in _release_names(full):
        try:
            found = hetsim.load_model(name).name
        except ConfigError:
            continue
        fp4 = re.search(r"-(?:nv)?fp4(?:-|$)", full[len(name):])     # among the suffixes
        return f"{found}-nvfp4" if fp4 and f"{found}-nvfp4" in _catalog_names() else found
    return None


def _release_names(name: str):
    """``name``, then with release suffixes (:data:`RELEASE_SUFFIX`) taken off one at a time
    from the end (``deepseek-r1-0528-fp4-v2``, ``deepseek-r1-0528-fp4``, ...,
    ``deepseek-r1``)."""
    while name:
        yield name
        shorter = RELEASE_SUFFIX.sub("", name)
        if shorter == name:
            return
        name = shorter


def published_config(model_path: str) -> str | None:
    """For a model the catalog has not, the config.json its publisher released, as
    aiconfigurator-core ships it (``model_configs/<org>--<name>_config.json``, matched without
    regard to case; another organisation's copy of the same name where the path's has none, as
    for a re-release; release suffixes taken off as in :func:`catalog_model`), read by
    hetsim's Hugging Face importer; None where there is none."""
    org, _, full = model_path.strip().lower().rpartition("/")
    configs = _model_configs()
    for name in _release_names(full):
        if name in configs:     # the path's own organisation's copy first
            return min(configs[name], key=lambda c: c[0] != org)[1]
    return None


def precision(row) -> dict:
    """The pool's formats: the row's quant label as the checkpoint it names was published
    (:func:`_label`). An NVFP4 row served from a config.json whose experts alone are fp4
    (:func:`served_model`: NVIDIA's MoE releases that keep attention out of fp4) runs a bf16
    pool, the experts' fp4 being the model's. An fp8 row is block-scaled where its
    ``moe_quant_mode`` says fp8_block or the model is in :data:`BLOCK_FP8`; an fp8 row of an
    NVIDIA fp8 re-release (``nvidia/...-FP8``) serves a ModelOpt checkpoint, per-tensor fp8
    with calibrated static activation scales (aiconfigurator-core's
    model_configs/nvidia--Llama-3.1-70B-Instruct-FP8_hf_quant_config.json: producer modelopt,
    quant_algo FP8; ModelOpt writes each layer's ``input_scale``), ``weights: fp8-static``.
    Raises ConfigError where the row has no model or no format."""
    mode = _label(row) or "bf16"
    model = model_of(row)
    if mode in FP4_LABELS and model.endswith(".json") \
            and hetsim.load_model(model).expert_weights == "fp4":
        mode = "bf16"
    elif mode == "fp8" and row.get("moe_quant_mode") == "fp8_block":
        mode = "fp8_block"
    elif mode == "fp8" and _nvidia_fp8(row):
        mode = "fp8_static"
    elif mode == "fp8" and model in BLOCK_FP8:
        mode = "fp8_block"
    compute, weights = FORMATS.get(mode, (None, None))
    if compute is None:
        raise ConfigError(f"no hetsim format for gemm_quant_mode {mode}")
    return {"compute": compute, "weights": weights, "kv": "bf16"}


def _nvidia_fp8(row) -> bool:
    """An NVIDIA fp8 re-release: an ``nvidia/`` path whose name says FP8."""
    path = _checkpoint(row)[0]
    return path.startswith("nvidia/") and "-fp8" in path


def provenance(row) -> str:
    """Which campaign measured the row, from ``silicon_data_source``: ``aic`` (aiconfigurator's
    own campaigns: configs from its generator, aiperf client), ``inferencex`` (SemiAnalysis
    InferenceX exports: a dated ``source_file`` with the image named, or a ``db-dump`` of its
    results database), or ``""`` (unknown)."""
    src = str(row.get("silicon_data_source", ""))
    if "aic-auto-gap-analysis" in src:
        return "aic"
    if QWEN35_GAP in src:
        return "inferencex"
    # db-dump rows: InferenceX's results database, the same workflows and scripts
    # (docs/inferencex-minimax-kimi-knobs.md §6)
    ix = src.startswith("db-dump/") or re.search(r"source_file=\d{4}-\d{2}-\d{2}\.csv", src)
    return "inferencex" if ix else ""


#: aiconfigurator's Qwen3.5 gap-analysis file: each of its rows is an InferenceX SGLang row
#: (the same system, lengths and clients, and TTFT to 0.01 ms) without the source note
QWEN35_GAP = "source_file=qwen3.5-397b-gap-analysis.csv"


def _measured_on(row) -> str:
    m = re.search(r"measured=(\d{4}-\d{2}-\d{2})", str(row.get("silicon_data_source", "")))
    return m.group(1) if m else ""


def _ceil(n: int, to: int) -> int:
    return -(-n // to) * to


def _image(row) -> str:
    m = re.search(r"vllm-openai:(\S+?)(?:;|\s|$)", str(row.get("silicon_data_source", "")))
    return m.group(1) if m else ""


def minimax_vllm(row) -> dict:
    """The knobs InferenceX's MiniMax-M2.5 vLLM scripts set, by GPU, checkpoint, image and
    date (docs/inferencex-minimax-kimi-knobs.md §2, §5, §8; its db-dump rows come from the
    same workflows, §6). Where a script ran expert parallelism its row does not say (label !=
    run), ``moe_ep`` is what the server ran."""
    system, image, day = row["system"], _image(row), _measured_on(row)
    fp4 = _checkpoint(row)[1] == "nvfp4"
    tp = _int(row.get("tp_size")) * _int(row.get("attention_dp_size"))
    merged = image.startswith("v0.19")       # the 2026-04-03 B200 recipe, copied to B300
    out: dict = {"memory_utilization": 0.90 if merged or system == "h100_sxm" else 0.95}
    if system in ("b200_sxm", "b300_sxm"):
        pr = image.startswith("nightly") or (image == "v0.18.0-cu130" and day >= "2026-03-27")
        if merged or pr or (fp4 and image != "v0.18.0"):
            out["kv"] = "fp8"
        if merged:
            out["max_batch_tokens"] = 2 * int(row["isl"])
        elif not fp4 and day < "2026-04-02":     # "EP whenever EP_SIZE -ge 1": always
            out["moe_ep"] = tp
    elif system == "h200_sxm" and day >= "2026-03-13":
        out["moe_ep"] = tp                       # TP8 + EP, rows labelled ep 1
    elif system == "h100_sxm":
        out["max_seqs"] = 256
    return out


def kimi_vllm(row) -> dict:
    """The knobs InferenceX's single-node Kimi-K2.5 vLLM scripts set (docs/inferencex-minimax-
    kimi-knobs.md §3, §8): max-num-seqs = CONC, memory 0.95 (int4) or 0.90 (NVFP4), pure TP
    (the scripts never read EP_SIZE: "tp4 ep4" rows ran TP4), and on B200 NVFP4 from
    2026-04-20 fp8 KV and a 2 x ISL token budget."""
    fp4 = _checkpoint(row)[1] == "nvfp4"
    out = {"max_seqs": concurrency(row), "memory_utilization": 0.90 if fp4 else 0.95,
           "moe_ep": 1}
    if fp4 and row["system"] == "b200_sxm" and _measured_on(row) >= "2026-04-20":
        out.update(kv="fp8", max_batch_tokens=2 * int(row["isl"]))
    return out


def _sglang_image(row) -> str:
    m = re.search(r"sglang:(\S+?)(?:;|\s|$)", str(row.get("silicon_data_source", "")))
    return m.group(1) if m else ""


def qwen35_mtp(row) -> bool:
    """Whether a Qwen3.5 SGLang row is one of InferenceX's ``qwen3.5-fp8-b200-sglang-mtp``
    runs (EAGLE speculative decoding; docs/inferencex-qwen35-knobs.md §2.3): the B200 fp8 rows
    of image v0.5.9-cu130 (measured 2026-03-20T22:08Z, that config's commit) and their
    gap-analysis copies, TP4 without EP (the non-MTP fp8 config of the time ran TP4 EP4 and
    TP8 only). The export dropped the results' ``spec_decoding`` column."""
    if provenance(row) != "inferencex" or row.get("backend") != "sglang" \
            or _checkpoint(row)[0] != "qwen/qwen3.5-397b-a17b" or row.get("system") != "b200_sxm" \
            or str(row.get("precision")) != "fp8":
        return False
    if QWEN35_GAP in str(row.get("silicon_data_source", "")):
        return _int(row.get("tp_size")) == 4 and _int(row.get("moe_ep_size")) == 1
    return _sglang_image(row) == "v0.5.9-cu130"


#: (system, precision) -> the server knobs of InferenceX's non-MTP Qwen3.5 SGLang script, as
#: deployment() keys (docs/inferencex-qwen35-knobs.md §2): --mem-fraction-static, the token
#: budget (--chunked-prefill-size, with --max-prefill-tokens the same or SGLang's default
#: 16384), --max-running-requests ("conc": the sweep's CONC), --kv-cache-dtype, and
#: --scheduler-recv-interval ("recv": "conc" is the scripts' 30 from CONC 16, else 10; none:
#: SGLang's 1); every script passes --disable-radix-cache. B300 rows measured 2026-04-03
#: (image v0.5.9) ran a script the repository does not hold: they keep SGLang's defaults.
QWEN35_SGLANG = {
    ("b200_sxm", "bf16"): {"memory_utilization": 0.82, "max_batch_tokens": 32768,
                           "max_seqs": 128, "recv": "conc"},
    ("b200_sxm", "fp8"): {"memory_utilization": 0.82, "max_batch_tokens": 32768,
                          "max_seqs": 128, "kv": "fp8", "recv": "conc"},
    ("b200_sxm", "fp4"): {"memory_utilization": 0.85, "max_batch_tokens": 32768,
                          "max_seqs": 128, "kv": "fp8", "recv": "conc"},
    ("h200_sxm", "fp8"): {"memory_utilization": 0.80, "max_batch_tokens": 16384,
                          "max_seqs": 128, "kv": "fp8"},
    ("b300_sxm", "bf16"): {"memory_utilization": 0.82, "max_batch_tokens": 32768,
                           "max_seqs": 128, "recv": "conc"},
    ("b300_sxm", "fp8"): {"memory_utilization": 0.80, "max_batch_tokens": 16384,
                          "max_seqs": "conc", "kv": "fp8", "recv": 10},
    ("b300_sxm", "fp4"): {"memory_utilization": 0.80, "max_batch_tokens": 32768,
                          "max_seqs": 128, "kv": "fp8", "recv": "conc"}}


def qwen35_sglang(row) -> dict:
    """The knobs InferenceX's non-MTP Qwen3.5 SGLang script of the row's GPU and precision set
    (:data:`QWEN35_SGLANG`), radix cache off; {} for B300 rows before its scripts (2026-04-17)."""
    system = row["system"]
    if system == "b300_sxm" and _measured_on(row) < "2026-04-17":
        return {}
    knobs = dict(QWEN35_SGLANG.get((system, str(row.get("precision"))), {}))
    if not knobs:
        return {}
    conc = concurrency(row)
    if knobs["max_seqs"] == "conc":
        knobs["max_seqs"] = conc
    runtime = {"radix_cache": False}
    recv = knobs.pop("recv", None)
    if recv is not None:
        runtime["recv_interval"] = (30 if conc >= 16 else 10) if recv == "conc" else recv
    return {**knobs, "runtime": runtime}


def deployment(row, role: str) -> dict:
    """The serving knobs the row's campaign set on a pool of ``role``, where its scripts say
    (a pool's keys; the runtime's own defaults stand for the rest). Sources:
    - aic: ai-dynamo/aiconfigurator@a2d8002e ``generator/rule_plugin/trtllm.rule`` (TRT-LLM
      max_num_tokens: agg batch + isl + 1500, prefill isl + 1500, decode batch, in 32-token
      blocks) and ``benchmark/sglang.rule`` (agg ``enable_mixed_chunk = true``);
      @71a2b033 ``backend_templates/trtllm/extra_engine_args.1.0.0rc3.yaml.j2``
      (free_gpu_memory_fraction 0.80); vLLM's template (@11324a64 ``cli_args.0.12.0.j2``)
      passes max-num-seqs only, from the row's batch.
    - inferencex: docs/inferencex-gptoss-knobs.md (SemiAnalysisAI/InferenceX scripts, commit
      per row there): TRT-LLM max_num_tokens 20000, KV memory 0.85, fp8 KV on B200; vLLM
      max-num-seqs 512 on B200, CONC on H100/H200, fp8 KV on B200 from 2025-12-05, MXFP8
      MoE activations on B200 (``VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1``) (gpt-oss);
      docs/inferencex-minimax-kimi-knobs.md (:func:`minimax_vllm`, :func:`kimi_vllm`; Kimi's
      GB200 dynamo-trt recipes, §4.2: :data:`KIMI_GB200_TRT`; their decode ``stream_interval
      100`` is not modelled); docs/inferencex-qwen35-knobs.md (Qwen3.5 SGLang,
      :func:`qwen35_sglang`: memory fraction, token budget, max-running-requests, fp8 KV,
      the scheduler's receive interval and the radix cache off, by GPU and precision)."""
    src, backend = provenance(row), row["backend"]
    model = str(row["model_path"]).strip().lower()
    batch = _int(row.get(("" if role == "mixed" else role + "_") + "batch_size"))
    isl, system = int(row["isl"]), row["system"]
    out: dict = {}
    if src == "aic" and backend == "trtllm":
        need = {"mixed": batch + isl + 1500, "prefill": isl + 1500, "decode": batch}[role]
        out.update(max_batch_tokens=_ceil(need, 32), memory_utilization=0.80)
    elif src == "aic" and backend == "sglang" and role == "mixed":
        out["runtime"] = {"mixed_batches": True}
    elif src == "aic" and backend == "vllm":
        out["max_seqs"] = batch
    elif src == "inferencex" and backend == "trtllm" and model == "openai/gpt-oss-120b":
        out.update(max_batch_tokens=20000, memory_utilization=0.85)
        if system == "b200_sxm":
            out["kv"] = "fp8"
    elif (recipe := kimi_gb200_trt_recipe(row)) is not None and role == "prefill":
        # every ctx worker: max_num_tokens 16384, max_batch_size 16 (1k) or 2 (8k), KV fp8 in
        # 0.4 of free memory, overlap scheduler off (§4.2)
        out.update(max_batch_tokens=16384, max_seqs=16 if isl <= 1024 else 2,
                   memory_utilization=0.4, kv="fp8", runtime={"overlap": False})
    elif recipe is not None and role == "decode":
        # gen: max_num_tokens = max_batch_size (per attention-DP rank, as hetsim reads it:
        # assumed, §4.2 did not check), KV fp8, the recipe's memory fraction
        out.update(max_seqs=recipe[2], max_batch_tokens=recipe[2], memory_utilization=recipe[3],
                   kv="fp8")
    elif src == "inferencex" and backend == "vllm" and model == "minimaxai/minimax-m2.5":
        out.update(minimax_vllm(row))
    elif src == "inferencex" and backend == "vllm" and model == "moonshotai/kimi-k2.5" \
            and row["mode"] == "agg":
        out.update(kimi_vllm(row))
    elif src == "inferencex" and backend == "sglang" and model == "qwen/qwen3.5-397b-a17b" \
            and role == "mixed":
        out.update(qwen35_sglang(row))
    elif src == "inferencex" and backend == "vllm" and model == "openai/gpt-oss-120b":
        out["max_seqs"] = 512 if system == "b200_sxm" else concurrency(row)
        if system == "b200_sxm":
            # VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1 in every B200 script of the window
            out["runtime"] = {"mxfp4_moe": "mxfp8"}
            if _measured_on(row) >= "2025-12-05":
                out["kv"] = "fp8"
    return out


def modelopt(row) -> bool:
    """Whether the row serves one of NVIDIA's ModelOpt checkpoints: any NVFP4 row (the
    runtimes serve NVFP4 only from such checkpoints, :func:`served_model`), an fp8 row of an
    NVIDIA fp8 re-release, or a row aiconfigurator labels ``fp8_static`` (its static-scale
    fp8 checkpoints are ModelOpt's: model_configs/Qwen--Qwen3-32B-FP8-Static-PerTensor)."""
    label = _label(row)
    return label in FP4_LABELS or label == "fp8_static" or (label == "fp8" and _nvidia_fp8(row))


def _release(version) -> tuple:
    """A runtime version as numbers (``0.5.6.post2``, ``v0.5.6`` -> (0, 5, 6)); a label that
    is not one (``nightly-dev-20260402-...``, ``glm5-hopper``: the file's 2026 images) reads
    as newer than every release, no version at all as older."""
    if pd.isna(version) or not str(version).strip():
        return (0,)
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", str(version).strip())
    return tuple(map(int, m.groups())) if m else (float("inf"),)


def checkpoint_kv_fp8(row) -> bool:
    """Whether the runtime, left at its default KV dtype ("auto"), stores the KV cache in fp8
    because the checkpoint says so: NVIDIA's ModelOpt FP8 and NVFP4 releases name
    ``kv_cache_quant_algo: FP8`` (every one in aiconfigurator-core's model_configs but the
    MIXED_PRECISION ones; ModelOpt's DeepSeek recipe, ``--enable_fp8_kvcache`` on by default).
    TRT-LLM's PyTorch backend keeps the checkpoint's KV quantization under "auto"
    (``_torch/pyexecutor/model_loader.py`` ``validate_and_set_kv_cache_quant``: "Using
    checkpoint KV quantization"); SGLang from 0.5.4 does (``model_runner.py``: fp8 where the
    quant config's ``kv_cache_quant_algo`` is FP8; 0.5.3 only for FP4 checkpoints,
    ``ModelOptFp8Config`` kept it under another name); vLLM does not ("auto" is the model dtype
    through 0.12 at least, ``config/cache.py``). Sources and versions: docs/runtime-rules.md §2."""
    if not modelopt(row):
        return False
    if row["backend"] == "trtllm":
        return True
    if row["backend"] == "sglang":
        version = _release(row.get("backend_version"))
        return version >= (0, 5, 4) or (version >= (0, 5, 3) and _label(row) in FP4_LABELS)
    return False


def _pool(row, role: str, prefix: str, runtime: dict | None) -> dict:
    # NOTE: a worker's GPUs (tp x attention_dp, or moe_tp x moe_ep where that is more) are
    # one instance of that many GPUs, its experts split moe_ep ways; attention_dp_size > 1 is
    # the pool's attention_dp (each rank attention TP tp_size, its own scheduler: the
    # campaigns' batch and token knobs are per rank, as :func:`deployment` reads them)
    system, backend = row["system"], row["backend"]
    tokens, seqs = BUDGET[backend]
    acc = hetsim.load_accelerator(kerneldb.SYSTEMS[system])
    if backend == "sglang" and acc.hbm_bytes >= 160 * 2**30:
        tokens = 16384
    tp = max(_int(row.get(prefix + "tp_size")) * _int(row.get(prefix + "attention_dp_size")),
             _int(row.get(prefix + "moe_tp_size")) * _int(row.get(prefix + "moe_ep_size")))
    pool = {"role": role, "accelerator": kerneldb.SYSTEMS[system], "tp": tp,
            "instances": _int(row.get(prefix + "num_workers")) if prefix else agg_workers(row),
            "precision": precision(row)}
    dp = _int(row.get(prefix + "attention_dp_size"))
    if dp > 1:
        pool["attention_dp"] = dp
    ep = _int(row.get(prefix + "moe_ep_size"))
    if ep > 1 and tp % ep == 0:     # experts split over ranks (a MoE model's rows only)
        pool["moe_ep"] = ep
    if runtime is not None:     # the runtime's own sizes, rules and kernels, as deployed
        knobs = deployment(row, role)
        pool["runtime"] = {"name": backend, **knobs.pop("runtime", {}), **runtime}
        if "kv" not in knobs and checkpoint_kv_fp8(row):
            knobs["kv"] = "fp8"
        if "kv" in knobs:
            pool["precision"] = {**pool["precision"], "kv": knobs.pop("kv")}
        pool.update(knobs)
    else:
        pool.update(max_batch_tokens=tokens, max_seqs=seqs)
    return pool


#: the campaigns' length spread: InferenceX draws each length uniform in [0.8 L, L]
#: (random-range-ratio 0.8 in every gpt-oss run; docs/inferencex-gptoss-knobs.md §1)
SPREAD = {"inferencex": 0.2}


def _lengths(n: int, spread: float) -> dict:
    """``n`` tokens, or with ``spread`` uniform in [(1 - spread) n, n]."""
    lo = max(1, int((1 - spread) * n))
    return {"dist": "fixed", "value": n} if lo == n else {"dist": "uniform", "min": lo, "max": n}


def parallelism(row):
    """The row with its aggregated worker's parallelism as InferenceX's 2026-03-25 export writes
    it (``tp_size`` x ``attention_dp_size`` GPUs, experts over ``moe_ep_size`` of them).

    NOTE: InferenceX's 2026-04-06 export and its db-dump write a worker with expert parallelism
    over G GPUs with both products squared: the same measurement (model, system, lengths,
    clients, TTFT and TPOT to the digit) is ``tp 4, moe 1 x 4`` in the 03-25 export and
    ``tp 16, moe 4 x 4`` in the 04-06 one (``tp 8, moe 1 x 8`` and ``tp 64, moe 8 x 8``;
    ``tp 1, dp 4, moe 1 x 4`` and ``tp 1, dp 16, moe 4 x 4``). Where a row has expert
    parallelism and moe_tp x moe_ep and tp x attention_dp are the same perfect square G^2 > G,
    the worker has G GPUs, every one an expert-parallel rank (vLLM's EP spans TP x DP): the
    larger of tp and attention_dp is divided by G. ``batch_size`` is per attention-DP rank
    (``batch_size x attention_dp_size`` is the worker's clients in both exports: 64 clients
    are ``batch 64, dp 1`` in the 03-25 export and ``batch 16, dp 4`` in the 04-06 one), so
    where dp is divided the batch is multiplied: one worker keeps all its clients."""
    src = str(row.get("silicon_data_source", ""))
    if provenance(row) != "inferencex" or row.get("mode") != "agg" \
            or "2026-03-25.csv" in src or QWEN35_GAP in src:     # (the 03-25 form)
        return row
    tp, dp = _int(row.get("tp_size")), _int(row.get("attention_dp_size"))
    moe = _int(row.get("moe_tp_size")) * _int(row.get("moe_ep_size"))
    g = int(round(moe ** 0.5))
    if _int(row.get("moe_ep_size")) < 2 or g < 2 or g * g != moe or tp * dp != moe:
        return row
    batch = row.get("batch_size")
    if dp >= tp:
        dp //= g
        batch = batch if pd.isna(batch) else batch * g
    else:
        tp //= g
    return {**row, "tp_size": tp, "attention_dp_size": dp, "moe_tp_size": 1, "moe_ep_size": g,
            "batch_size": batch}


#: InferenceX's Kimi-K2.5 GB200 dynamo-trt recipes (docs/inferencex-minimax-kimi-knobs.md §4.2,
#: NVIDIA/srt-slurm@94903bdb ``recipes/kimi2.5/trtllm_dynamo/disagg/gb200Nvfp4/*/STP``):
#: (isl, clients, decode GPUs) -> (prefill workers, decode workers, decode max_batch_size,
#: decode free_gpu_memory_fraction). The 2026-03-25 export's "wip" rows (measured 2026-04-02)
#: name no workers; their client counts are these recipes' own (666, 2253, 4301, 6452, 333,
#: 615, 2151 ...), so their layouts are taken from them (assumed: the recipes were committed
#: on 04-10, after those runs).
KIMI_GB200_TRT = {
    **{(1024, c, 8): (1, 4, 128, 0.9) for c in (4, 192, 360, 668)},
    **{(1024, c, 4): (1, 5, 8, 0.9) for c in (5, 15, 30, 55)},
    (1024, 666, 16): (1, 1, 32, 0.75), (1024, 2253, 32): (1, 1, 64, 0.7),
    (1024, 4301, 8): (1, 1, 768, 0.8), (1024, 6452, 8): (1, 1, 768, 0.8),
    (1024, 4301, 16): (2, 1, 256, 0.75), (1024, 4301, 32): (2, 1, 128, 0.7),
    (8192, 4, 8): (1, 4, 1, 0.9), (8192, 156, 4): (1, 4, 32, 0.9),
    **{(8192, c, 4): (1, 5, 16, 0.9) for c in (5, 15, 30, 60, 105)},
    (8192, 333, 16): (2, 1, 16, 0.8), (8192, 615, 16): (3, 1, 32, 0.8),
    (8192, 2151, 8): (5, 1, 256, 0.8), (8192, 2253, 16): (7, 1, 128, 0.8)}


def _kimi_gb200(row) -> bool:
    return str(row.get("model_path", "")).strip().lower() == "moonshotai/kimi-k2.5" \
        and _gb200_mla_disagg(row)


def _gb200_mla_disagg(row) -> bool:
    """An InferenceX GB200 disaggregated row of an MLA MoE model (DeepSeek-V3's lineage:
    Kimi-K2.5, GLM-5, DeepSeek); gpt-oss's recipes are another layout (prefill TP1,
    docs/inferencex-gptoss-knobs.md §2.6) and keep the row's columns."""
    if not (provenance(row) == "inferencex" and row.get("mode") == "disagg"
            and row.get("system") == "gb200"):
        return False
    try:
        return _mla_moe(model_of(row))
    except ConfigError:
        return False


@functools.lru_cache(maxsize=None)
def _mla_moe(model: str) -> bool:
    m = hetsim.load_model(model)
    return m.mla is not None and m.moe is not None


def kimi_gb200_trt_recipe(row) -> tuple | None:
    """The dynamo-trt recipe a Kimi-K2.5 GB200 row ran (:data:`KIMI_GB200_TRT`), or None."""
    if not _kimi_gb200(row) or row.get("backend") != "trtllm":
        return None
    gpus = max(_int(row.get("decode_tp_size")) * _int(row.get("decode_attention_dp_size")),
               _int(row.get("decode_moe_tp_size")) * _int(row.get("decode_moe_ep_size")))
    return KIMI_GB200_TRT.get((int(row["isl"]), concurrency(row), gpus))


def gb200_mla_disagg(row):
    """The row with the workers' parallelism InferenceX's GB200 disaggregated recipes of MLA
    MoE models ran, as read from Kimi-K2.5's (docs/inferencex-minimax-kimi-knobs.md §4: the
    db-dump's per-role tp/ep/dp columns are metadata that lost the layout) and applied to
    every MLA MoE model's such rows (GLM-5's, whose recipes were not read: their replayed TPOT
    goes from 34% to 11% median error with this layout, TTFT stays ~4x short; DeepSeek's, held
    out). Every prefill worker is attention DP over its GPUs with EP over them (vLLM TP1 x DP4
    EP, TRT-LLM "dep4"); a decode worker is attention DP + EP when it is the only one (every
    "1 x dep8/dep16/dep32" recipe) and TP + EP when there are several (every "4 x tep8",
    "5 x tep4", "4 x tep4"), in both the dynamo-vllm and the dynamo-trt tables. Where a row
    does not state its decode workers (the 2026-03-25 export), a decode worker of 16 or 32
    GPUs is DP + EP (every such recipe is a lone dep16 or dep32) and a smaller one keeps the
    row's layout (tep8 and dep8 both exist). A dynamo-trt row that names no workers takes its
    recipe's (:func:`kimi_gb200_trt_recipe`)."""
    if not _gb200_mla_disagg(row):
        return row
    out = dict(row)
    recipe = kimi_gb200_trt_recipe(row)
    if recipe is not None:
        for role, n in zip(("prefill_num_workers", "decode_num_workers"), recipe):
            if pd.isna(row.get(role)):
                out[role] = n
    workers = out.get("decode_num_workers")
    for role in ("prefill_", "decode_"):
        gpus = max(_int(row.get(role + "tp_size")) * _int(row.get(role + "attention_dp_size")),
                   _int(row.get(role + "moe_tp_size")) * _int(row.get(role + "moe_ep_size")))
        if role == "prefill_" or (not pd.isna(workers) and _int(workers) == 1):
            dp = gpus
        elif pd.isna(workers) and gpus >= 16:   # (no recipe runs TP16 or TP32: dep16/dep32)
            dp = gpus
        elif pd.isna(workers):    # tep8 or dep8, tep4: the row's own layout
            continue
        else:
            dp = 1
        out.update({role + "tp_size": gpus // dp, role + "attention_dp_size": dp,
                    role + "moe_tp_size": 1, role + "moe_ep_size": gpus})
    return out


def unreplayable(row) -> str:
    """Why a row cannot be replayed as measured ("" where it can). InferenceX's H100 vLLM
    gpt-oss docker script passed the client ``--max-concurrency 512`` from IX@d22bf9ca9
    (2025-11-21) until IX@4e135fd3f (2025-12-08) while the server kept ``--max-num-seqs`` at
    the sweep's CONC (4-64) and sent ``10 x CONC`` prompts (docs/inferencex-gptoss-knobs.md §1,
    §2.2): its rows say 512 clients, and the CONC the server ran (its cap and its request
    count) is not recorded."""
    if qwen35_mtp(row):
        return ("InferenceX's qwen3.5-fp8-b200-sglang-mtp run (EAGLE speculative decoding, "
                "IX@35d4bb367): hetsim does not model speculative decoding")
    if provenance(row) == "inferencex" and row["backend"] == "vllm" \
            and row["system"] == "h100_sxm" and concurrency(row) == 512 \
            and _checkpoint(row)[0] == "openai/gpt-oss-120b" \
            and "2025-11-21" <= _measured_on(row) <= "2025-12-08":
        return ("InferenceX's H100 gpt-oss client ran 512 clients against a server capped at "
                "an unrecorded CONC (IX@d22bf9ca9 to IX@4e135fd3f)")
    return ""


def scenario(row, runtime: dict | None = None, spread: float = 0.0,
             requests_per_client: int = 10, ramp_s: float = 0.0) -> dict:
    """The hetsim scenario of one measured row (a dict, as a YAML file would give it);
    ``spread`` > 0 draws lengths below the row's (clients then drift out of lock-step);
    ``ramp_s`` > 0 starts the clients evenly over that many seconds instead of together;
    ``runtime`` (None: the idealised engine on the generic profile) puts every pool on the
    row's runtime as its campaign deployed it (:func:`deployment`), with these overrides of
    its rules (``{}``: none). A campaign whose client spreads lengths (``SPREAD``) keeps its
    own spread."""
    if why := unreplayable(row):
        raise ConfigError(why)
    row = gb200_mla_disagg(parallelism(row))
    spread = SPREAD.get(provenance(row), spread)
    model = model_of(row)
    if row["system"] not in kerneldb.SYSTEMS:
        raise ConfigError(f"hetsim has no profile for system {row['system']}")
    if row["mode"] == "disagg":
        pools = {"prefill": _pool(row, "prefill", "prefill_", runtime),
                 "decode": _pool(row, "decode", "decode_", runtime)}
    else:
        pools = {"mixed": _pool(row, "mixed", "", runtime)}
    c = concurrency(row)
    workload = {"requests": requests_per_client * c, "seed": 0,
                "arrival": {"process": "closed", "concurrency": c,
                            **({"ramp_s": ramp_s} if ramp_s > 0 else {})},
                "input_tokens": _lengths(int(row["isl"]), spread),
                "output_tokens": _lengths(int(row["osl"]), spread)}
    return {"name": f"silicon-{row['id']}", "model": model, "workload": workload,
            "slo": {"ttft_s": 1e3, "tpot_s": 1e3}, "placements": {"measured": {"pools": pools}}}


def _completed(row, runtime, spread, ramp_s=0.0) -> pd.DataFrame:
    sc = parse_scenario(scenario(row, runtime, spread, ramp_s=ramp_s), f"{SAMPLE}#{row['id']}")
    df = hetsim.run(sc).requests
    return df[df["state"] == "completed"].sort_values("arrival_s", kind="stable")


def simulate(row, runtime: dict | None = None, spread: float = 0.0,
             stagger: bool = False) -> dict:
    """hetsim's mean TTFT and TPOT (ms) of one row, or the reason it was not modelled.
    ``stagger``: the clients start evenly over one request's mean end-to-end time as a first,
    lock-stepped run predicts it (so their phases are spread over a cycle from the start)."""
    t0 = time.perf_counter()
    try:
        done = _completed(row, runtime, spread)
        if stagger:
            done = _completed(row, runtime, spread, float(done["e2e_s"].mean()))
    except ConfigError as e:
        return {"id": row["id"], "skipped": str(e).split(": ", 1)[-1]}
    burst = concurrency(row)       # the clients' first requests, sent together at t = 0
    return {"id": row["id"], "skipped": "", "hetsim_ttft_ms": 1e3 * done["ttft_s"].mean(),
            "hetsim_tpot_ms": 1e3 * done["tpot_s"].mean(),
            "queue_ms": 1e3 * done["queue_s"].mean(),
            "burst_ttft_ms": 1e3 * done["ttft_s"].iloc[:burst].mean(),
            "steady_ttft_ms": 1e3 * done["ttft_s"].iloc[burst:].mean(),
            "sim_s": time.perf_counter() - t0}


def _simulate_kw(args):
    return simulate(*args)


def evaluate(rows: pd.DataFrame, runtime: dict | None = None, jobs: int = 1,
             spread: float = 0.0, stagger: bool = False) -> pd.DataFrame:
    """``rows`` (an :func:`allowed_rows` frame) with hetsim's figures and skip reasons."""
    work = [(r, runtime, spread, stagger) for r in rows.to_dict("records")]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            out = list(ex.map(_simulate_kw, work, chunksize=1))
    else:
        out = [simulate(*w) for w in work]
    res = pd.DataFrame(out, columns=["id", "skipped", "hetsim_ttft_ms", "hetsim_tpot_ms",
                                     "queue_ms", "burst_ttft_ms", "steady_ttft_ms", "sim_s"])
    return rows.merge(res, on="id", how="left")


def with_aic(df: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    """``df`` with aic's stored estimates (``aic_ttft_ms``, ``aic_tpot_ms``) where it has them."""
    path = path or AIC_CSV
    if not path.exists():
        return df.assign(aic_ttft_ms=np.nan, aic_tpot_ms=np.nan)
    aic = pd.read_csv(path)[["id", "aic_ttft_ms", "aic_tpot_ms"]]
    return df.merge(aic, on="id", how="left")


# --- summary -----------------------------------------------------------------------------
def errors(measured, predicted) -> dict:
    """n, MdAPE and p90 APE, median ratio predicted/measured (which way it errs), the worst
    ratio (farthest from 1 either way, as predicted/measured) and rows off by more than 3x."""
    m, p = np.asarray(measured, float), np.asarray(predicted, float)
    ok = ~np.isnan(p) & ~np.isnan(m) & (m > 0)
    if not ok.any():
        return {"n": 0, "mdape": np.nan, "p90": np.nan, "ratio": np.nan, "worst": np.nan,
                "over3x": 0}
    r = p[ok] / m[ok]
    e = np.abs(r - 1)
    fold = np.maximum(r, 1 / r)
    return {"n": int(ok.sum()), "mdape": float(np.median(e)), "p90": float(np.percentile(e, 90)),
            "ratio": float(np.median(r)), "worst": float(r[np.argmax(fold)]),
            "over3x": int((fold > 3).sum())}


def summary(df: pd.DataFrame, by=("backend", "system")) -> pd.DataFrame:
    """One line per group (and one for all rows): hetsim's and aic's TTFT and TPOT errors."""
    parts = [(k if isinstance(k, tuple) else (k,), g) for k, g in df.groupby(list(by))]
    parts.append((("all",) * len(by), df))
    lines = []
    for key, g in parts:
        line = dict(zip(by, key))
        for src in ("hetsim", "aic"):
            for met in ("ttft", "tpot"):
                e = errors(g[f"silicon_{met}_ms"], g[f"{src}_{met}_ms"])
                line.update({f"{src}_{met}_{k}": v for k, v in e.items()})
        both = g[g["aic_ttft_ms"].notna()]      # hetsim on the rows aic estimates
        for met in ("ttft", "tpot"):
            line[f"same_{met}_mdape"] = errors(both[f"silicon_{met}_ms"],
                                               both[f"hetsim_{met}_ms"])["mdape"]
        lines.append(line)
    return pd.DataFrame(lines)


def _pct(x) -> str:
    return "-" if pd.isna(x) else f"{100 * x:.0f}%"


def table(s: pd.DataFrame) -> str:
    head = ["runtime", "system", "rows", "TTFT MdAPE", "p90", "pred/meas", "worst", ">3x",
            "TPOT MdAPE", "p90", "pred/meas", "worst", ">3x", "aic TTFT (rows)",
            "aic TPOT vs hetsim's TTFT, TPOT on those rows"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in s.itertuples(index=False):
        cells = [r.backend, r.system, r.hetsim_ttft_n]
        for met in ("ttft", "tpot"):
            g = lambda k: getattr(r, f"hetsim_{met}_{k}")
            cells += [_pct(g("mdape")), _pct(g("p90")), f"{g('ratio'):.2f}", f"{g('worst'):.2f}",
                      g("over3x")]
        same = f" vs {_pct(r.same_ttft_mdape)}, {_pct(r.same_tpot_mdape)}"
        cells += [_pct(r.aic_ttft_mdape) + (f" ({r.aic_ttft_n})" if r.aic_ttft_n else ""),
                  _pct(r.aic_tpot_mdape) + (same if r.aic_ttft_n else "")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def skipped(df: pd.DataFrame) -> str:
    """Rows not modelled, counted per model and reason."""
    s = df[df["skipped"] != ""].groupby(["model_path", "skipped"]).size()
    return "\n".join(f"- {m}: {n} rows, {why}" for (m, why), n in s.items()) or "- none"


def per_row(df: pd.DataFrame) -> str:
    cols = ["id", "backend", "system", "model_path", "mode", "isl", "osl", "silicon_ttft_ms",
            "hetsim_ttft_ms", "burst_ttft_ms", "steady_ttft_ms", "queue_ms", "aic_ttft_ms",
            "silicon_tpot_ms", "hetsim_tpot_ms", "aic_tpot_ms", "sim_s"]
    ok = df[df["skipped"] == ""].assign(conc=df.apply(concurrency, axis=1))
    return ok[cols[:7] + ["conc"] + cols[7:]].to_string(index=False, float_format="%.1f")


#: a decomposition group: one deployment and load, measured at several output lengths
RUN_KEYS = ["campaign", "backend", "backend_version", "system", "model_path", "precision",
            "mode", "tp_size", "moe_ep_size", "attention_dp_size", "isl", "clients"]


def _stall_fit(osl, tpot) -> tuple[float, float]:
    """Least squares of ``tpot = step + stall / (osl - 1)``: the decode step every token pays
    and the time added once per request's decode window (the other clients' prefills run
    in it), both in the units of ``tpot``."""
    u = 1.0 / (np.asarray(osl, float) - 1)
    stall, step = np.polyfit(u, np.asarray(tpot, float), 1)
    return float(step), float(stall)


def decompose(df: pd.DataFrame) -> pd.DataFrame:
    """Split TPOT, measured and hetsim's, into the decode step and the per-request stall.

    A benchmark's TPOT is ``(e2e - ttft) / (osl - 1)``: the decode steps plus whatever ran in
    a request's decode window, which for a closed loop is mostly the other clients' prefills.
    Rows of one deployment, prompt length and client count measured at several output
    lengths separate the two (:func:`_stall_fit`). With C clients interleaved, each decode
    window holds the other C - 1 prefills; with the clients in lock-step (every client
    finishing in the same step and re-sending together), none of them, since a round's
    prefills run before its first tokens. So ``stall`` says which the measured run was, and
    ``step`` whether hetsim's decode step or its dynamics is what differs."""
    ok = df[(df["skipped"].isna() | (df["skipped"] == "")) & df["hetsim_tpot_ms"].notna()].copy()
    ok["campaign"] = ok["silicon_data_source"].astype(str).str.extract(
        r"source_file=([^;]+)", expand=False).fillna(ok["silicon_data_source"].astype(str)
                                                     .str.split(";").str[0])
    ok["clients"] = ok.apply(concurrency, axis=1)
    lines = []
    for key, g in ok.groupby(RUN_KEYS, dropna=False):
        if g["osl"].nunique() < 2:      # (repeated lengths: separate runs, all fitted)
            continue
        m_step, m_stall = _stall_fit(g["osl"], g["silicon_tpot_ms"])
        h_step, h_stall = _stall_fit(g["osl"], g["hetsim_tpot_ms"])
        lines.append(dict(zip(RUN_KEYS, key), lengths=g["osl"].nunique(), measured_step=m_step,
                          measured_stall=m_stall, hetsim_step=h_step, hetsim_stall=h_stall))
    return pd.DataFrame(lines)


def decomposition_table(d: pd.DataFrame) -> str:
    """Per runtime, system and model: medians over the groups :func:`decompose` found.
    "stall / (C - 1)" is the stall per other client (the prefill each one adds to a decode
    window when the clients interleave)."""
    head = ["runtime", "system", "model", "groups", "decode step: hetsim / measured",
            "measured stall / (C - 1), ms", "hetsim stall / (C - 1), ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    d = d.assign(m_per=d["measured_stall"] / (d["clients"] - 1).clip(lower=1),
                 h_per=d["hetsim_stall"] / (d["clients"] - 1).clip(lower=1),
                 step_ratio=d["hetsim_step"] / d["measured_step"],
                 model=d["model_path"].str.split("/").str[-1])
    for (b, s, m), g in d.groupby(["backend", "system", "model"]):
        lines.append(f"| {b} | {s} | {m} | {len(g)} | {g['step_ratio'].median():.2f} | "
                     f"{g['m_per'].median():.0f} | {g['h_per'].median():.0f} |")
    return "\n".join(lines)


def select(rows: pd.DataFrame, a) -> pd.DataFrame:
    """The filters of the command line (model: hetsim name or model_path substring)."""
    if a.model:
        key = rows["model_path"].str.strip().str.lower()
        hs = key.map(MODELS).fillna("")
        rows = rows[(hs == a.model.lower()) | key.str.contains(a.model.lower(), regex=False)]
    for col, want in (("system", a.system), ("backend", a.backend)):
        if want:
            rows = rows[rows[col].isin(want)]
    return rows.head(a.limit) if a.limit else rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="at most N rows (after the filters)")
    ap.add_argument("--model", help="hetsim model name or part of model_path")
    ap.add_argument("--system", action="append", help="aic system name (repeat)")
    ap.add_argument("--backend", action="append", choices=kerneldb.RUNTIMES, help="(repeat)")
    ap.add_argument("--jobs", type=int, default=1, help="rows simulated in parallel")
    ap.add_argument("--runtime", action="store_true",
                    help="add runtime: <the row's backend> to every pool (its kernels and "
                    "serving rules, as the row's campaign deployed it)")
    ap.add_argument("--idealised", action="store_true",
                    help="with --runtime: also run every row on the idealised engine and add "
                    "its overall line")
    ap.add_argument("--length-spread", type=float, default=0.0, metavar="F",
                    help="draw ISL and OSL uniform in [(1-F) x, x] instead of fixed (a check "
                    "of how much lock-stepped clients cost)")
    ap.add_argument("--stagger", action="store_true",
                    help="start the clients evenly over one request's end-to-end time (hetsim's "
                    "own, from a first lock-stepped run) instead of together: the bound of "
                    "fully desynchronised clients (docs/aic-campaign-client.md §6)")
    ap.add_argument("--rows", action="store_true", help="print every modelled row")
    ap.add_argument("--csv", type=Path, help="write every row, with both estimates, here")
    ap.add_argument("--readme", type=Path, help=f"write the block into its {MARK[0]} region "
                    f"(with --decompose: {DECOMPOSITION[0]})")
    ap.add_argument("--sample", type=Path, help=f"another {SAMPLE} (default: the installed "
                    "aiconfigurator-core's)")
    ap.add_argument("--decompose", type=Path, metavar="CSV",
                    help="read a --csv output and print TPOT split into decode step and "
                    "per-request stall, measured and hetsim's (no simulation)")
    ap.add_argument("--refresh-aic", action="store_true",
                    help=f"recompute aic's estimates into {AIC_CSV.name} and exit")
    a = ap.parse_args(argv)
    if a.decompose:         # from a run's rows: no simulation, nothing of aic's needed
        from kernel_accuracy import emit
        rows = allowed_rows(a.decompose)        # through the held-out filter, whatever the file
        need = {"skipped", "osl", "silicon_tpot_ms", "hetsim_tpot_ms", *RUN_KEYS} - {
            "campaign", "clients"}
        if missing := sorted(need - set(rows.columns)):
            print(f"{a.decompose}: not a --csv output of this script (no column "
                  f"{', '.join(missing)})", file=sys.stderr)
            return 2
        emit(f"{len(rows)} rows of a `--csv` run.\n\n"
             + decomposition_table(decompose(rows)), a.readme, DECOMPOSITION)
        return 0
    allowed = allowed_rows(a.sample)
    rows = select(measurements(allowed), a)
    if a.refresh_aic:       # the rows hetsim has a model for; aiconfigurator_core only here
        from aic_serving import refresh
        return refresh(rows[rows["model_path"].str.strip().str.lower().isin(MODELS)], AIC_CSV)
    t0 = time.perf_counter()
    df = with_aic(evaluate(rows, {} if a.runtime else None, a.jobs, a.length_spread, a.stagger))
    wall = time.perf_counter() - t0
    ok = df[df["skipped"] == ""]
    s = summary(ok)
    if a.runtime and a.idealised:
        base = with_aic(evaluate(rows, None, a.jobs, a.length_spread, a.stagger))
        line = summary(base[base["skipped"] == ""]).iloc[[-1]]
        s = pd.concat([s, line.assign(backend="all", system="idealised engine")])
        wall = time.perf_counter() - t0
    block = (f"{len(ok)} of {len(df)} allowed measurements modelled ({len(df) - len(ok)} "
             f"skipped; {len(allowed) - len(measurements(allowed))} rows repeating another "
             "export's measurement counted once), "
             f"10 x concurrency requests each, seed 0; {wall:.0f} s on {a.jobs} process(es)."
             f"{' Every pool on its row runtime, as deployed.' if a.runtime else ''}"
             f"{f' Lengths spread {a.length_spread:g}.' if a.length_spread else ''}"
             f"{' Clients staggered over one cycle.' if a.stagger else ''}\n\n"
             + table(s) + "\n\nNot modelled:\n" + skipped(df))
    if a.rows:
        print(per_row(df) + "\n")
    if a.csv:
        df.to_csv(a.csv, index=False, float_format="%.4g")
    if a.readme:
        from kernel_accuracy import write_readme    # benchmarks/ is the script's folder
        write_readme(a.readme, block, MARK)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Named workload presets: length distributions (and arrival burstiness) from published
traces. Plain data, checked when a workload uses them."""
from __future__ import annotations

import math

__all__ = ["PRESETS", "MLPERF_INPUT_MEAN", "MLPERF_OUTPUT_MEAN"]


# Presets from the published statistics of the Azure LLM inference traces (2023, CC-BY):
# conversation: input median 1020 / p90 2735, output median 129 / p90 424 (max 1000),
# near-Poisson arrivals (CV ~1.1); code: input median 1469 / p90 5194 (p99 7436), output
# median 13 / p90 55 (p99 252), very bursty (CV ~13). Lognormals are fitted to median and
# p90: sigma = ln(p90/median) / 1.2816. Source: shared/reference/validation.md (Splitwise /
# Azure public dataset).
def _ln(median, p90, max_):
    return {"dist": "lognormal", "median": median, "sigma": round(math.log(p90 / median) / 1.2816, 4),
            "max": max_}


def _phi(z: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _clipped_mean(median: float, sigma: float, lo: float, hi: float) -> float:
    """E[clip(X, lo, hi)] for X lognormal with this median and sigma (closed form)."""
    phi = _phi
    mu = math.log(median)
    a, b = (math.log(lo) - mu) / sigma, (math.log(hi) - mu) / sigma
    return (lo * phi(a) + math.exp(mu + sigma ** 2 / 2) * (phi(b - sigma) - phi(a - sigma))
            + hi * (1 - phi(b)))


def _ln_mean(mean: float, sigma: float, lo: int, hi: int) -> dict:
    """A lognormal of ``sigma`` clipped to [lo, hi] whose clipped mean is ``mean``: the median
    is found by bisection on the closed form (the clipped mean rises with the median)."""
    a, b = math.log(lo), math.log(hi)
    for _ in range(100):
        m = (a + b) / 2
        a, b = (m, b) if _clipped_mean(math.exp(m), sigma, lo, hi) < mean else (a, m)
    return {"dist": "lognormal", "median": round(math.exp(m), 4), "sigma": sigma, "min": lo,
            "max": hi}


# MLPerf Inference llama2-70b (v4.0-v5.x), server and offline: the 24,576 OpenOrca (GPT-4
# part) samples as mlcommons/inference@12027f17 language/llama2-70b/processorca.py selects
# them (Llama-2 chat template, input and reference output each < 1024 tokens, equal parts of
# cot/niv/flan/t0). Sourced: generated output mean 294.45 tokens per sample (that commit's
# language/llama2-70b/README.md, "Accuracy Target"), output 1..1024 (SUT.py gen_kwargs
# min_new_tokens 1, max_new_tokens 1024); input min 48, max 1021, sum 5,463,976 over 24,576
# rows = mean 222.33 (FlashLab-MBZUAI/HBFSim@96cf1b37 validation/calibration/
# h100-llama2-70b-calibration-protocol.json: statistics of the official pickle
# open_orca_gpt4_tokenized_llama.sampled_24576.pkl, sha256 ec34d70f...). No percentile of
# either length is published: the lognormal shape and sigma 0.8 are an ASSUMPTION (DESIGN.md
# "MLPerf Llama-2-70B"); only the bounds and means are facts. Poisson arrivals (loadgen's
# server scenario).
MLPERF_SIGMA = 0.8
MLPERF_INPUT_MEAN = 5463976 / 24576
MLPERF_OUTPUT_MEAN = 294.45


PRESETS = {
    "azure-conv-2023": {"input_tokens": _ln(1020, 2735, 8192), "output_tokens": _ln(129, 424, 1000),
                        "arrival_cv": 1.1},
    "azure-code-2023": {"input_tokens": _ln(1469, 5194, 8192), "output_tokens": _ln(13, 55, 1000),
                        "arrival_cv": 13.0},
    # ShareGPT as DistServe's artifact prepares it for OPT models (multi-turn prompts: a random
    # number of turns concatenated, the next turn as the output; OPT tokenizer; prompt + output
    # < 2048): percentiles of the request lengths (lengths only; no timings) of the 300-request
    # OPT-13B ShareGPT workload in LLMServe/DistServe simdistserve/benchmarks/alignment/
    # data-ground-truth/opt-13b-sharegpt-workload/ (Apache-2.0). Input mean 780 / median 758,
    # output mean 176 / median 67. Poisson arrivals.
    "sharegpt-distserve": {
        "input_tokens": {"dist": "quantiles", "quantiles": [
            [0, 9], [0.025, 15], [0.05, 31], [0.1, 94], [0.15, 180], [0.2, 279], [0.25, 345],
            [0.3, 430], [0.35, 501], [0.4, 573], [0.45, 658], [0.5, 758], [0.55, 821],
            [0.6, 867], [0.65, 972], [0.7, 1047], [0.75, 1157], [0.8, 1319], [0.85, 1421],
            [0.9, 1512], [0.95, 1718], [0.975, 1787], [0.99, 1889], [1, 2003]]},
        "output_tokens": {"dist": "quantiles", "quantiles": [
            [0, 2], [0.025, 3], [0.05, 5], [0.1, 9], [0.15, 12], [0.2, 14], [0.25, 18],
            [0.3, 23], [0.35, 33], [0.4, 36], [0.45, 48], [0.5, 67], [0.55, 112], [0.6, 164],
            [0.65, 201], [0.7, 236], [0.75, 278], [0.8, 337], [0.85, 403], [0.9, 478],
            [0.95, 594], [0.975, 780], [0.99, 834], [1, 1085]]},
        "arrival_cv": 1.0},
    "mlperf-llama2-openorca": {
        "input_tokens": _ln_mean(MLPERF_INPUT_MEAN, MLPERF_SIGMA, 48, 1021),
        "output_tokens": _ln_mean(MLPERF_OUTPUT_MEAN, MLPERF_SIGMA, 1, 1024),
        "arrival_cv": 1.0},
    # Stage-pressure regimes.
    "prefill-heavy": {"input_tokens": _ln(4096, 8192, 16384), "output_tokens": _ln(64, 128, 512),
                      "arrival_cv": 1.0},
    "decode-heavy": {"input_tokens": _ln(256, 512, 2048), "output_tokens": _ln(1024, 2048, 4096),
                     "arrival_cv": 1.0},
}


"""How much do sliding-window layers save, measured vs the step model? (gpt-oss study)

aiconfigurator-core measures context and generation attention at window 0 (full) and 128 on
the same shapes. For gpt-oss-120b's heads per rank (64 / 8 KV heads of 64 at TP1, half at
TP2; bf16) this prints, per system x runtime x TP x op, the median measured window-128 /
full time and the step model's (a causal band in prefill, min(context, 128) keys in decode),
over all shapes and over those with 1024+ tokens of context, and the median prediction /
measurement for each. DESIGN.md, "Sliding-window layers and mxfp4 experts", quotes the run.

    pip install 'hetsim[aic]'
    python benchmarks/window_attention.py
"""
from __future__ import annotations

import numpy as np

from hetsim import PerfModel, StepModel, kerneldb, load_accelerator, load_model

SYSTEMS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm"}
OPS = ("context_attention", "generation_attention")


def layer_times(step: StepModel, op: str, batch: int, kv: int) -> tuple[float, float]:
    """(full-attention layer, windowed layer) seconds of ``op`` for ``batch`` sequences."""
    m = step.model
    if op == "generation_attention":
        return (step._decode_layer_time(batch, batch * kv),
                step._decode_layer_time(batch, batch * min(kv, m.sliding_window.size)))
    chunks = [(kv, kv)] * batch
    full = step.pm.attention_chunks_time(chunks, step.heads, step.kv_heads, m.head_dim,
                                         step.attn_precision, "bf16", v_head_dim=m.head_dim)
    both = step._windowed_prefill_time(chunks)
    return full, (both - m.full_attention_layers * full) / m.sliding_window.layers


def study(system: str, runtime: str, op: str, tp: int) -> dict | None:
    """Medians over the shapes measured at both window 0 and 128 (None: no such rows)."""
    step = StepModel(load_model("gpt-oss-120b"), PerfModel(load_accelerator(SYSTEMS[system])),
                     tp, "bf16")
    df = kerneldb.read_op(kerneldb.select(system, runtime), op)
    df = df[(df.num_heads == step.heads) & (df.num_key_value_heads == step.kv_heads)
            & (df.head_dim == 64) & (df.attn_dtype == "bf16") & (df.kv_cache_dtype == "bf16")]
    key = ["batch_size", "isl", "step"]
    both = (df[df.window_size == 0].groupby(key).latency_s.min().to_frame("full")
            .join(df[df.window_size == 128].groupby(key).latency_s.min().to_frame("win"),
                  how="inner"))
    if both.empty:
        return None
    rows = []
    for (batch, isl, s), r in both.iterrows():
        full, win = layer_times(step, op, int(batch), int(isl + s))
        rows.append((isl + s >= 1024, r.win / r.full, win / full, full / r.full, win / r.win))
    a = np.array(rows)
    long = a[:, 0] == 1
    return {"shapes": len(a), "measured": np.median(a[:, 1]), "model": np.median(a[:, 2]),
            "measured_1k": np.median(a[long, 1]), "model_1k": np.median(a[long, 2]),
            "pred_meas_full": np.median(a[:, 3]), "pred_meas_window": np.median(a[:, 4])}


def main() -> None:
    print("system x runtime x tp x op: window/full measured | model (1024+ tokens: measured | "
          "model); prediction/measurement full | windowed")
    for system in SYSTEMS:
        for runtime in ("vllm", "trtllm"):
            for tp in (1, 2):
                for op in OPS:
                    r = study(system, runtime, op, tp)
                    if r:
                        print(f"{system} {runtime} tp{tp} {op}: {r['measured']:.2f} | "
                              f"{r['model']:.2f} ({r['measured_1k']:.2f} | {r['model_1k']:.2f}); "
                              f"{r['pred_meas_full']:.2f} | {r['pred_meas_window']:.2f}")


if __name__ == "__main__":
    main()

"""AIConfigurator's own estimate of measured serving rows, for ``serving_accuracy.py
--refresh-aic`` (imports aiconfigurator_core; the benchmark itself reads only the stored CSV).

aiconfigurator's ``cli_estimate`` (the upper ``aiconfigurator`` package, not installed here) is
reproduced for aggregated rows from aiconfigurator-core alone, as it calls it: the row's
backend database version where the package has it (else the latest, as aic's own
``predict_silicon_sample.py`` falls back), ``ModelConfig`` with the row's parallelism and quant
modes, ``run_agg`` at the row's per-rank ``batch_size`` with ``ctx_tokens = isl`` (cli_estimate's
default budget). Disaggregated rows are left out: their rate matching between prefill and
decode workers lives in the upper package.
"""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pandas as pd


def _opt(v):
    return None if pd.isna(v) or int(v) <= 0 else int(v)


def _quant(common, enum: str, v):
    return None if pd.isna(v) else getattr(getattr(common, enum), str(v))


def estimate(row, cache: dict) -> tuple[float, float, str]:
    """(TTFT ms, TPOT ms, database version) of one aggregated row."""
    from aiconfigurator_core.sdk import common, config
    from aiconfigurator_core.sdk.backends.factory import get_backend
    from aiconfigurator_core.sdk.models import get_model
    from aiconfigurator_core.sdk.perf_database import get_database, get_latest_database_version
    system, backend = row["system"], row["backend"]
    key = (system, backend, str(row["backend_version"]))
    if key not in cache:
        db = None
        if not pd.isna(row["backend_version"]):
            with contextlib.suppress(Exception):
                db = get_database(system, backend, str(row["backend_version"]))
        cache[key] = db or get_database(system, backend,
                                        get_latest_database_version(system, backend))
    db = cache[key]
    # a row's MoE width (moe_tp x moe_ep) may exceed tp with no attention_dp_size given:
    # the attention DP that makes the widths agree, as aic requires
    tp = _opt(row["tp_size"]) or 1
    moe_width = (_opt(row["moe_tp_size"]) or 1) * (_opt(row["moe_ep_size"]) or 1)
    dp = _opt(row["attention_dp_size"]) or max(1, moe_width // tp)
    mc = config.ModelConfig(
        tp_size=tp, pp_size=_opt(row["pp_size"]) or 1, attention_dp_size=dp,
        moe_tp_size=_opt(row["moe_tp_size"]), moe_ep_size=_opt(row["moe_ep_size"]),
        gemm_quant_mode=_quant(common, "GEMMQuantMode", row["gemm_quant_mode"]),
        moe_quant_mode=_quant(common, "MoEQuantMode", row["moe_quant_mode"]))
    model = get_model(str(row["model_path"]).strip(), mc, backend)
    rc = config.RuntimeConfig(batch_size=int(row["batch_size"]), isl=int(row["isl"]),
                              osl=int(row["osl"]))
    s = get_backend(backend).run_agg(model, db, rc, ctx_tokens=int(row["isl"]))
    df = s.get_summary_df()
    return float(df["ttft"].iloc[0]), float(df["tpot"].iloc[0]), str(db.version)


def refresh(rows: pd.DataFrame, path: Path) -> int:
    """Estimate every aggregated row of ``rows`` (an ``allowed_rows`` frame) into ``path``;
    rows aic cannot estimate keep the reason. Prints a count per outcome."""
    out, cache = [], {}
    for row in rows[rows["mode"] == "agg"].to_dict("records"):
        rec = {"id": row["id"], "aic_ttft_ms": None, "aic_tpot_ms": None, "aic_version": "",
               "aic_error": ""}
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                rec["aic_ttft_ms"], rec["aic_tpot_ms"], rec["aic_version"] = estimate(row, cache)
        except Exception as e:      # aic's own refusals: kept as the row's reason
            rec["aic_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        out.append(rec)
        print(f"{len(out)} {row['id']} {rec['aic_ttft_ms']} {rec['aic_error']}",
              file=sys.stderr, flush=True)
    df = pd.DataFrame(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.3f")
    ok = df["aic_error"] == ""
    print(f"{path}: {int(ok.sum())} rows estimated, {int((~ok).sum())} refused")
    return 0

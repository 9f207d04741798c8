"""README figures, regenerated from runs so they cannot drift from what the code prints.

    python benchmarks/readme_figures.py            # rewrite README.md in place
    python benchmarks/readme_figures.py --check    # exit 1 with a diff when README.md is stale

These regions of README.md are generated, each between a pair of markers
(``<!-- readme_figures:NAME -->`` ... ``<!-- /readme_figures:NAME -->``); nothing outside them
is touched:

- ``quickstart``: the output of ``hetsim run scenarios/quickstart.yaml`` (the same title line and
  table as the CLI: ``hetsim.report.run_title`` and ``format_table``).
- ``design-space``: one row per ``scenarios/design-space/*.yaml``. Each row's wording is a
  template below; its numbers are filled in from the run's summaries (README "Outputs" names
  the keys) and, where the summaries hold no such figure, from ``result.requests``. Wording
  that states a fact rather than a number ("unchanged", "hidden", "becomes transfer-bound") is
  checked against the run, and regenerating fails when the run no longer says it, so that
  prose gets rewritten by a person instead of going stale.
- ``faults-decode-crash``, ``faults-flaky-cross-site``, ``faults-slow-decode``,
  ``faults-mtbf-hour``, ``faults-host-restore``: README "Faults
  and recovery"'s table and paragraphs on ``scenarios/faults/*.yaml``, templates filled in the
  same way, their facts ("nothing fails", "costs nothing a client sees") checked alike.
- ``check-resilience``: what ``hetsim check examples/ci/resilience.yaml`` prints.

Every scenario is seeded, so the figures are deterministic; ``tests/test_readme_figures.py``
runs the check in CI.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # this checkout's hetsim, not whichever one is installed
    sys.path.insert(0, str(ROOT))

import hetsim  # noqa: E402
from hetsim.cli import main as cli  # noqa: E402
from hetsim.outputs import write_text_atomic  # noqa: E402
from hetsim.report import format_table, run_title  # noqa: E402

README = ROOT / "README.md"
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
DESIGN_SPACE = ROOT / "scenarios" / "design-space"
FAULTS = ROOT / "scenarios" / "faults"
CHECKS = ROOT / "examples" / "ci" / "resilience.yaml"

__all__ = ["expected_readme", "quickstart_block", "design_space_table", "main"]


class StaleProse(RuntimeError):
    """A template's wording states something the run no longer shows."""


def _claim(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise StaleProse(f"{where}: the README says {what!r}, which the run no longer "
                         "shows; rewrite that template in benchmarks/readme_figures.py")


def _get(summary: dict, path: str) -> float:
    """``summary`` at a dotted key path, e.g. ``ttft_s.p50`` or ``kv_occupancy.decode.mean``."""
    v = summary
    for k in path.split("."):
        v = v[k]
    return v


# --- the design-space rows ----------------------------------------------------------------------
# Each figures function gets {placement: summary} and the requests DataFrame and returns the
# template's fields (already in the template's unit: ms, GB, fractions for :.0%).
MS, GB = 1e3, 1e-9


@dataclass(frozen=True)
class Row:
    scenario: str                      # scenarios/design-space/<scenario>.yaml
    placements: str                    # the "placements" column, prose
    template: str                      # the "what changes" column
    figures: Callable[[dict, object], dict]


def _precision_prefill(s, _req):
    a, b = s["prefill-bf16"], s["prefill-fp8"]
    f = {"p50_a": _get(a, "ttft_s.p50"), "p50_b": _get(b, "ttft_s.p50"),
         "p99_a": _get(a, "ttft_s.p99"), "p99_b": _get(b, "ttft_s.p99"),
         "tpot": _get(a, "tpot_s.p50")}
    _claim(f"{f['tpot']:.4f}" == f"{_get(b, 'tpot_s.p50'):.4f}", "precision-prefill-fp8",
           "TPOT unchanged")
    return f


def _precision_decode(s, _req):
    names = ("decode-bf16", "decode-fp8-weights", "decode-fp8-weights-kv")
    f = {}
    for i, n in enumerate(names):
        f[f"tpot{i}"] = _get(s[n], "tpot_s.p50") * MS
        f[f"occ{i}"] = _get(s[n], "kv_occupancy.decode.mean")
        f[f"wire{i}"] = _get(s[n], "kv_transfer_bytes") * GB
    # "wire bytes 62 → 31 GB": fp8 weights alone leave the KV (and its bytes) as in bf16
    _claim(f"{f['wire0']:.0f}" == f"{f['wire1']:.0f}", "precision-decode-kv",
           "wire bytes <bf16> → <fp8 KV> (fp8 weights alone move the same bytes)")
    return f


def _kv_conversion(s, _req):
    same, pre, dec = s["same-format"], s["convert-on-prefill"], s["convert-on-decode"]
    return {"wire_a": _get(same, "kv_transfer_bytes") * GB,
            "wire_b": _get(dec, "kv_transfer_bytes") * GB,
            "exp_a": _get(same, "kv_transfer_exposed_s.mean") * MS,
            "exp_b": _get(dec, "kv_transfer_exposed_s.mean") * MS,
            "conv_dec": _get(dec, "kv_conversion_s_total"),
            "conv_pre": _get(pre, "kv_conversion_s_total")}


def _transfer_engine(s, _req):
    a, b = s["rdma"], s["tcp"]
    _claim(a["bottleneck"] != "transfer-bound" and b["bottleneck"] == "transfer-bound",
           "transfer-engine",
           "bottleneck becomes transfer-bound")
    return {"exp_a": _get(a, "kv_transfer_exposed_s.mean") * MS,
            "exp_b": _get(b, "kv_transfer_exposed_s.mean") * MS,
            "tpot_a": _get(a, "tpot_s.p99") * MS, "tpot_b": _get(b, "tpot_s.p99") * MS}


def _transfer_mode(s, _req):
    lw_local, lw_remote = s["layerwise-local"], s["layerwise-remote-25g"]
    f = {"local_a": _get(s["whole-local"], "kv_transfer_exposed_s.mean") * MS,
         "local_b": _get(lw_local, "kv_transfer_exposed_s.mean") * MS,
         "remote_a": _get(s["whole-remote-25g"], "kv_transfer_exposed_s.mean"),
         "remote_b": _get(lw_remote, "kv_transfer_exposed_s.mean")}
    # hidden: under 5% of the transfer exposed; mostly exposed: over half of it
    _claim(f["local_b"] / MS < 0.05 * _get(lw_local, "kv_transfer_s.mean"), "transfer-mode",
           "local layer-wise transfer hidden")
    _claim(f["remote_b"] > 0.5 * _get(lw_remote, "kv_transfer_s.mean"), "transfer-mode",
           "remote layer-wise transfer mostly exposed")
    return f


def _handoff(s, _req):
    a, b = s["pull"], s["push"]
    return {"held_a": _get(a, "kv_staging.prefill.mean"),
            "held_b": _get(b, "kv_staging.prefill.mean"),
            "ttft_a": _get(a, "ttft_s.p50"), "ttft_b": _get(b, "ttft_s.p50")}


def _kv_offload(s, _req):
    names = ("reserve", "recompute", "swap-pcie5", "swap-slow-link")
    f = {}
    for i, n in enumerate(names):
        f[f"pre{i}"] = _get(s[n], "preemptions.count")
        f[f"dev{i}"] = _get(s[n], "preemptions.device_s")
        f[f"tpot{i}"] = _get(s[n], "tpot_s.p99") * MS
    return f


def _prefix_cache(s, _req):
    names = ("no-cache", "cache-hbm", "cache-host")
    f = {f"ttft{i}": _get(s[n], "ttft_s.p50") * MS for i, n in enumerate(names)}
    f.update(att_a=s["no-cache"]["slo_attainment"], att_b=s["cache-hbm"]["slo_attainment"])
    # "82% → 100%": one figure for both caches
    _claim(f"{f['att_b']:.0%}" == f"{s['cache-host']['slo_attainment']:.0%}", "prefix-cache",
           "SLO attainment <no cache> → <either cache>")
    return f


def _cross_site(s, req):
    # bytes over the cross-site link: the KV of every prompt the remote prefill pool served
    # (summed from the requests; the summaries keep link utilization, not bytes, per link)
    remote = req[req.prefill_instance.astype(str).str.startswith("remote/")
                 & req.transfer_start_s.notna()]
    xs = remote.groupby("placement").kv_bytes.sum() * GB
    return {"att0": s["local-only"]["slo_attainment"],
            "att1": s["remote-prefill-all"]["slo_attainment"],
            "att2": s["length-threshold"]["slo_attainment"],
            "xs_a": xs.get("remote-prefill-all", 0.0), "xs_b": xs.get("length-threshold", 0.0)}


def _routing(s, _req):
    rr, kv = s["round-robin"], s["kv-aware"]
    return {"tpot0": _get(rr, "tpot_s.p99") * MS,
            "tpot1": _get(s["least-loaded"], "tpot_s.p99") * MS,
            "tpot2": _get(kv, "tpot_s.p99") * MS,
            "h_a": _get(rr, "kv_occupancy.decode-h100.mean"),
            "a_a": _get(rr, "kv_occupancy.decode-a100.mean"),
            "h_b": _get(kv, "kv_occupancy.decode-h100.mean"),
            "a_b": _get(kv, "kv_occupancy.decode-a100.mean")}


def _kv_serialization(s, _req):
    exp = {n: _get(v, "kv_transfer_exposed_s.mean") * MS for n, v in s.items()}
    for link in ("25g", "100g"):
        _claim(exp[f"{link}-int4"] < exp[f"{link}-plain"], "kv-serialization",
               f"int4 pays on {link}")
        _claim(exp[f"{link}-batch"] > exp[f"{link}-plain"], "kv-serialization",
               f"batching costs its window on {link}")
    _claim(exp["100g-slow-codec"] > exp["100g-plain"]
           and s["100g-slow-codec"]["bottleneck"] == "prefill-bound", "kv-serialization",
           "a slow codec loses and makes the prefill the bottleneck")
    b = s["100g-plain"]["kv_transfer_breakdown_s"]
    return {"e25": exp["25g-plain"], "e25i": exp["25g-int4"],
            "w": _get(s["25g-plain"], "kv_wire_bytes") * GB,
            "wi": _get(s["25g-int4"], "kv_wire_bytes") * GB,
            "e100": exp["100g-plain"], "e100i": exp["100g-int4"],
            "ser": _get(b, "serialize.mean") * MS, "slow": exp["100g-slow-codec"] / MS,
            "b25": exp["25g-batch"], "rpb": s["25g-batch"]["kv_requests_per_batch"]}



def _attention_dp(s, _req):
    a, b = s["tp8"], s["tp1-dp8"]
    _claim(b["meets_slo"] and not a["meets_slo"], "attention-dp",
           "TP1 x DP8 meets the SLO where TP8 runs out of KV")
    return {"kv_a": _get(a, "kv_capacity_tokens.mixed") / 1e6,
            "kv_b": _get(b, "kv_capacity_tokens.mixed") / 1e6,
            "ttft_a": _get(a, "ttft_s.p50"), "ttft_b": _get(b, "ttft_s.p50"),
            "tpot_a": _get(a, "tpot_s.p50") * MS, "tpot_b": _get(b, "tpot_s.p50") * MS,
            "att_a": a["slo_attainment"], "att_b": b["slo_attainment"]}


ROWS = [
    Row("precision-prefill-fp8", "prefill bf16 → fp8 (Llama-3.1-70B, H100 TP4)",
        "TTFT p50 {p50_a:.3f} → {p50_b:.3f} s, p99 {p99_a:.2f} → {p99_b:.2f} s; "
        "TPOT unchanged ({tpot:.4f} s)", _precision_prefill),
    Row("precision-decode-kv", "A100 decode bf16 → fp8 weights → + fp8 KV",
        "TPOT p50 {tpot0:.1f} → {tpot1:.1f} → {tpot2:.1f} ms; decode KV occupancy "
        "{occ0:.0%} → {occ1:.0%} → {occ2:.0%}; wire bytes {wire0:.0f} → {wire2:.0f} GB",
        _precision_decode),
    Row("kv-conversion", "fp8 KV (H100) → bf16 / 32-token pages (A100)",
        "convert on decode: wire {wire_a:.0f} → {wire_b:.0f} GB, exposed transfer {exp_a:.0f} → "
        "{exp_b:.0f} ms, {conv_dec:.2f} s of decode time; on prefill: {conv_pre:.2f} s of "
        "prefill time", _kv_conversion),
    Row("transfer-engine", "same 100 GbE NICs, RDMA vs TCP",
        "exposed transfer {exp_a:.0f} → {exp_b:.0f} ms; TPOT p99 {tpot_a:.1f} → {tpot_b:.1f} ms; "
        "bottleneck becomes transfer-bound", _transfer_engine),
    Row("transfer-mode", "whole vs layer-wise, local 8x400G vs remote 25 GbE",
        "local: exposed {local_a:.1f} ms → {local_b:.1f} ms (hidden); remote: {remote_a:.2f} → "
        "{remote_b:.2f} s (mostly exposed)", _transfer_mode),
    Row("handoff", "pull vs push, decode memory-bound",
        "push: prefill-held KV {held_a:.0%} → {held_b:.0%}, TTFT p50 {ttft_a:.2f} → "
        "{ttft_b:.2f} s", _handoff),
    Row("kv-offload", "reserve / recompute / swap over PCIe5 / swap over 25 GbE",
        "preemptions {pre0} / {pre1} / {pre2} / {pre3}; device time {dev1:.2f} s recompute vs "
        "{dev2:.2f} s swap (PCIe5) vs {dev3:.1f} s swap (slow); TPOT p99 {tpot0:.1f} / "
        "{tpot1:.1f} / {tpot2:.1f} / {tpot3:.1f} ms", _kv_offload),
    Row("prefix-cache", "none / 50% hits in HBM / in host DRAM",
        "TTFT p50 {ttft0:.0f} / {ttft1:.0f} / {ttft2:.0f} ms; SLO attainment {att_a:.0%} → "
        "{att_b:.0%}", _prefix_cache),
    Row("cross-site-prfaas", "local only / all prefill remote / length-threshold (4096)",
        "SLO attainment {att0:.0%} / {att1:.0%} / {att2:.0%}; cross-site bytes {xs_a:.0f} → "
        "{xs_b:.0f} GB", _cross_site),
    Row("kv-serialization", "cross-site TCP at 25 / 100 GbE: plain, int4, batched, both; a "
        "1 GB/s codec",
        "int4: wire {w:.0f} → {wi:.0f} GB, exposed transfer {e25:.0f} → {e25i:.0f} ms "
        "(25 GbE), {e100:.0f} → {e100i:.0f} ms (100 GbE, {ser:.0f} ms of it host "
        "serialization); the slow codec: {slow:.2f} s, prefill-bound; batching costs its "
        "window ({e25:.0f} → {b25:.0f} ms at {rpb:.2f} requests per batch)", _kv_serialization),
    Row("routing", "round-robin / least-loaded / kv-aware on H100 + A100 decode",
        "TPOT p99 {tpot0:.1f} / {tpot1:.1f} / {tpot2:.1f} ms; KV occupancy H100/A100 "
        "{h_a:.0%}/{a_a:.0%} → {h_b:.0%}/{a_b:.0%}", _routing),
    Row("attention-dp", "Kimi-K2.5 (MLA) on 8 B200: TP8 vs TP1 x DP8 attention, EP8",
        "KV capacity {kv_a:.1f}M → {kv_b:.1f}M tokens; TTFT p50 {ttft_a:.2f} → {ttft_b:.2f} s; "
        "TPOT p50 {tpot_a:.1f} → {tpot_b:.1f} ms; SLO attainment {att_a:.0%} → {att_b:.0%} "
        "(TP8 runs out of KV)", _attention_dp),
]


# --- the faults section -------------------------------------------------------------------------
# Prose with its numbers from the shipped fault scenarios' runs; wording that states a fact
# ("nothing fails", "costs nothing a client sees") is a claim checked against the run.
def _runs(name: str):
    """(the scenario, {placement: summary}) of ``scenarios/faults/<name>.yaml``."""
    r = hetsim.run(FAULTS / f"{name}.yaml")
    return r.scenario, {s["name"]: s for s in r.summaries}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


DECODE_CRASH = """\
| placement | SLO attainment | during the fault | TPOT p99 | requests retried | tokens recomputed |
|---|---|---|---|---|---|
{rows}

Four decode instances carry the load with room to spare until one dies: the three left run
batches a third larger, TPOT passes the target, and attainment among the requests arriving
during the outage falls to {window:.0f}%. The requests on the dead instance lose their KV ({lost:.0f}k
tokens re-prefilled), yet nothing fails. With a fifth decode instance (N+1, ${extra:.0f}/h more)
the same crash costs nothing a client sees."""


def decode_crash() -> str:
    sc, r = _runs("decode-crash")
    plain, n, n1 = r["4d-no-fault"], r["4d-decode-crash"], r["5d-decode-crash"]
    here = "faults-decode-crash"
    _claim(plain["meets_slo"] and not n["meets_slo"] and n1["meets_slo"], here,
           "four decode instances meet the SLO until one dies; five meet it through the crash")
    _claim(n["tpot_s"]["p99"] > sc.slo.tpot_s > n1["tpot_s"]["p99"], here, "TPOT passes the target")
    _claim(n["requests_failed"] == n1["requests_failed"] == 0, here, "nothing fails")
    _claim(n1["fault_windows"]["slo_attainment"] >= 0.99, here,
           "the same crash costs nothing a client sees (N+1)")

    def row(label, s, missed=""):
        f = s.get("fault_windows")
        cells = [label, f"{_pct(s['slo_attainment'])}{missed}",
                 _pct(f["slo_attainment"]) if f else "-", f"{1000 * s['tpot_s']['p99']:.1f} ms",
                 f"{s['requests_retried']}" if f else "-",
                 f"{s['recomputed_tokens']:,}" if f else "-"]
        return "| " + " | ".join(cells) + " |"
    rows = "\n".join([row("4 decode, no fault", plain),
                      row("4 decode, decode/0 crashes", n, " (missed)"),
                      row("5 decode (N+1), decode/0 crashes", n1)])
    return DECODE_CRASH.format(
        rows=rows, window=100 * n["fault_windows"]["slo_attainment"],
        lost=n["recomputed_tokens"] / 1000,
        extra=n1["cost_per_hour_usd"] - n["cost_per_hour_usd"])


FLAKY = """\
`scenarios/faults/flaky-cross-site.yaml` runs a PrfaaS layout (long prompts prefill on a
remote H100, their KV crosses one shared 100 GbE link) with the link healthy, down for 2 s
every 10 s, or at a quarter of its bandwidth for 5 s every 10 s: SLO attainment
{att}, TTFT p99 {ttft} s. A short outage costs less than a longer
slowdown here: the one transfer caught by an outage is sent again, the others wait it out,
while a slow link holds every long prompt's KV for four times as long."""


def flaky_cross_site() -> str:
    _, r = _runs("flaky-cross-site")
    runs = ok, down, slow = r["healthy"], r["down-2s-every-10s"], r["quarter-5s-every-10s"]
    here = "faults-flaky-cross-site"
    _claim(ok["slo_attainment"] > down["slo_attainment"] > slow["slo_attainment"]
           and ok["ttft_s"]["p99"] < down["ttft_s"]["p99"] < slow["ttft_s"]["p99"], here,
           "a short outage costs less than a longer slowdown")
    _claim(down["transfers_retried"] == 1 and slow["transfers_retried"] == 0, here,
           "the one transfer caught by an outage is sent again")
    _claim(down["recomputed_tokens"] == slow["recomputed_tokens"] == 0, here,
           "(nothing recomputed: the prefill side still owns the KV)")
    return FLAKY.format(att=" / ".join(_pct(s["slo_attainment"]) for s in runs),
                        ttft=" / ".join(f"{s['ttft_s']['p99']:.2f}" for s in runs))


SLOW = """\
`scenarios/faults/slow-decode.yaml` slows decode/0 to half speed for 20 s at peak load (the
3 prefill + 4 decode cluster above, 40 req/s), against the same instance crashing for those
20 s: SLO attainment {att} ({during} among the requests arriving
during the fault), TPOT p99 {tpot} ms. The slow instance stays up, so nothing
moves and nothing is recomputed, but the requests decoding on it take twice as long per
token and miss the TPOT target (least-loaded routing sends it less as its work backs up).
The crash moves its requests ({moved} retried, {lost:.0f}k tokens recomputed) and loads the other three
past the target, so more of the window misses."""


def slow_decode() -> str:
    sc, r = _runs("slow-decode")
    runs = plain, slow, dead = r["no-fault"], r["decode-0-half-speed"], r["decode-0-crash"]
    here = "faults-slow-decode"
    _claim(slow["availability"]["decode"] == 1.0 and slow["requests_retried"] == 0
           and slow["recomputed_tokens"] == 0, here,
           "the slow instance stays up, so nothing moves and nothing is recomputed")
    _claim(slow["tpot_s"]["p99"] > sc.slo.tpot_s > plain["tpot_s"]["p99"], here,
           "the requests decoding on it miss the TPOT target")
    _claim(slow["fault_windows"]["slo_attainment"] > dead["fault_windows"]["slo_attainment"],
           here, "more of the window misses (crash)")
    return SLOW.format(
        att=" / ".join(_pct(s["slo_attainment"]) for s in runs),
        during=" / ".join(_pct(s["fault_windows"]["slo_attainment"]) for s in (slow, dead)),
        tpot=" / ".join(f"{1000 * s['tpot_s']['p99']:.1f}" for s in runs),
        moved=dead["requests_retried"], lost=dead["recomputed_tokens"] / 1000)


MTBF = """\
`scenarios/faults/mtbf-hour.yaml` is an hour of traffic (36,000 requests, 10 req/s) on one
H100 prefill and A100 decode instances that crash at random (MTBF 20 min, MTTR 3 min, the same
draws in both placements). Without faults two decode instances meet the SLO ({plain:.0%}); with
them decode availability is {avail}, {moved} requests are moved and {lost:.0f}k tokens
recomputed, and attainment falls to {att2} ({win2} among the requests arriving while one
is down). Three (N+1) keep {att3} ({win3} during faults). Nothing fails: each request finds
a live instance within its retry limit."""


def mtbf_hour() -> str:
    _, r = _runs("mtbf-hour")
    two, three = r["2-decode"], r["3-decode"]
    (plain,) = hetsim.run(FAULTS / "mtbf-hour.yaml", ["2-decode"],
                          overrides={"faults": None}).summaries
    here = "faults-mtbf-hour"
    _claim(plain["meets_slo"] and not two["meets_slo"] and three["meets_slo"], here,
           "two decode instances meet the SLO without faults, not with them; three do")
    _claim(two["requests_failed"] == three["requests_failed"] == 0, here, "Nothing fails")
    return MTBF.format(
        plain=plain["slo_attainment"], avail=_pct(two["availability"]["decode"]),
        moved=two["requests_retried"], lost=two["recomputed_tokens"] / 1000,
        att2=_pct(two["slo_attainment"]), win2=_pct(two["fault_windows"]["slo_attainment"]),
        att3=_pct(three["slo_attainment"]), win3=_pct(three["fault_windows"]["slo_attainment"]))


HOST_RESTORE = """\
`scenarios/faults/host-restore.yaml` crashes decode/0 as above (the same 4,000 requests) with
the decode pool's `kv_offload` as the engine's swap space, as a write-through store beside
the engine (256-token chunks) that survives the crash, and as that store on a node that dies
with it (`host: lost`). With the store, {restored} of the {moved} requests moved are restored
({gb:.1f} GB read back over the NICs) and only their tails are recomputed: {tail:,} tokens
instead of {full:,}. They decode again {back1:.2f} s after the crash on average (the crashed
node's one NIC carries every copy) where re-prefilling took {back0:.2f} s, and the re-prefills
no longer queue on the prefill pool, so TTFT p99 falls
from {ttft0:.2f} s to {ttft1:.2f} s; SLO attainment stays where it was ({att0} / {att1}),
since what misses is TPOT on the three survivors, which a restore does not relieve (its
requests rejoin them sooner). A lost host is the recompute run exactly: the writes
({wgb:.0f} GB, about {rate:.1f} GB/s per instance) are assumed to overlap compute."""


def host_restore() -> str:
    here = "faults-host-restore"
    result = hetsim.run(FAULTS / "host-restore.yaml")
    sc, r = result.scenario, {s["name"]: s for s in result.summaries}
    plain, wt, lost = r["recompute"], r["write-through"], r["write-through-host-lost"]
    # the requests the crash moved: decoding on decode/0 at the crash, re-prefilled after it
    (crash,) = sc.placements["recompute"].faults
    df = result.requests.set_index("id")
    rc, w = (df[df["placement"] == p] for p in ("recompute", "write-through"))
    moved = rc.index[(rc["arrival_s"] < crash.at_s) & (rc["prefill_start_s"] >= crash.at_s)]
    back0, back1 = ((g.loc[moved, "decode_start_s"] - crash.at_s).mean() for g in (rc, w))
    _claim(len(moved) == wt["requests_restored"] and back1 < back0, here,
           "they decode again sooner")
    keys = ("slo_attainment", "ttft_s", "tpot_s", "recomputed_tokens", "requests_retried")
    _claim(all(plain[k] == lost[k] for k in keys) and lost["requests_restored"] == 0, here,
           "a lost host is the recompute run exactly")
    _claim(0 < wt["requests_restored"] <= wt["requests_retried"] == plain["requests_retried"]
           and wt["recomputed_tokens"] < plain["recomputed_tokens"], here,
           "only their tails are recomputed")
    _claim(wt["ttft_s"]["p99"] < plain["ttft_s"]["p99"], here, "TTFT p99 falls")
    _claim(abs(wt["slo_attainment"] - plain["slo_attainment"]) < 0.005, here,
           "SLO attainment stays where it was")
    _claim(wt["tpot_s"]["p99"] > sc.slo.tpot_s and max(wt["ttft_s"]["p99"], plain["ttft_s"]["p99"]) < 1,
           here, "what misses is TPOT")
    span = wt["duration_s"] * sc.placements["write-through"].pools["decode"].instances
    return HOST_RESTORE.format(
        restored=wt["requests_restored"], moved=wt["requests_retried"],
        gb=wt["kv_bytes_restored"] / 1e9, tail=wt["recomputed_tokens"], back0=back0,
        back1=back1,
        full=plain["recomputed_tokens"], ttft0=plain["ttft_s"]["p99"],
        ttft1=wt["ttft_s"]["p99"], att0=_pct(plain["slo_attainment"]),
        att1=_pct(wt["slo_attainment"]), wgb=wt["kv_bytes_written_through"] / 1e9,
        rate=wt["kv_bytes_written_through"] / 1e9 / span)


def check_resilience() -> str:
    """What ``hetsim check examples/ci/resilience.yaml`` prints, fenced."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli(["check", str(CHECKS)])
    _claim(rc == 0, "check-resilience", "every run passes")
    lines = [line.rstrip() for line in out.getvalue().strip().splitlines()]
    return "\n".join(["```", "$ hetsim check examples/ci/resilience.yaml", *lines, "```"])


# --- the regions ---------------------------------------------------------------------------------
def quickstart_block() -> str:
    """What ``hetsim run scenarios/quickstart.yaml`` prints, fenced."""
    result = hetsim.run(QUICKSTART)
    return "```\n" + format_table(result.summaries, title=run_title(result)) + "\n```"


def design_space_row(row: Row) -> str:
    result = hetsim.run(DESIGN_SPACE / f"{row.scenario}.yaml")
    by_name = {s["name"]: s for s in result.summaries}
    what = row.template.format(**row.figures(by_name, result.requests))
    return f"| `{row.scenario}` | {row.placements} | {what} |"


def design_space_table() -> str:
    shipped = sorted(p.stem for p in DESIGN_SPACE.glob("*.yaml"))
    rowed = sorted(r.scenario for r in ROWS)
    if shipped != rowed:
        raise StaleProse(f"scenarios/design-space has {shipped}, the README rows cover "
                         f"{rowed}: add or remove a Row in benchmarks/readme_figures.py")
    return "\n".join(["| scenario | placements | what changes |", "|---|---|---|"]
                     + [design_space_row(r) for r in ROWS])


REGIONS = {"quickstart": quickstart_block, "design-space": design_space_table,
           "faults-decode-crash": decode_crash, "faults-flaky-cross-site": flaky_cross_site,
           "faults-slow-decode": slow_decode, "faults-mtbf-hour": mtbf_hour,
           "faults-host-restore": host_restore,
           "check-resilience": check_resilience}


def replace_region(text: str, name: str, body: str) -> str:
    """``text`` with what lies between ``name``'s two marker lines replaced by ``body``."""
    pat = re.compile(rf"(^<!-- readme_figures:{re.escape(name)} -->\n)(.*?)"
                     rf"(^<!-- /readme_figures:{re.escape(name)} -->$)", re.S | re.M)
    found = pat.findall(text)
    if len(found) != 1:
        raise ValueError(f"README.md: expected one region 'readme_figures:{name}' (an opening "
                         f"and a closing marker line), found {len(found)}")
    return pat.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)


def expected_readme(text: str | None = None) -> str:
    """README.md (or ``text``) with every generated region regenerated from fresh runs."""
    text = README.read_text(encoding="utf-8") if text is None else text
    for name, make in REGIONS.items():
        text = replace_region(text, name, make())
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 and print a diff when README.md is stale")
    args = ap.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    new = expected_readme(current)
    if args.check:
        if new == current:
            print("README.md figures are current")
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(keepends=True), new.splitlines(keepends=True),
            "README.md", "README.md (regenerated)"))
        print("README.md figures are stale: run `python benchmarks/readme_figures.py`",
              file=sys.stderr)
        return 1
    if new != current:
        write_text_atomic(README, new)
        print("rewrote README.md")
    else:
        print("README.md figures are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())

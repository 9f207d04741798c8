"""Bad input to every command, table-driven (issue 12).

Each case writes some files into an empty folder, plants the user's own files there
(``notes.txt`` and ``out/notes.txt``), runs ``hetsim`` in-process from that folder and checks
README's promise: exit code 2, exactly one line on stderr starting ``hetsim: error:`` that names
the file and the key path (or ``file:row`` and column, or the flag), no traceback, nothing
written and every file that was there untouched (same bytes, same mtime).

Cases start from small valid inputs (checked valid by ``test_bases_are_valid``) changed by text
edits, so each one breaks exactly one thing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hetsim.cli import main

# --- valid starting points ---------------------------------------------------------------------
# A small scenario shaped like scenarios/quickstart.yaml, with 20 requests so that a run that
# wrongly starts is fast. Line numbers matter to the duplicate-key cases:
#   1 name, 2 model, 3 workload, 4 requests, 5 seed, 6 arrival, 7 input_tokens,
#   8 output_tokens, 9 slo, 10 placements, 11 coloc, 14 coloc.pools.mixed, 15 disagg,
#   18 disagg.pools.prefill, 19 disagg.pools.decode, 20 kv_link
BASE = """\
name: t
model: llama-3.1-8b
workload:
  requests: 20
  seed: 1
  arrival: {process: poisson, rate_rps: 12.0}
  input_tokens: {dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}
  output_tokens: {dist: lognormal, mean: 250, sigma: 0.8, max: 1024}
slo: {ttft_s: 0.5, tpot_s: 0.03, attainment: 0.9}
placements:
  coloc:
    router: least-loaded
    pools:
      mixed: {role: mixed, accelerator: h100-sxm, instances: 2, tp: 1, max_batch_tokens: 2048}
  disagg:
    router: least-loaded
    pools:
      prefill: {role: prefill, accelerator: h100-sxm, instances: 1, tp: 1}
      decode: {role: decode, accelerator: a100-sxm, instances: 1, tp: 1}
    kv_link: roce-400g
"""
WORKLOAD = BASE[BASE.index("workload:"):BASE.index("slo:")]


def sub(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (an edit that must apply)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def pool(text: str, name: str, old: str, new: str) -> str:
    """Edit one field inside the flow mapping of pool ``name`` (mixed, prefill or decode)."""
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{name}: {{"))
    return sub(text, line, sub(line, old, new))


# A trace replay: lines 2.. of t.csv are rows 1..
TRACE_SC = sub(BASE, WORKLOAD, "workload:\n  trace: t.csv\n")
TRACE_HEAD = "timestamp_s,input_tokens,output_tokens\n"
TRACE = TRACE_HEAD + "0,100,10\n0.5,200,20\n1.0,300,30\n"

# Input lengths from an empirical histogram.
HIST_SC = sub(BASE, "{dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}",
              "{dist: empirical, file: h.csv}")
HIST = "tokens,weight\n100,1\n200,3\n"

# A Hugging Face config.json (Llama-3.1-8B's architecture).
HF = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
      "num_key_value_heads": 8, "num_hidden_layers": 32, "intermediate_size": 14336,
      "vocab_size": 128256, "max_position_embeddings": 131072}
HF_SC = sub(BASE, "model: llama-3.1-8b", "model: config.json")


def hf(**changes) -> str:
    d = {**HF, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...})


# A plan for `hetsim check`: the scenario plus a top-level expect block (lines 21-22).
CHECK = BASE + "expect:\n  slo_attainment: {min: 0.0}\n"
BASELINE = {"scenario": "t", "tolerance": 0.05,
            "placements": {"coloc": {"goodput_rps": 1.0}, "disagg": {"goodput_rps": 1.0}}}

# A plan spec for `hetsim plan`, small enough to run in seconds.
PLAN = """\
name: p
model: llama-3.1-8b
workload:
  requests: 20
  seed: 5
  arrival: {process: poisson, rate_rps: 5.0}
  input_tokens: {dist: lognormal, mean: 512, sigma: 0.5, max: 2048}
  output_tokens: {dist: lognormal, mean: 64, sigma: 0.5, max: 256}
slo: {ttft_s: 0.5, tpot_s: 0.03, attainment: 0.9}
target_rps: 5
inventory:
  h100-sxm: {max: 4}
  a100-sxm: {max: 4, price_usd_per_hour: 1.6}
tp: [1, 2]
precisions: [bf16]
interconnects: [roce-400g, roce-100g]
shapes: [colocated, homogeneous-pd]
budget_usd_per_hour: 60
verify: 1
verify_requests: 20
"""

# Timings for `hetsim calibrate --from-csv` (four GEMMs are enough to fit).
CAL_HEAD = "op,precision,m,n,k,seconds\n"
CAL = CAL_HEAD + ("gemm,bf16,1,4096,4096,0.00002\ngemm,bf16,64,4096,4096,0.00003\n"
                  "gemm,bf16,1024,4096,4096,0.0002\ngemm,bf16,4096,4096,4096,0.0012\n")
CALIBRATE = ["calibrate", "--from-csv", "m.csv", "--accelerator", "h100-sxm", "--out", "p.yaml",
             "-q"]

# The user's own files, planted in every case; none may change.
PLANTED = {"notes.txt": "my notes\n", "out/notes.txt": "results I keep\n"}

# --- the cases ---------------------------------------------------------------------------------
CASES = []


def case(id: str, files: dict, argv: list, *expect: str):
    """A bad input: ``files`` to write, ``argv`` to run, substrings the error line must hold."""
    CASES.append(pytest.param(files, argv, expect, id=id))


def scenario(id, text, *expect, cmd=("run", "s.yaml", "--out", "res", "-q"), extra=None):
    """A bad scenario ``s.yaml`` (plus ``extra`` files), by default through ``run --out``."""
    case(id, {"s.yaml": text, **(extra or {})}, list(cmd), *expect)


VALIDATE = ("validate", "s.yaml")
P_MIXED = "placements.coloc.pools.mixed"
P_DECODE = "placements.disagg.pools.decode"

# YAML syntax and structure
scenario("yaml-unclosed-flow", sub(BASE, "kv_link: roce-400g", "kv_link: [roce-400g"),
         "s.yaml: ", "YAML syntax error at line")
scenario("yaml-tab-indent", sub(BASE, "  requests: 20", "\trequests: 20"),
         "s.yaml: ", "YAML syntax error at line 4")
scenario("yaml-bad-indent", sub(BASE, "  seed: 1", "     seed: 1"), "s.yaml: ",
         "YAML syntax error at line", cmd=VALIDATE)
scenario("yaml-python-tag", BASE + "x: !!python/object:os.system {}\n", "s.yaml: ",
         "YAML syntax error at line 21")
scenario("yaml-unknown-anchor", sub(BASE, "kv_link: roce-400g", "kv_link: *nolink"),
         "s.yaml: ", "YAML syntax error at line 20")
scenario("dup-placement", BASE + "  coloc:\n    pools:\n      m: {role: mixed, accelerator: "
         "h100-sxm, instances: 16}\n", "s.yaml: ", "duplicate key 'coloc' at lines 11 and 21")
scenario("dup-pool", sub(BASE, "  disagg:\n", "      mixed: {role: mixed, accelerator: "
                         "h100-sxm}\n  disagg:\n"),
         "s.yaml: ", "duplicate key 'mixed' at lines 14 and 15")
scenario("dup-slo", BASE + "slo: {ttft_s: 50, tpot_s: 5}\n", "s.yaml: ",
         "duplicate key 'slo' at lines 9 and 21")
scenario("dup-slo-validate", BASE + "slo: {ttft_s: 50, tpot_s: 5}\n", "s.yaml: ",
         "duplicate key 'slo' at lines 9 and 21", cmd=VALIDATE)
scenario("dup-model", sub(BASE, "slo:", "model: llama-3.1-70b\nslo:"), "s.yaml: ",
         "duplicate key 'model' at lines 2 and 9")
scenario("dup-flow-key", sub(BASE, "rate_rps: 12.0}", "rate_rps: 12.0, rate_rps: 1}"),
         "s.yaml: ", "duplicate key 'rate_rps' at lines 6 and 6")
scenario("dup-pool-field", pool(BASE, "decode", "tp: 1", "tp: 1, tp: 8"), "s.yaml: ",
         "duplicate key 'tp' at lines 19 and 19")
scenario("empty-file", "", "s.yaml: ", "name: required key is missing")
scenario("comments-only", "# nothing here\n", "s.yaml: ", "name: required key is missing")
scenario("list-not-mapping", "- name: t\n- model: llama-3.1-8b\n", "s.yaml: ",
         "must be a mapping")
scenario("scalar-document", "hello\n", "s.yaml: ", "must be a mapping")
scenario("not-utf8", BASE.encode() + b"# caf\xe9\n", "s.yaml: ",
         "not UTF-8 text: byte 0xe9 at line 21")
scenario("utf16", BASE.encode("utf-16"), "s.yaml: ")
scenario("binary-nul", b"\x00\x01\x02ELF\x00" * 100, "s.yaml: ", "binary file")
scenario("over-10-mib", BASE + "#" + "x" * (10 * 1024 * 1024) + "\n", "s.yaml: ",
         "larger than the 10 MiB limit")
scenario("nested-40-deep", BASE + "x: " + "[" * 40 + "]" * 40 + "\n", "s.yaml: ",
         "nested deeper than 32 levels")
scenario("nested-5000-deep", BASE + "x: " + "[" * 5000 + "]" * 5000 + "\n", "s.yaml: ",
         "line 21", "nest", cmd=VALIDATE)
scenario("yaml-unhashable-key", BASE + "? [a, b]\n: 1\n", "s.yaml: ", "line 21")
scenario("alias-bomb", BASE + "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
    "s.yaml: ", "expands to more than 1,000,000 values")
scenario("control-char-key", BASE + '"evil\\nkey": 1\n', "s.yaml: ", "evil\\nkey: unknown key")
scenario("folder-not-file", "", "sub: ", "is a folder", cmd=("validate", "sub"),
         extra={"sub/notes.txt": "x\n"})
case("scenario-missing", {}, ["run", "nope.yaml", "--out", "res"], "nope.yaml: file not found")
case("scenario-missing-validate", {"s.yaml": BASE}, ["validate", "s.yaml", "nope.yaml"],
     "nope.yaml: file not found")
case("scenario-newline-in-name", {}, ["validate", "a\nb.yaml"], "a\\nb.yaml: file not found")

# Unknown keys and wrong types
scenario("unknown-top-key", BASE + "nmae: x\n", "s.yaml: nmae: unknown key (did you mean 'name'?)")
scenario("unknown-pool-key", pool(BASE, "mixed", "accelerator:", "acclerator:"),
         f"s.yaml: {P_MIXED}.acclerator: unknown key (did you mean 'accelerator'?)")
scenario("unknown-workload-key", sub(BASE, "  seed: 1", "  seeds: 1"),
         "s.yaml: workload.seeds: unknown key (did you mean 'seed'?)")
scenario("unknown-slo-key", sub(BASE, "ttft_s: 0.5", "ttft: 0.5"), "s.yaml: slo.ttft: unknown key")
scenario("unknown-arrival-key", sub(BASE, "rate_rps: 12.0", "rate: 12.0"),
         "s.yaml: workload.arrival.rate: unknown key")
scenario("unknown-placement-key", sub(BASE, "    kv_link:", "    kv_lnk:"),
         "s.yaml: placements.disagg.kv_lnk: unknown key (did you mean 'kv_link'?)")
scenario("requests-a-word", sub(BASE, "requests: 20", "requests: many"),
         "s.yaml: workload.requests: must be an integer, got 'many'")
scenario("instances-a-word", pool(BASE, "decode", "instances: 1", "instances: two"),
         f"s.yaml: {P_DECODE}.instances: must be an integer")
scenario("tp-fraction", pool(BASE, "mixed", "tp: 1", "tp: 1.5"),
         f"s.yaml: {P_MIXED}.tp: must be an integer, got 1.5")
scenario("rate-a-word", sub(BASE, "rate_rps: 12.0", "rate_rps: fast"),
         "s.yaml: workload.arrival.rate_rps: must be a number, got 'fast'")
scenario("slo-a-number", sub(BASE, "slo: {ttft_s: 0.5, tpot_s: 0.03, attainment: 0.9}", "slo: 5"),
         "s.yaml: slo: must be a mapping")
scenario("placements-a-list", BASE[:BASE.index("placements:")] + "placements: [coloc, disagg]\n",
         "s.yaml: placements: must be a mapping")
scenario("pools-a-list", sub(BASE, "    pools:\n      mixed", "    pools:\n      - mixed"),
         "s.yaml: placements.coloc.pools: must be a mapping")
scenario("name-a-list", sub(BASE, "name: t", "name: [t]"), "s.yaml: name: must be a string")
scenario("clip-a-word", sub(BASE, "  seed: 1", "  seed: 1\n  clip_to_context: maybe"),
         "s.yaml: workload.clip_to_context: must be true or false")
scenario("name-missing", sub(BASE, "name: t\n", ""), "s.yaml: name: required key is missing")
scenario("pool-accelerator-missing", pool(BASE, "decode", "accelerator: a100-sxm, ", ""),
         f"s.yaml: {P_DECODE}.accelerator: required key is missing")

# Unknown names and unsupported settings
scenario("unknown-accelerator", pool(BASE, "mixed", "h100-sxm", "h100-sx"),
         f"s.yaml: {P_MIXED}.accelerator: unknown accelerator 'h100-sx' (did you mean")
scenario("unknown-model", sub(BASE, "llama-3.1-8b", "llama-3-70"),
         "s.yaml: model: unknown model 'llama-3-70'")
scenario("unknown-interconnect", sub(BASE, "roce-400g", "roce-40g"),
         "s.yaml: placements.disagg.kv_link: unknown interconnect 'roce-40g'")
scenario("unknown-router", sub(BASE, "  disagg:\n    router: least-loaded",
                               "  disagg:\n    router: least-load"),
         "s.yaml: placements.disagg.router: unknown router 'least-load' (did you mean")
scenario("unknown-stage-router", sub(BASE, "  disagg:\n    router: least-loaded",
                                     "  disagg:\n    router: {prefill: least-loaded, decode: kv}"),
         "s.yaml: placements.disagg.router.decode: unknown router 'kv'")
scenario("unknown-preset", sub(BASE, "  seed: 1", "  seed: 1\n  preset: azure-conv-2024"),
         "s.yaml: workload.preset: unknown preset 'azure-conv-2024' (did you mean")
scenario("unknown-role", pool(BASE, "mixed", "role: mixed", "role: mix"),
         f"s.yaml: {P_MIXED}.role: unknown role 'mix' (did you mean 'mixed'?)")
scenario("unknown-dist", sub(BASE, "dist: lognormal, mean: 250", "dist: lognorm, mean: 250"),
         "s.yaml: workload.output_tokens.dist: unknown distribution 'lognorm'")
scenario("unknown-process", sub(BASE, "process: poisson", "process: poison"),
         "s.yaml: workload.arrival.process: unknown arrival process 'poison' (did you mean")
scenario("unknown-precision", pool(BASE, "decode", "tp: 1}", "tp: 1, precision: bf17}"),
         f"s.yaml: {P_DECODE}.precision: unknown precision 'bf17'")
scenario("unsupported-precision", pool(BASE, "decode", "tp: 1}", "tp: 1, precision: fp8}"),
         f"s.yaml: {P_DECODE}.precision: a100-sxm does not compute in fp8")
scenario("tp-not-power-of-two", pool(BASE, "decode", "tp: 1", "tp: 3"),
         f"s.yaml: {P_DECODE}.tp: must be a power of two, got 3")
scenario("attention-dp-not-power-of-two",
         pool(BASE, "decode", "tp: 1", "tp: 8, attention_dp: 3"),
         f"s.yaml: {P_DECODE}.attention_dp: must be a power of two, got 3")
scenario("attention-dp-over-tp", pool(BASE, "decode", "tp: 1", "tp: 2, attention_dp: 4"),
         f"s.yaml: {P_DECODE}.attention_dp: attention_dp=4 must divide tp=2")
scenario("model-does-not-fit", sub(BASE, "llama-3.1-8b", "llama-3.1-405b"),
         f"s.yaml: {P_MIXED}: pool 'mixed': llama-3.1-405b does not fit")
scenario("colocated-with-kv-link", sub(BASE, "max_batch_tokens: 2048}\n",
                                       "max_batch_tokens: 2048}\n    kv_link: roce-400g\n"),
         "s.yaml: placements.coloc.kv_link: a colocated placement moves no KV")
scenario("no-pools", sub(BASE, "    pools:\n      mixed: {role: mixed, accelerator: h100-sxm, "
                         "instances: 2, tp: 1, max_batch_tokens: 2048}",
                         "    pools: {}"), "s.yaml: placements.coloc.pools: needs at least one")
scenario("no-placements", BASE[:BASE.index("placements:")] + "placements: {}\n",
         "s.yaml: placements: needs at least one placement")
scenario("kv-link-and-transfer", sub(BASE, "kv_link: roce-400g",
                                     "kv_link: roce-400g\n    kv_transfer: {link: roce-100g}"),
         "s.yaml: placements.disagg.kv_link: give kv_link or kv_transfer.link, not both")
scenario("conversion-typo", sub(BASE, "kv_link: roce-400g", "kv_transfer: {conversion: decoed}"),
         "s.yaml: placements.disagg.kv_transfer.conversion: must be one of")

# Numbers out of range
scenario("instances-negative", pool(BASE, "decode", "instances: 1", "instances: -1"),
         f"s.yaml: {P_DECODE}.instances: must be > 0, got -1")
scenario("instances-zero", pool(BASE, "decode", "instances: 1", "instances: 0"),
         f"s.yaml: {P_DECODE}.instances: must be > 0, got 0")
scenario("rate-zero", sub(BASE, "rate_rps: 12.0", "rate_rps: 0"),
         "s.yaml: workload.arrival.rate_rps: must be > 0, got 0")
scenario("rate-nan", sub(BASE, "rate_rps: 12.0", "rate_rps: .nan"),
         "s.yaml: workload.arrival.rate_rps: must be a finite number")
scenario("rate-inf", sub(BASE, "rate_rps: 12.0", "rate_rps: .inf"),
         "s.yaml: workload.arrival.rate_rps: must be a finite number")
scenario("rate-nan-word", sub(BASE, "rate_rps: 12.0", "rate_rps: NaN"),
         "s.yaml: workload.arrival.rate_rps: must be a number, got 'NaN'")
scenario("ttft-negative", sub(BASE, "ttft_s: 0.5", "ttft_s: -0.5"), "s.yaml: slo.ttft_s: ")
scenario("attainment-above-1", sub(BASE, "attainment: 0.9", "attainment: 1.5"),
         "s.yaml: slo.attainment: must be in (0, 1], got 1.5")
scenario("memory-utilization-zero", pool(BASE, "mixed", "tp: 1", "tp: 1, memory_utilization: 0"),
         f"s.yaml: {P_MIXED}.memory_utilization: must be in (0, 1]")
scenario("price-negative", pool(BASE, "mixed", "tp: 1", "tp: 1, price_usd_per_hour: -2"),
         f"s.yaml: {P_MIXED}.price_usd_per_hour: must be > 0")
scenario("seed-negative", sub(BASE, "seed: 1", "seed: -1"),
         "s.yaml: workload.seed: must be >= 0, got -1")
scenario("seed-negative-validate", sub(BASE, "seed: 1", "seed: -1"),
         "s.yaml: workload.seed: must be >= 0, got -1", cmd=VALIDATE)
scenario("seed-fraction", sub(BASE, "seed: 1", "seed: 1.5"),
         "s.yaml: workload.seed: must be an integer, got 1.5")
scenario("seed-a-word", sub(BASE, "seed: 1", "seed: abc"), "s.yaml: workload.seed: must be an")
scenario("requests-zero", sub(BASE, "requests: 20", "requests: 0"),
         "s.yaml: workload.requests: must be > 0, got 0")
scenario("requests-negative", sub(BASE, "requests: 20", "requests: -5"),
         "s.yaml: workload.requests: must be > 0, got -5")
scenario("requests-too-many-for-memory", sub(BASE, "requests: 20", "requests: 1e15"),
         "s.yaml: workload.requests: ", "GB of memory", cmd=VALIDATE)
scenario("requests-inf", sub(BASE, "requests: 20", "requests: 1e400"),
         "s.yaml: workload.requests: must be an integer")
scenario("requests-bool", sub(BASE, "requests: 20", "requests: true"),
         "s.yaml: workload.requests: must be an integer")
scenario("input-fixed-overflow", sub(BASE, "{dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}",
                                     "{dist: fixed, value: 100000000000000000000000}"),
         "s.yaml: workload", cmd=VALIDATE)
scenario("input-normal-overflow", sub(BASE, "{dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}",
                                      "{dist: normal, mean: 100, std: 1e300}"),
         "s.yaml: workload", cmd=VALIDATE)
scenario("input-uniform-huge", sub(BASE, "{dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}",
                                   "{dist: uniform, min: 1, max: 1e30}"),
         "s.yaml: workload.input_tokens", cmd=VALIDATE)
scenario("gamma-cv-huge", sub(BASE, "process: poisson", "process: gamma, cv: 1e300"),
         "s.yaml: workload.arrival.cv")
scenario("hardware-profiles-missing", BASE + "hardware_profiles: [nodir]\n",
         "s.yaml: hardware_profiles", cmd=VALIDATE)
scenario("hardware-profiles-a-file", BASE + "hardware_profiles: [notes.txt]\n",
         "s.yaml: hardware_profiles", cmd=VALIDATE)
scenario("model-yaml-bad-field", sub(BASE, "model: llama-3.1-8b", "model: m.yaml"),
         "m.yaml: ", "num_layers", extra={"m.yaml": "name: m\nnum_layers: 0\n"})
scenario("model-yaml-missing", sub(BASE, "model: llama-3.1-8b", "model: m.yaml"),
         "m.yaml: ", "file not found")
# linear-attention layers (Qwen3.5's Gated DeltaNet)
HYBRID = ("name: m\nnum_layers: 4\nhidden_size: 256\nnum_heads: 4\nffn_size: 512\n"
          "vocab_size: 1000\nlinear_attention: {layers: 3, num_k_heads: 2, head_k_dim: 32, "
          "num_v_heads: 4, head_v_dim: 32}\n")
for id, edit, *expect in [
    ("linear-unknown-key", ("head_v_dim: 32}", "head_v_dim: 32, state_dtyp: fp32}"),
     "m.yaml: linear_attention.state_dtyp: unknown key", "did you mean 'state_dtype'"),
    ("linear-state-dtype", ("head_v_dim: 32}", "head_v_dim: 32, state_dtype: fp8}"),
     "m.yaml: linear_attention.state_dtype: must be one of fp32, bf16, fp16, got 'fp8'"),
    ("linear-kind", ("head_v_dim: 32}", "head_v_dim: 32, kind: mamba2}"),
     "m.yaml: linear_attention.kind: must be one of gdn, got 'mamba2'"),
    ("linear-zero-heads", ("num_v_heads: 4", "num_v_heads: 0"),
     "m.yaml: linear_attention.num_v_heads: must be > 0, got 0"),
    ("linear-missing-heads", ("num_k_heads: 2, ", ""),
     "m.yaml: linear_attention.num_k_heads: required key is missing"),
    ("linear-every-layer", ("layers: 3", "layers: 4"),
     "m.yaml: linear_attention.layers: 4 linear layers of 4: at least one layer must attend"),
    ("linear-and-window-every-layer", ("ffn_size: 512", "ffn_size: 512\n"
                                       "sliding_window: {size: 8, layers: 1}"),
     "m.yaml: linear_attention.layers: 4 windowed and linear layers of 4"),
]:
    scenario(f"model-yaml-{id}", sub(BASE, "model: llama-3.1-8b", "model: m.yaml"), *expect,
             extra={"m.yaml": sub(HYBRID, *edit)})
# a checkpoint whose attention projections are computed in a format the pool's device lacks
# (kimi-k2.5-nvfp4's are bf16; fp4 here, on Hopper), refused at the pool by validate and run
ATTN_FP4 = sub(HYBRID, "linear_attention: {layers: 3, num_k_heads: 2, head_k_dim: 32, "
               "num_v_heads: 4, head_v_dim: 32}\n", "attention_weights: fp4\n")
for id, cmd in (("run", ("run", "s.yaml", "--out", "res", "-q")), ("validate", VALIDATE)):
    scenario(f"model-yaml-attention-weights-unsupported-{id}",
             sub(BASE, "model: llama-3.1-8b", "model: m.yaml"),
             "s.yaml: placements.coloc.pools.mixed.precision: h100-sxm does not compute in fp4",
             "attention_weights", cmd=cmd, extra={"m.yaml": ATTN_FP4})
scenario("lognormal-missing-sigma", sub(BASE, "mean: 1500, sigma: 0.7, ", "mean: 1500, "),
         "s.yaml: workload.input_tokens.sigma: lognormal needs sigma")
scenario("uniform-min-over-max", sub(BASE, "{dist: lognormal, mean: 250, sigma: 0.8, max: 1024}",
                                     "{dist: uniform, min: 50, max: 10}"),
         "s.yaml: workload.output_tokens.min: min 50 > max 10")
scenario("quantiles-falling", sub(BASE, "{dist: lognormal, mean: 250, sigma: 0.8, max: 1024}",
                                  "{dist: quantiles, quantiles: [[0, 9], [0.5, 5], [1, 20]]}"),
         "s.yaml: workload.output_tokens.quantiles[1]: p must rise and tokens must not fall")
scenario("closed-without-concurrency", sub(BASE, "process: poisson, rate_rps: 12.0",
                                           "process: closed"),
         "s.yaml: workload.arrival.concurrency: closed loop needs concurrency")
# closed-loop ramp and warm-up (issue 15 §2)
CLOSED = sub(BASE, "process: poisson, rate_rps: 12.0", "process: closed, concurrency: 4")
scenario("ramp-negative", sub(CLOSED, "concurrency: 4", "concurrency: 4, ramp_s: -1"),
         "s.yaml: workload.arrival.ramp_s: must be in [0, 1e+09], got -1")
scenario("ramp-open-loop", sub(BASE, "rate_rps: 12.0", "rate_rps: 12.0, ramp_s: 5"),
         "s.yaml: workload.arrival.ramp_s: ramp_s does not apply to poisson arrivals")
scenario("warmup-both", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {requests: 2, seconds: 1}"),
         "s.yaml: workload.warmup.seconds: give requests or seconds, not both")
scenario("warmup-empty", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {}"),
         "s.yaml: workload.warmup: needs requests: N or seconds: S")
scenario("warmup-requests-zero", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {requests: 0}"),
         "s.yaml: workload.warmup.requests: must be > 0, got 0")
scenario("warmup-requests-fraction", sub(BASE, "  seed: 1",
                                         "  seed: 1\n  warmup: {requests: 2.5}"),
         "s.yaml: workload.warmup.requests: must be an integer")
scenario("warmup-seconds-negative", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {seconds: -3}"),
         "s.yaml: workload.warmup.seconds: must be > 0, got -3")
scenario("warmup-unknown-key", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {request: 3}"),
         "s.yaml: workload.warmup.request: unknown key (did you mean 'requests'?)")
scenario("warmup-all-requests", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {requests: 20}"),
         "s.yaml: workload.warmup.requests: warm-up of 20 requests leaves none of the 20 "
         "measured", cmd=VALIDATE)
scenario("warmup-past-the-last-arrival", sub(BASE, "  seed: 1",
                                             "  seed: 1\n  warmup: {seconds: 1000}"),
         "s.yaml: workload.warmup.seconds: every request arrives before the 1000 s warm-up ends")
scenario("warmup-seconds-goodput", sub(BASE, "  seed: 1", "  seed: 1\n  warmup: {seconds: 1}"),
         "s.yaml: workload.warmup.seconds: goodput search varies the arrival rate",
         cmd=("goodput", "s.yaml", "-q"))
scenario("over-context", sub(BASE, "{dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}",
                             "{dist: fixed, value: 200000}"),
         "s.yaml: workload: 20 of 20 requests are longer than llama-3.1-8b's 131072-token "
         "context", "clip_to_context")
scenario("over-context-validate", sub(BASE, "{dist: lognormal, mean: 1500, sigma: 0.7, max: 8192}",
                                      "{dist: fixed, value: 131000}"),
         "s.yaml: workload: ", "131072-token context", cmd=VALIDATE)

# Traces: file:row and column
TRACE_RUN = ("run", "s.yaml", "--out", "res", "-q")


def trace(id, csv, *expect, text=TRACE_SC, cmd=TRACE_RUN):
    files = {"s.yaml": text}
    if csv is not None:
        files["t.csv"] = csv
    case(id, files, list(cmd), *expect)


trace("trace-missing", None, "s.yaml: workload.trace: file not found")
trace("trace-missing-column", "timestamp_s,input_tokens\n0,100\n", "t.csv: ",
      "missing output_tokens")
trace("trace-nan", TRACE + "1.5,nan,10\n",
      "t.csv:5: input_tokens: must be a whole number from 1 to 2147483647, got 'nan'")
trace("trace-negative-tokens", TRACE + "1.5,100,-10\n",
      "t.csv:5: output_tokens: must be a whole number from 1 to 2147483647, got '-10'")
trace("trace-fraction-tokens", TRACE + "1.5,3.5,10\n",
      "t.csv:5: input_tokens: must be a whole number from 1 to 2147483647, got '3.5'")
trace("trace-zero-tokens", TRACE_HEAD + "0,0,10\n", "t.csv:2: input_tokens: ", "got '0'")
trace("trace-empty-cell", TRACE_HEAD + "0,100,\n", "t.csv:2: output_tokens: ", "got ''")
trace("trace-word", TRACE_HEAD + "0,100,ten\n", "t.csv:2: output_tokens: ", "got 'ten'")
trace("trace-inf-tokens", TRACE_HEAD + "0,inf,10\n", "t.csv:2: input_tokens: ")
trace("trace-negative-time", TRACE_HEAD + "-1,100,10\n",
      "t.csv:2: timestamp_s: must be a number >= 0, got '-1'")
trace("trace-nan-time", TRACE + "NaN,100,10\n", "t.csv:5: timestamp_s: ")
trace("trace-huge-time", TRACE_HEAD + "1e400,100,10\n", "t.csv:2: timestamp_s: ")
trace("trace-out-of-order", TRACE + "0.7,100,10\n", "t.csv:5: timestamp_s: ",
      "timestamps go back in time")
trace("trace-empty", "", "t.csv: ", "empty")
trace("trace-header-only", TRACE_HEAD, "t.csv: ", "has a header but no rows")
trace("trace-ragged-row", TRACE + "2,100,10,7,8\n", "t.csv: ", "line 5")
trace("trace-binary", b"\x00\x01\xff\xfe" * 64, "t.csv: ")
trace("trace-not-utf8", (TRACE + "2,100,10 # caf\xe9\n").encode("latin-1"), "t.csv")
case("trace-folder", {"s.yaml": sub(TRACE_SC, "t.csv", "tr"), "tr/notes.txt": "x\n"},
     ["validate", "s.yaml"], "workload.trace: ", "tr")
trace("trace-fewer-rows-than-requests", TRACE, "s.yaml: workload.requests: ", "10",
      "3 rows", text=sub(TRACE_SC, "  trace: t.csv", "  trace: t.csv\n  requests: 10"))
trace("trace-over-context", TRACE_HEAD + "0,200000,10\n", "s.yaml: workload: ",
      "131072-token context")
trace("trace-in-arrival-nan", TRACE + "1.5,nan,10\n", "t.csv:5: input_tokens: ",
      text=sub(BASE, "{process: poisson, rate_rps: 12.0}", "{trace: t.csv}"))
trace("trace-validate", TRACE + "1.5,3.5,10\n", "t.csv:5: input_tokens: ", cmd=VALIDATE)
trace("trace-int64-overflow", TRACE_HEAD + "0,1e30,1\n", "t.csv:2: input_tokens: ", cmd=VALIDATE)
trace("trace-duplicate-column", "timestamp_s,input_tokens,output_tokens,input_tokens\n0,1,1,5\n",
      "t.csv:1: ", "input_tokens", cmd=VALIDATE)
trace("goodput-trace-workload", TRACE, "s.yaml: workload", cmd=("goodput", "s.yaml", "-q"))

# Empirical histograms
hist = [
    ("hist-negative-weight", HIST + "300,-1\n", "h.csv:4: weight: must be a number >= 0, got '-1'"),
    ("hist-zero-weights", "tokens,weight\n100,0\n200,0\n", "h.csv: weights sum to 0"),
    ("hist-fraction-tokens", HIST + "2.5,1\n", "h.csv:4: tokens: must be a whole number from 1 to"),
    ("hist-nan-weight", HIST + "300,nan\n", "h.csv:4: weight: "),
    ("hist-missing-column", "tokens\n100\n", "h.csv: ", "missing weight"),
]
for id, csv, *expect in hist:
    scenario(id, HIST_SC, *expect, extra={"h.csv": csv})
scenario("hist-missing-file", HIST_SC, "s.yaml: workload.input_tokens.file: file not found")

# Hugging Face config.json as the model
for id, cfg, *expect in [
    ("hf-not-json", '{"hidden_size": 4096,', "config.json: ", "not JSON", "line 1"),
    ("hf-empty", "", "config.json: ", "not JSON"),
    ("hf-list", "[1, 2]", "config.json: ", "a Hugging Face config.json is a JSON object"),
    ("hf-duplicate-key", hf()[:-1] + ', "hidden_size": 8192}',
     "config.json: ", "duplicate key 'hidden_size'"),
    ("hf-missing-hidden-size", hf(hidden_size=...), "config.json: ", "hidden_size"),
    ("hf-string-int", hf(hidden_size="4096"), "config.json: ", "hidden_size",
     "must be a whole number >= 1, got '4096'"),
    ("hf-zero-layers", hf(num_hidden_layers=0), "config.json: ", "num_hidden_layers"),
    ("hf-nan", hf()[:-1] + ', "rope_theta": NaN}', "config.json: ", "NaN"),
    ("hf-heads-not-multiple", hf(num_key_value_heads=5), "config.json: ", "num_kv_heads"),
    ("hf-string-kv-heads", hf(num_key_value_heads="8"), "config.json: ",
     "num_key_value_heads"),
    ("hf-binary", b"\x00\x00\x00", "config.json: ", "binary file"),
    ("hf-quantization-ignore-not-a-list",
     hf(num_local_experts=4, num_experts_per_tok=2,
        quantization_config={"quant_method": "modelopt", "quant_algo": "NVFP4", "ignore": 5}),
     "config.json: quantization_config.ignore: must be a list of module names, got 5"),
    ("hf-linear-missing-dims", hf(layer_types=["linear_attention"] + ["full_attention"] * 31),
     "config.json: ", "missing key (one of linear_num_key_heads)"),
    ("hf-linear-state-dtype", hf(layer_types=["linear_attention"] + ["full_attention"] * 31,
                                 linear_num_key_heads=2, linear_key_head_dim=32,
                                 linear_num_value_heads=4, linear_value_head_dim=32,
                                 mamba_ssm_dtype="float8"),
     "config.json: mamba_ssm_dtype: must be one of float32, bfloat16, float16, got 'float8'"),
    ("hf-attention-gate-string", hf(attn_output_gate="false"),
     "config.json: attn_output_gate: must be true or false, got 'false'"),
    ("hf-linear-state-dtype-list", hf(layer_types=["linear_attention"] + ["full_attention"] * 31,
                                      linear_num_key_heads=2, linear_key_head_dim=32,
                                      linear_num_value_heads=4, linear_value_head_dim=32,
                                      mamba_ssm_dtype=["float32"]),
     "config.json: mamba_ssm_dtype: must be one of float32, bfloat16, float16, got ['float32']"),
]:
    scenario(id, HF_SC, *expect, extra={"config.json": cfg})
scenario("hf-missing-file", HF_SC, "config.json: ", "not found")
scenario("hf-a-folder", HF_SC, "config.json: ", "is a folder",
         extra={"config.json/notes.txt": "x\n"})

# `hetsim check`: expect blocks and baselines
CHECK_RUN = ("check", "c.yaml", "--junit", "r.xml")


def check(id, text, *expect, files=None, cmd=CHECK_RUN):
    """A bad plan ``c.yaml`` (None: no such file) or other ``files`` for ``hetsim check``."""
    own = {} if text is None else {"c.yaml": text}
    case(id, {**own, **(files or {})}, list(cmd), *expect)


BOUND = "slo_attainment: {min: 0.0}"
check("expect-min-over-max", sub(CHECK, BOUND, "slo_attainment: {min: 0.9, max: 0.1}"),
      "c.yaml: expect.slo_attainment.min: min 0.9 > max 0.1")
check("expect-no-bounds", sub(CHECK, BOUND, "slo_attainment: {}"),
      "c.yaml: expect.slo_attainment", "needs min or max")
check("expect-bound-a-word", sub(CHECK, BOUND, "slo_attainment: {min: high}"),
      "c.yaml: expect.slo_attainment.min: must be a number")
check("expect-bound-unknown-key", sub(CHECK, BOUND, "slo_attainment: {mni: 0.9}"),
      "c.yaml: expect.slo_attainment.mni: unknown key (did you mean 'min'?)")
check("expect-a-list", sub(CHECK, "  " + BOUND, "  - slo_attainment"),
      "c.yaml: expect: must be a mapping")
check("expect-placement-bad", sub(CHECK, "    kv_link: roce-400g\n",
                                  "    kv_link: roce-400g\n    expect: {goodput_rps: {max: "
                                  "nan}}\n"),
      "c.yaml: placements.disagg.expect.goodput_rps.max: ")
check("expect-unknown-metric", sub(CHECK, BOUND, "goodput: {min: 1}"),
      "c.yaml: expect.goodput: unknown metric 'goodput' (did you mean 'goodput_rps'?)")
check("check-seed-negative", sub(CHECK, "seed: 1", "seed: -1"),
      "c.yaml: workload.seed: must be >= 0")
check("check-binary-plan", b"\x7fELF\x00\x00" * 50, "c.yaml: ", "binary file")
check("check-plan-missing", None, "c.yaml: file not found")
check("check-dup-expect", CHECK + "expect: {ttft_s.p99: {max: 0.5}}\n",
      "c.yaml: ", "duplicate key 'expect' at lines 21 and 23")
check("check-non-numeric-metric", sub(CHECK, BOUND, "bottleneck: {min: 0}"),
      "c.yaml: expect.bottleneck: ")
check("check-update-baseline-bad-plan", sub(CHECK, "seed: 1", "seed: -1"),
      "c.yaml: workload.seed: ", cmd=("check", "c.yaml", "--update-baseline"))
check("check-trace-bad", TRACE_SC + "expect:\n  " + BOUND + "\n",
      "t.csv:2: timestamp_s: ", files={"t.csv": TRACE_HEAD + "-3,1,1\n"})

# resilience: (hetsim.resilience), shared with plan
RES = CHECK + "resilience: {survive: 1}\n"
for id, old, new, expect in [
    ("resilience-survive-2", "survive: 1", "survive: 2", "survive: must be 1, got 2"),
    ("resilience-unknown-key", "survive: 1", "surviv: 1",
     "surviv: unknown key (did you mean 'survive'?)"),
    ("resilience-a-list", "{survive: 1}", "[1]", ": must be a mapping"),
    ("resilience-factor-over-1", "survive: 1", "cross_site_factor: 1.5",
     "cross_site_factor: must be in (0, 1), got 1.5"),
    ("resilience-factor-a-word", "survive: 1", "cross_site_factor: low",
     "cross_site_factor: must be a number"),
    ("resilience-factor-one-site", "survive: 1", "cross_site_factor: 0.25",
     "cross_site_factor: no placement has pools on two sites"),
]:
    check(id, sub(RES, old, new), "c.yaml: resilience" + ("." if expect[0] != ":" else "")
          + expect)
for id, setting, expect in [
    ("resilience-set-survive", "resilience.survive=2", "resilience.survive: must be 1, got 2"),
    ("resilience-set-factor-one-site", "resilience.cross_site_factor=0.5",
     "resilience.cross_site_factor: no placement has pools on two sites"),
]:
    check(id, CHECK, f"c.yaml: {expect}", "(set by --set)", cmd=("check", "c.yaml", "--set",
                                                                 setting))
check("resilience-run-name-taken", sub(RES, "  disagg:", "  disagg without prefill/0:\n    "
                                       "pools: {m: {role: mixed, accelerator: h100-sxm}}\n"
                                       "  disagg:"),
      "c.yaml: placements.disagg without prefill/0: is also the name of disagg's resilience run")
check("fault-metric-without-faults-or-resilience", sub(CHECK, BOUND, "requests_failed: {max: 0}"),
      "c.yaml: expect.requests_failed: unknown metric")

BASE_ARGS = ("check", "c.yaml", "--baseline", "b.json")
for id, text, *expect in [
    ("baseline-not-json", "{placements: 1}", "b.json: not JSON"),
    ("baseline-empty", "", "b.json: not JSON"),
    ("baseline-a-list", "[]", "b.json: not a hetsim baseline"),
    ("baseline-no-placements", '{"scenario": "t"}', "b.json: not a hetsim baseline"),
    ("baseline-placements-a-list", '{"placements": []}', "b.json: not a hetsim baseline"),
    ("baseline-placement-a-number", '{"placements": {"coloc": 5}}',
     "b.json: placements.coloc: must be a mapping"),
    ("baseline-metric-a-word", '{"placements": {"coloc": {"goodput_rps": "fast"}}}',
     "b.json: placements.coloc.goodput_rps: must be a finite number, got 'fast'"),
    ("baseline-metric-bool", '{"placements": {"coloc": {"goodput_rps": true}}}',
     "b.json: placements.coloc.goodput_rps: must be a finite number"),
    ("baseline-metric-null", '{"placements": {"coloc": {"goodput_rps": null}}}',
     "b.json: placements.coloc.goodput_rps: must be a finite number"),
    ("baseline-nan", '{"placements": {"coloc": {"goodput_rps": NaN}}}', "b.json: ", "NaN"),
    ("baseline-huge", '{"placements": {"coloc": {"goodput_rps": 1e999}}}',
     "b.json: placements.coloc.goodput_rps: "),
    ("baseline-dup-key", '{"placements": {"coloc": {"a": 1, "a": 2}}}', "b.json: ",
     "duplicate key 'a'"),
    ("baseline-binary", b"\x00" * 20, "b.json: ", "binary file"),
    ("baseline-not-utf8", b'{"placements": {"caf\xe9": {}}}', "b.json: ", "not UTF-8"),
]:
    check(id, CHECK, *expect, files={"b.json": text}, cmd=BASE_ARGS)
check("baseline-missing", CHECK, "b.json: baseline not found", cmd=BASE_ARGS)
check("baseline-a-folder", CHECK, "b.json: is a folder", files={"b.json/notes.txt": "x\n"},
      cmd=BASE_ARGS)

# `hetsim plan`: plan specs
PLAN_RUN = ("plan", "p.yaml", "--out", "res", "-q")


def plan(id, text, *expect, files=None, cmd=PLAN_RUN):
    """A bad plan spec ``p.yaml`` (None: no such file) for ``hetsim plan``."""
    own = {} if text is None else {"p.yaml": text}
    case(id, {**own, **(files or {})}, list(cmd), *expect)


plan("plan-unknown-key", PLAN + "inventry: {}\n", "p.yaml: inventry: unknown key (did you mean")
plan("plan-resilience-cross-site", PLAN + "resilience: {cross_site_factor: 0.25}\n",
     "p.yaml: resilience.cross_site_factor: every inventory accelerator sits on site 'local': "
     "no candidate spans sites")
plan("plan-resilience-per-accelerator", PLAN + "objective: goodput-per-accelerator\n"
     "resilience: {survive: 1}\n", "p.yaml: resilience: resilience applies to objective: cost")
# sites: an inventory entry's site, the plan's cross_site link between them
SITES = sub(sub(PLAN, "a100-sxm: {max: 4,", "a100-sxm: {max: 4, site: remote,"),
            "[colocated, homogeneous-pd]", "[colocated, heterogeneous-pd]")
CROSS = "cross_site: {link: tcp-100g, latency_us: 2000}\n"
plan("plan-sites-without-cross-site", SITES,
     "p.yaml: inventory.a100-sxm.site: a100-sxm sits on site 'remote' and h100-sxm on 'local': "
     "heterogeneous-PD candidates across sites need cross_site:")
plan("plan-cross-site-one-site", PLAN + CROSS,
     "p.yaml: cross_site: every inventory accelerator sits on site 'local': no candidate "
     "crosses sites, so cross_site would go unused")
plan("plan-cross-site-no-hetero-shape", sub(SITES, ", heterogeneous-pd]", "]") + CROSS,
     "p.yaml: cross_site: shapes has no heterogeneous-pd")
plan("plan-cross-site-unknown-link", SITES + sub(CROSS, "tcp-100g", "tcp-10g"),
     "p.yaml: cross_site.link: unknown interconnect 'tcp-10g'")
plan("plan-cross-site-unknown-key", SITES + sub(CROSS, "link:", "lnk:"),
     "p.yaml: cross_site.lnk: unknown key (did you mean 'link'?)")
plan("plan-cross-site-latency-negative", SITES + sub(CROSS, "2000", "-1"),
     "p.yaml: cross_site.latency_us: must be >= 0, got -1")
plan("plan-site-a-list", sub(SITES, "site: remote", "site: [remote]"),
     "p.yaml: inventory.a100-sxm.site: must be a string")
plan("plan-set-site-without-cross-site", sub(PLAN, "[colocated, homogeneous-pd]",
                                             "[heterogeneous-pd]"),
     "p.yaml: inventory.a100-sxm.site: ", "(set by --set)",
     cmd=PLAN_RUN + ("--set", "inventory.a100-sxm.site=remote"))
plan("plan-resilience-factor-zero", PLAN + "resilience: {cross_site_factor: 0}\n",
     "p.yaml: resilience.cross_site_factor: must be in (0, 1)")

plan("plan-unknown-accelerator", sub(PLAN, "  h100-sxm:", "  h100-sx:"),
     "p.yaml: inventory.h100-sx: unknown accelerator 'h100-sx'")
plan("plan-unknown-interconnect", sub(PLAN, "roce-100g]", "roce-10g]"),
     "p.yaml: interconnects[1]: unknown interconnect 'roce-10g'")
plan("plan-unknown-model", sub(PLAN, "llama-3.1-8b", "llama-9b"), "p.yaml: model: unknown model")
plan("plan-unknown-shape", sub(PLAN, "[colocated,", "[colocate,"),
     "p.yaml: shapes[0]: unknown shape 'colocate' (did you mean 'colocated'?)")
plan("plan-unknown-objective", PLAN + "objective: goodput\n", "p.yaml: objective: must be one of")
plan("plan-empty-inventory", PLAN[:PLAN.index("inventory:")] + "inventory: {}\n" +
     PLAN[PLAN.index("tp:"):], "p.yaml: inventory: needs at least one accelerator")
plan("plan-inventory-negative", sub(PLAN, "h100-sxm: {max: 4}", "h100-sxm: {max: -4}"),
     "p.yaml: inventory.h100-sxm.max: must be > 0, got -4")
plan("plan-target-zero", sub(PLAN, "target_rps: 5", "target_rps: 0"),
     "p.yaml: target_rps: must be > 0")
plan("plan-verify-zero", sub(PLAN, "verify: 1", "verify: 0"), "p.yaml: verify: must be > 0")
plan("plan-budget-a-word", sub(PLAN, "budget_usd_per_hour: 60", "budget_usd_per_hour: lots"),
     "p.yaml: budget_usd_per_hour: must be a number")
plan("plan-tp-a-word", sub(PLAN, "tp: [1, 2]", "tp: [1, two]"),
     "p.yaml: tp[1]: must be an integer")
plan("plan-seed-negative", sub(PLAN, "seed: 5", "seed: -5"), "p.yaml: workload.seed: must be >= 0")
plan("plan-slo-missing", sub(PLAN, "slo: {ttft_s: 0.5, tpot_s: 0.03, attainment: 0.9}\n", ""),
     "p.yaml: slo: required key is missing")
plan("plan-a-list", "- h100-sxm\n- a100-sxm\n", "p.yaml: must be a mapping")
plan("plan-dup-inventory", sub(PLAN, "  a100-sxm: {max: 4,", "  h100-sxm: {max: 8}\n"
                                "  a100-sxm: {max: 4,"),
     "p.yaml: duplicate key 'h100-sxm' at lines 12 and 13")
plan("plan-binary", b"\x00\xff" * 100, "p.yaml: binary file")
plan("plan-missing", None, "p.yaml: file not found")
plan("plan-tp-zero", sub(PLAN, "tp: [1, 2]", "tp: [0]"), "p.yaml: tp[0]: ")
plan("plan-tp-negative", sub(PLAN, "tp: [1, 2]", "tp: [-2]"), "p.yaml: tp[0]: ")
plan("plan-tp-not-power-of-two", sub(PLAN, "tp: [1, 2]", "tp: [3]"), "p.yaml: tp[0]: ")
plan("plan-unknown-precision", sub(PLAN, "precisions: [bf16]", "precisions: [bf17]"),
     "p.yaml: precisions[0]: ", "bf17")
plan("plan-no-precisions", sub(PLAN, "precisions: [bf16]", "precisions: []"),
     "p.yaml: precisions: ")
plan("plan-no-tp", sub(PLAN, "tp: [1, 2]", "tp: []"), "p.yaml: tp: ")
plan("plan-no-shapes", sub(PLAN, "shapes: [colocated, homogeneous-pd]", "shapes: []"),
     "p.yaml: shapes: ")
plan("plan-over-context", sub(PLAN, "{dist: lognormal, mean: 512, sigma: 0.5, max: 2048}",
                              "{dist: fixed, value: 200000}"),
     "p.yaml: workload: ", "131072-token context")
plan("plan-trace-workload", sub(PLAN, "  arrival:", "  trace: t.csv\n  arrival:"),
     "p.yaml: workload.arrival: a plan varies the arrival rate",
     files={"t.csv": TRACE_HEAD + "0,3,1\n"})
plan("plan-closed-loop", sub(sub(PLAN, "target_rps: 5\n", ""), "process: poisson, rate_rps: 5.0",
                             "process: closed, concurrency: 4"),
     "p.yaml: workload.arrival: a plan varies the arrival rate")
plan("plan-warmup-seconds", sub(PLAN, "  seed: 5", "  seed: 5\n  warmup: {seconds: 2}"),
     "p.yaml: workload.warmup.seconds: a plan varies the arrival rate")
# a histogram beside the spec (found there, not in the working directory), with a bad row
case("plan-histogram-bad",
     {"sub/p.yaml": sub(PLAN, "{dist: lognormal, mean: 512, sigma: 0.5, max: 2048}",
                        "{dist: empirical, file: h.csv}"), "sub/h.csv": HIST + "2.5,1\n"},
     ["plan", "sub/p.yaml", "--out", "res", "-q"], "sub/h.csv:4: tokens: must be a whole number")

# Calibration CSVs: `hetsim calibrate --from-csv m.csv --out p.yaml`
for id, csv, *expect in [
    ("cal-missing-seconds", "op,precision,m,n,k\ngemm,bf16,1,2,3\n",
     "m.csv: ", "missing column 'seconds'"),
    ("cal-unknown-op", CAL_HEAD + "gem,bf16,1,2,3,0.1\n", "m.csv:2: op: unknown op 'gem'"),
    ("cal-not-a-number", CAL_HEAD + "gemm,bf16,1,x,3,0.1\n",
     "m.csv:2: n: gemm needs a number in column 'n'"),
    ("cal-negative-seconds", CAL + "gemm,bf16,1,2,3,-1\n", "m.csv:6: seconds: must be > 0"),
    ("cal-nan-seconds", CAL + "gemm,bf16,1,2,3,nan\n", "m.csv:6: seconds: must be > 0"),
    ("cal-zero-m", CAL + "gemm,bf16,0,2,3,0.1\n", "m.csv:6: m: must be > 0"),
    ("cal-unknown-precision", CAL_HEAD + "gemm,bf17,1,2,3,0.1\n",
     "m.csv:2: precision: unknown precision"),
    ("cal-no-gemms", "op,precision,bytes,seconds\ncopy,fp32,100,0.1\n",
     "m.csv: no gemm or attention measurements"),
    ("cal-empty", "", "m.csv: ", "missing column"),
    ("cal-kernels-a-word", "op,precision,m,n,k,kernels,seconds\ngemm,bf16,1,2,3,x,0.1\n",
     "m.csv:2: kernels: column 'kernels' must be a whole number"),
    ("cal-nul", b"op,precision\x00,m,n,k,seconds\n" + CAL.encode(), "m.csv: "),
    ("cal-fraction-m", CAL + "gemm,bf16,1.5,4096,4096,0.00002\n", "m.csv:6: m: ",
     "whole number"),
    ("cal-duplicate-column", "op,precision,m,n,k,seconds,seconds\n"
     "gemm,bf16,1,4096,4096,0.00002,5\n" + CAL[len(CAL_HEAD):].replace("\n", ",1\n"),
     "m.csv:1: ", "seconds", "appears twice"),
    ("cal-not-utf8", (CAL + "gemm,bf16,1,2,3,0.1 # caf\xe9\n").encode("latin-1"), "m.csv: ",
     "not UTF-8"),
    ("cal-binary", b"op,precision\x00\x00\xff\n" * 10, "m.csv: ", "not UTF-8"),
    ("cal-nul-bytes", b"op,precision\x00\n" * 10, "m.csv: ", "binary file"),
]:
    case(id, {"m.csv": csv}, CALIBRATE, *expect)
case("cal-missing-file", {}, CALIBRATE, "m.csv: cannot read")
case("cal-csv-a-folder", {"m.csv/notes.txt": "x\n"}, CALIBRATE, "m.csv: cannot read")
case("cal-accelerator-yaml-bad", {"m.csv": CAL, "a.yaml": "name: x\n"},
     [*CALIBRATE[:4], "a.yaml", *CALIBRATE[5:]], "a.yaml: ", "description")
case("cal-threads-negative", {"m.csv": CAL}, [*CALIBRATE[:3], *CALIBRATE[5:], "--threads", "-1"],
     "--threads")
case("cal-unknown-accelerator", {"m.csv": CAL},
     [*CALIBRATE[:4], "h100-sx", *CALIBRATE[5:]],
     "--accelerator: unknown accelerator 'h100-sx'")

# Command-line arguments (argparse errors are one line too)
S = {"s.yaml": BASE}
C = {"c.yaml": CHECK}
for id, files, argv, *expect in [
    ("goodput-seeds-zero", S, ["goodput", "s.yaml", "--seeds", "0"], "--seeds", "'0'"),
    ("goodput-seeds-negative", S, ["goodput", "s.yaml", "--seeds", "-2"], "--seeds", "'-2'"),
    ("goodput-seeds-fraction", S, ["goodput", "s.yaml", "--seeds", "1.5"], "--seeds", "'1.5'"),
    ("goodput-requests-zero", S, ["goodput", "s.yaml", "--requests", "0"], "--requests", "'0'"),
    ("goodput-requests-word", S, ["goodput", "s.yaml", "--requests", "abc"], "--requests",
     "'abc'"),
    ("goodput-tolerance-negative", S, ["goodput", "s.yaml", "--tolerance", "-1"], "--tolerance",
     "'-1'"),
    ("goodput-tolerance-zero", S, ["goodput", "s.yaml", "--tolerance", "0"], "--tolerance"),
    ("goodput-tolerance-100pct", S, ["goodput", "s.yaml", "--tolerance", "100%"], "--tolerance"),
    ("goodput-tolerance-nan", S, ["goodput", "s.yaml", "--tolerance", "nan"], "--tolerance"),
    ("goodput-seeds-no-value", S, ["goodput", "s.yaml", "--seeds"], "--seeds"),
    ("goodput-requests-no-value", S, ["goodput", "s.yaml", "--requests"], "--requests"),
    ("goodput-unknown-placement", S, ["goodput", "s.yaml", "--placement", "colc", "-q"],
     "s.yaml: ", "unknown placement 'colc' (did you mean 'coloc'?)"),
    ("check-tolerance-negative", C, ["check", "c.yaml", "--tolerance", "-1"], "--tolerance"),
    ("check-tolerance-one", C, ["check", "c.yaml", "--tolerance", "1"], "--tolerance"),
    ("check-tolerance-word", C, ["check", "c.yaml", "--tolerance", "x%"], "--tolerance"),
    ("run-unknown-placement", S, ["run", "s.yaml", "--placement", "nope", "-q"],
     "s.yaml: ", "unknown placement 'nope'"),
    ("run-second-placement-unknown", S, ["run", "s.yaml", "--placement", "coloc", "--placement",
                                         "disag", "--out", "res", "-q"],
     "s.yaml: ", "unknown placement 'disag' (did you mean 'disagg'?)"),
    ("run-no-scenario", S, ["run"], "scenario"),
    ("run-unknown-flag", S, ["run", "s.yaml", "--bogus"], "--bogus"),
    ("run-out-no-value", S, ["run", "s.yaml", "--out"], "--out"),
    ("run-two-scenarios", S, ["run", "s.yaml", "s.yaml"], "unrecognized arguments"),
    ("no-command", S, [], "command"),
    ("unknown-command", S, ["runn", "s.yaml"], "'runn'"),
    ("check-no-plan", C, ["check"], "plan"),
    ("plan-no-spec", {}, ["plan"], "spec"),
    ("validate-no-files", S, ["validate"], "scenario"),
    ("profiles-show-no-name", {}, ["profiles", "show"], "NAME"),
    ("profiles-bad-action", {}, ["profiles", "shw", "x"], "'shw'"),
    ("profiles-show-unknown", {}, ["profiles", "show", "h100-sx"], "'h100-sx'", "did you mean"),
    ("calibrate-no-out", {"m.csv": CAL}, ["calibrate", "--from-csv", "m.csv"], "--out"),
    ("calibrate-bad-device", {"m.csv": CAL}, [*CALIBRATE, "--device", "tpu"], "--device",
     "'tpu'"),
    ("calibrate-threads-word", {"m.csv": CAL}, [*CALIBRATE, "--threads", "x"], "--threads"),
    ("unknown-global-flag", S, ["--verbose", "run", "s.yaml"], "--verbose"),
]:
    case(id, files, argv, *expect)
case("goodput-requests-huge", S, ["goodput", "s.yaml", "--requests", "1000000000000000", "-q"],
     "--requests", "GB of memory")

# Output paths, all checked before anything runs
for id, files, argv, *expect in [
    ("run-out-is-file", S, ["run", "s.yaml", "--out", "notes.txt", "-q"],
     "--out: notes.txt is a file"),
    ("run-out-is-scenario", S, ["run", "s.yaml", "--out", "s.yaml", "-q"],
     "--out: s.yaml is a file"),
    ("run-out-under-file", S, ["run", "s.yaml", "--out", "notes.txt/res", "-q"],
     "--out: ", "notes.txt/res", "notes.txt, which is a file"),
    ("run-out-foreign-folder", S, ["run", "s.yaml", "--out", "out", "-q"],
     "--out: out is not empty and holds no hetsim output (notes.txt)", "--force"),
    ("run-out-foreign-folder-slash", S, ["run", "s.yaml", "--out", "out/", "-q"],
     "--out: ", "holds no hetsim output"),
    ("run-out-cwd", S, ["run", "s.yaml", "--out", ".", "-q"], "--out: ",
     "holds no hetsim output"),
    ("run-out-cwd-json", S, ["run", "s.yaml", "--json", "--out", "./", "-q"], "--out: ",
     "holds no hetsim output"),
    ("run-out-corrupt-manifest", {**S, "out/hetsim-manifest.json": "{not json"},
     ["run", "s.yaml", "--out", "out", "-q"], "--out: ", "holds no hetsim output"),
    ("run-out-manifest-escapes", {**S, "out/hetsim-manifest.json": json.dumps(
        {"files": ["../notes.txt", "notes.txt"]})},
     ["run", "s.yaml", "--out", "out", "-q"], "--out: ", "holds no hetsim output"),
    ("run-out-bad-scenario", {"s.yaml": sub(BASE, "seed: 1", "seed: -1")},
     ["run", "s.yaml", "--out", "out", "-q"], "--out: "),
    ("plan-out-is-file", {"p.yaml": PLAN}, ["plan", "p.yaml", "--out", "notes.txt", "-q"],
     "--out: notes.txt is a file"),
    ("plan-out-under-file", {"p.yaml": PLAN}, ["plan", "p.yaml", "--out", "notes.txt/x", "-q"],
     "--out: ", "which is a file"),
    ("plan-out-foreign-folder", {"p.yaml": PLAN}, ["plan", "p.yaml", "--out", "out", "-q"],
     "--out: out is not empty and holds no hetsim output"),
    ("plan-default-out-foreign", {"p.yaml": PLAN, "plan-out/mine.csv": "a,b\n"},
     ["plan", "p.yaml", "-q"], "--out: plan-out is not empty"),
    ("check-junit-folder", C, ["check", "c.yaml", "--junit", "out"],
     "--junit: out is a folder"),
    ("check-junit-under-file", C, ["check", "c.yaml", "--junit", "notes.txt/r.xml"],
     "--junit: ", "notes.txt, which is a file"),
    ("check-update-baseline-under-file", C,
     ["check", "c.yaml", "--update-baseline", "--baseline", "notes.txt/b.json"],
     "--baseline: ", "notes.txt, which is a file"),
    ("check-update-baseline-folder", C,
     ["check", "c.yaml", "--update-baseline", "--baseline", "out"], "--baseline: out is a folder"),
]:
    case(id, files, argv, *expect)
case("calibrate-out-folder", {"m.csv": CAL}, [*CALIBRATE[:-2], "out", "-q"], "--out: ", "out")
case("calibrate-out-under-file", {"m.csv": CAL}, [*CALIBRATE[:-2], "notes.txt/p.yaml", "-q"],
     "--out: ", "notes.txt")


# --- the test ----------------------------------------------------------------------------------
def snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: bytes and mtime (files), mtime (folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        out[rel] = ("dir", st.st_mtime_ns) if p.is_dir() else (p.read_bytes(), st.st_mtime_ns)
    return out


def write_files(root: Path, files: dict) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def run_cli(argv: list) -> int:
    return main(list(argv))   # argparse's usage errors come back as 2, not as SystemExit


def test_at_least_100_cases():
    assert len(CASES) >= 100
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("files,argv,expect", CASES)
def test_bad_input(tmp_path, monkeypatch, capsys, files, argv, expect):
    write_files(tmp_path, {**PLANTED, **files})
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    rc = run_cli(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert rc == 2, err
    assert err.startswith("hetsim: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    for s in expect:
        assert s in err, f"{s!r} not in {err!r}"
    # nothing on stdout but the files validate passed before the bad one
    assert all(": ok (" in line for line in out.splitlines()), out
    assert snapshot(tmp_path) == before, "a file was written or touched"


# --- the starting points are valid, so each case fails for the reason it names ------------------
@pytest.mark.parametrize("files,argv", [
    ({"s.yaml": BASE}, ["validate", "s.yaml"]),
    ({"s.yaml": TRACE_SC, "t.csv": TRACE}, ["validate", "s.yaml"]),
    ({"s.yaml": sub(TRACE_SC, "  trace: t.csv", "  trace: t.csv\n  requests: 3"),
      "t.csv": TRACE}, ["validate", "s.yaml"]),
    ({"s.yaml": HIST_SC, "h.csv": HIST}, ["validate", "s.yaml"]),
    ({"s.yaml": HF_SC, "config.json": hf()}, ["validate", "s.yaml"]),
    ({"c.yaml": CHECK}, ["check", "c.yaml"]),
    ({"m.csv": CAL}, CALIBRATE),
], ids=["scenario", "trace", "trace-requests", "histogram", "hf-config", "check-plan", "calibrate"])
def test_bases_are_valid(tmp_path, monkeypatch, capsys, files, argv):
    write_files(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    assert run_cli(argv) == 0, capsys.readouterr().err


def test_base_plan_spec_and_check_plan_are_valid(tmp_path, monkeypatch, capsys):
    from hetsim.check import load_baseline, load_checks
    from hetsim.planner import load_plan_spec
    write_files(tmp_path, {"p.yaml": PLAN, "c.yaml": CHECK, "b.json": json.dumps(BASELINE)})
    monkeypatch.chdir(tmp_path)
    load_plan_spec("p.yaml")
    load_checks("c.yaml")
    load_baseline("b.json")

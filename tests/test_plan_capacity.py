"""The planner's closed-form capacity model (hetsim.planner.capacity): what one instance sustains.

Metamorphic: a looser SLO never lowers a capacity, a slower prompt never raises it, more KV
memory never lowers decode capacity; the prefill rate is the M/D/1 knee it claims to be; the
option list holds exactly the feasible instance types, priced per instance.
"""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetsim.config import build
from hetsim.hardware import load_accelerator
from hetsim.models import load_model
from hetsim.perf import PerfModel, StepModel
from hetsim.planner import PlanSpec
from hetsim.planner.capacity import (MAX_DECODE_BATCH, P90_OVER_MEAN_WAIT, TPOT_MARGIN,
                                  colocated_rate, decode_rate, options, prefill_rate)

SPEC = {
    "name": "t", "model": "llama-3.1-8b",
    "workload": {"arrival": {"process": "poisson", "rate_rps": 10.0},
                 "input_tokens": {"dist": "fixed", "value": 1024},
                 "output_tokens": {"dist": "fixed", "value": 200}},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.03},
    "inventory": {"h100-sxm": {"max": 8}, "a100-sxm": {"max": 8, "price_usd_per_hour": 1.6}},
    "tp": [1, 2], "precisions": ["bf16", "fp8"],
}


def spec(**edits) -> PlanSpec:
    return build(PlanSpec, {**SPEC, **edits})


@pytest.fixture(scope="module")
def model():
    return load_model("llama-3.1-8b")


@pytest.fixture(scope="module")
def step(model):
    return StepModel(model, PerfModel(load_accelerator("h100-sxm")), 1, "bf16")


# --- prefill: an M/D/1 queue at the TTFT target ------------------------------------------------
services = st.floats(1e-4, 2.0)
targets = st.floats(1e-3, 5.0)


@given(services, targets, targets)
def test_a_looser_ttft_never_lowers_prefill_capacity(s, t1, t2):
    lo, hi = sorted((t1, t2))
    assert prefill_rate(s, lo) <= prefill_rate(s, hi)


@given(services, services, targets)
def test_a_slower_prompt_never_raises_prefill_capacity(s1, s2, t):
    fast, slow = sorted((s1, s2))
    assert prefill_rate(slow, t) <= prefill_rate(fast, t)


@given(services, targets)
def test_prefill_rate_is_the_md1_knee(s, t):
    rate = prefill_rate(s, t)
    if s >= t:
        assert rate == 0.0          # one prompt alone misses the target
        return
    rho = rate * s
    assert 0 <= rho < 1             # a stable queue, below one prompt per service time
    wait90 = P90_OVER_MEAN_WAIT * rho * s / (2 * (1 - rho))
    assert s + wait90 <= t * (1 + 1e-9)
    # and it is the knee: a few percent more load breaks the target (unless capped near 1)
    more = min(rho * 1.01 + 1e-6, 0.999)
    if more < 0.999:
        assert s + P90_OVER_MEAN_WAIT * more * s / (2 * (1 - more)) > t


def test_prefill_rate_worked_example():
    # S = 0.1 s, TTFT 0.5 s: 0.1 + 2.3 rho 0.1 / (2 (1 - rho)) = 0.5  =>  rho = 0.8 / 1.03
    assert prefill_rate(0.1, 0.5) == pytest.approx(0.8 / 1.03 / 0.1, rel=1e-6)


# --- decode: the largest batch within TPOT and KV ----------------------------------------------
def test_decode_rate_is_monotone_in_tpot_and_kv(step):
    rates = [decode_rate(step, 10**6, 1024, 200, t) for t in (0.005, 0.01, 0.02, 0.04, 0.08)]
    assert rates == sorted(rates) and rates[-1] > rates[0]
    by_kv = [decode_rate(step, kv, 1024, 200, 0.05) for kv in (1224, 10**4, 10**5, 10**6)]
    assert by_kv == sorted(by_kv) and by_kv[-1] > by_kv[0]


def test_decode_rate_is_zero_when_nothing_fits(step):
    assert decode_rate(step, 1223, 1024, 200, 1.0) == 0.0        # not one request's KV
    assert decode_rate(step, 10**6, 1024, 200, 1e-6) == 0.0      # no step that fast


def test_decode_rate_comes_from_a_batch_within_the_margin(step):
    tpot = 0.03
    rate = decode_rate(step, 10**7, 1024, 200, tpot)
    batches = [b for b in (2 ** k for k in range(11)) if b <= MAX_DECODE_BATCH]
    chosen = [b for b in batches
              if step.decode_time(b, int(b * (1024 + 100))) <= TPOT_MARGIN * tpot]
    b = max(chosen)
    assert rate == pytest.approx(b / (step.decode_time(b, int(b * 1124)) * 200))


# --- colocated: prefill and decode share the device --------------------------------------------
rates = st.one_of(st.just(0.0), st.floats(1e-6, 1e3))


@given(rates, rates)
def test_colocated_rate_is_below_both_and_zero_without_either(p, d):
    c = colocated_rate(p, d)
    assert c == colocated_rate(d, p)
    if p == 0 or d == 0:
        assert c == 0.0
    else:
        assert 0 < c <= min(p, d)


# --- the options of an inventory ---------------------------------------------------------------
def _by_label(opts):
    return {o.label: (o, pre, dec, mixed) for o, pre, dec, mixed in opts}


def test_options_are_the_feasible_types_priced_per_instance(model):
    opts = _by_label(options(spec(), model, 1024, 200))
    # a100-sxm has no fp8: three of the four h100 types and two a100 ones
    assert set(opts) == {"h100-sxm tp1 bf16", "h100-sxm tp1 fp8", "h100-sxm tp2 bf16",
                         "h100-sxm tp2 fp8", "a100-sxm tp1 bf16", "a100-sxm tp2 bf16"}
    h100 = load_accelerator("h100-sxm").usd_per_hour
    assert opts["h100-sxm tp2 bf16"][0].price == pytest.approx(2 * h100)
    assert opts["a100-sxm tp2 bf16"][0].price == pytest.approx(2 * 1.6)     # the override
    for o, pre, dec, mixed in opts.values():
        assert pre > 0 and dec > 0 and mixed == pytest.approx(colocated_rate(pre, dec))


def test_options_respect_stock_heads_and_the_scale_up_domain(model):
    labels = set(_by_label(options(spec(inventory={"h100-sxm": {"max": 1}}), model, 1024, 200)))
    assert labels == {"h100-sxm tp1 bf16", "h100-sxm tp1 fp8"}       # TP2 needs 2 GPUs
    # TP 64 divides no 32-head model and exceeds the 8-GPU NVLink domain
    assert options(spec(tp=[64], inventory={"h100-sxm": {}}), model, 1024, 200) == []
    assert options(spec(tp=[16], inventory={"h100-sxm": {}}), model, 1024, 200) == []


def test_a_looser_slo_never_lowers_any_capacity(model):
    tight = _by_label(options(spec(slo={"ttft_s": 0.2, "tpot_s": 0.015}), model, 1024, 200))
    loose = _by_label(options(spec(slo={"ttft_s": 1.0, "tpot_s": 0.06}), model, 1024, 200))
    assert tight.keys() == loose.keys()
    for label in tight:
        for i in (1, 2, 3):       # prefill, decode, colocated
            assert loose[label][i] >= tight[label][i], (label, i)
    assert any(loose[k][2] > tight[k][2] for k in tight)


def test_longer_prompts_lower_prefill_capacity(model):
    short = _by_label(options(spec(), model, 256, 200))
    long_ = _by_label(options(spec(), model, 4096, 200))
    for label in short:
        assert long_[label][1] < short[label][1], label


def test_a_price_override_changes_only_the_price(model):
    base = _by_label(options(spec(), model, 1024, 200))
    inv = {**SPEC["inventory"], "h100-sxm": {"max": 8, "price_usd_per_hour": 0.5}}
    cheap = _by_label(options(spec(inventory=inv), model, 1024, 200))
    for label, (o, *caps) in cheap.items():
        assert caps == list(base[label][1:])
        want = 0.5 * o.tp if o.acc == "h100-sxm" else base[label][0].price
        assert o.price == pytest.approx(want)
    assert cheap["a100-sxm tp1 bf16"][0] == base["a100-sxm tp1 bf16"][0]

"""Serving runtimes' rules (issue 15 §1, §2, §5): exact event traces of each scheduler rule on
a step model whose times are written out (tests/test_engine_units.py: 1 + prompt tokens / 8 +
decodes / 4 seconds), the runtimes' defaults and KV capacity, ``runtime:`` as a key, and the
first-token semantics of disaggregated placements."""
import dataclasses

import pytest

import hetsim
from hetsim import runtimes
from hetsim.engine.instances import DecodeInstance, MixedInstance
from hetsim.engine.ondemand import OnDemandMixedInstance
from hetsim.engine.request import State
from hetsim.errors import ConfigError
from hetsim.resolve import resolve_scenario
from hetsim.scenario import parse_scenario

from .test_engine_units import make, req


def rules(**kw) -> runtimes.Rules:
    """vLLM-like rules with overlap and CUDA graphs off unless asked."""
    base = dict(name="vllm", version="0", max_batch_tokens=16, max_seqs=8, block_size=4,
                chunked_prefill=True, mixed_batches=True, kv_admission="on-demand",
                cuda_graphs=False, graph_sizes=(1,), graph_padding=True, overlap=False,
                first_token_delay_steps=0, request_overhead_s=0.0, step_overhead_s=0.0,
                memory="vllm", memory_fraction=0.9)
    return runtimes.Rules(**{**base, **kw})


def moe_compute(runtime, acc, tp: int = 1):
    """``runtimes.moe_compute`` under ``runtime``'s rules on ``acc`` (a name, a
    ``RuntimeSpec`` mapping, or None: no runtime)."""
    if runtime is None:
        return runtimes.moe_compute(None, acc)
    spec = runtimes.RuntimeSpec(**runtime) if isinstance(runtime, dict) else runtime
    return runtimes.moe_compute(runtimes.rules(spec, acc, tp), acc)


def arrive(env, inst, r, at):
    def go():
        yield env.timeout(at)
        r.arrival_s = at
        inst.submit(r)
    env.process(go())


# --- vLLM ---------------------------------------------------------------------------------
def test_vllm_budget_fills_decodes_first_then_chunks():
    """Budget 16. r0 (8-token prompt, 4 out) and r1 (24, 2) arrive together: step 1 holds r0's
    whole prompt and 8 of r1's [0, 3); then r0 decodes first and r1 takes the 15 tokens left
    [3, 6.125); its last token rides with r0's decode [6.125, 7.5); both decode [7.5, 9)."""
    env, m = make(OnDemandMixedInstance, "mixed", max_tokens=16, rules=rules())
    r0, r1 = req(0, 8, 4), req(1, 24, 2)
    m.submit(r0)
    m.submit(r1)
    env.run()
    assert (r0.first_token_s, r0.last_token_s) == (3, 9)
    assert (r1.prefill_start_s, r1.first_token_s, r1.last_token_s) == (0, 7.5, 9)
    assert (m.iterations, m.decode_tokens) == (4, 3 + 1)
    # admitted on the prompt's KV (2 + 6 blocks), grown one block at a time
    assert m.kv.used == 0 and m.kv.peak == 3 + 7


def test_vllm_preemption_by_recompute_restores_every_token():
    """KV for 5 blocks of 4: sequences outgrow it, the newest is preempted, recomputed later,
    and every request still produces all of its tokens."""
    env, m = make(OnDemandMixedInstance, "mixed", kv_blocks=5, max_tokens=16, rules=rules())
    rs = [req(i, 4, 6) for i in range(3)]
    for r in rs:
        m.submit(r)
    env.run()
    assert all(r.state is State.COMPLETED for r in rs)
    assert m.preemptions > 0 and m.recomputed_tokens > 0
    assert m.decode_tokens == sum(r.output_tokens - 1 for r in rs)   # none lost, none twice
    assert sum(r.preemptions for r in rs) == m.preemptions
    assert m.kv.used == 0 and m.kv.peak <= 5


def test_overlap_scheduling_makes_a_mid_step_arrival_wait_one_more_step():
    """r0 (8, 4) runs alone; r1 (8, 2) arrives at 2.5 during r0's first decode step [2, 3.25).
    With overlap the step after it was already formed, so r1 joins the next: [4.5, 6.75).
    Without, it joins at 3.25."""
    def run(overlap):
        env, m = make(OnDemandMixedInstance, "mixed", max_tokens=16,
                      rules=rules(overlap=overlap))
        r0, r1 = req(0, 8, 4), req(1, 8, 2)
        m.submit(r0)
        arrive(env, m, r1, 2.5)
        env.run()
        return r1.prefill_start_s, r1.first_token_s
    assert run(True) == (4.5, 6.75)
    assert run(False) == (3.25, 5.5)


def test_overlap_never_delays_a_prompt_on_an_idle_instance():
    env, m = make(OnDemandMixedInstance, "mixed", max_tokens=16, rules=rules(overlap=True))
    r0, r1 = req(0, 8, 1), req(1, 8, 1)
    m.submit(r0)
    arrive(env, m, r1, 1.0)      # during r0's only step [0, 2); nothing else would run after
    env.run()
    assert (r1.prefill_start_s, r1.first_token_s) == (2, 4)


# --- TRT-LLM ------------------------------------------------------------------------------
TRT = dict(chunked_prefill=False, kv_admission="reserve-output", first_token_delay_steps=1)


def test_trtllm_whole_prompts_and_first_token_one_step_late():
    """No chunking: r1 (12 tokens) does not fit beside r0 (8) in 16, so it waits a step. The
    overlap scheduler shows each first token after the following step."""
    env, m = make(MixedInstance, "mixed", max_tokens=16, rules=rules(**TRT))
    r0, r1 = req(0, 8, 3), req(1, 12, 2)
    m.submit(r0)
    m.submit(r1)
    env.run()
    # [0, 2) r0's prompt; [2, 4.75) r1's prompt + r0's decode; [4.75, 6.25) both decode
    assert (r0.prefill_end_s, r0.first_token_s, r0.last_token_s) == (2, 4.75, 6.25)
    assert (r1.prefill_start_s, r1.prefill_end_s, r1.first_token_s, r1.last_token_s) == (
        2, 4.75, 6.25, 6.25)


def test_trtllm_no_evict_refuses_admission_until_the_whole_kv_fits():
    """5 blocks: r0 reserves prompt + output (3 blocks); r1 needs 4 and waits for r0 to end,
    though its prompt alone (3 blocks) would fit."""
    env, m = make(MixedInstance, "mixed", kv_blocks=5, max_tokens=16, rules=rules(**TRT))
    r0, r1 = req(0, 8, 3), req(1, 12, 2)
    m.submit(r0)
    m.submit(r1)
    env.run()
    assert r0.last_token_s == 4.5                  # [0, 2) [2, 3.25) [3.25, 4.5)
    assert (r1.prefill_start_s, r1.prefill_end_s, r1.first_token_s) == (4.5, 7.0, 8.25)
    assert m.kv.peak == 4


# --- SGLang -------------------------------------------------------------------------------
def test_sglang_prefill_step_pauses_the_decodes():
    """r1 arrives at 2.5 while r0 decodes: its prefill runs alone [3.25, 5.25) and r0 does not
    advance in it; then both decode [5.25, 6.75)."""
    env, m = make(OnDemandMixedInstance, "mixed", max_tokens=16,
                  rules=rules(name="sglang", kv_admission="estimate", mixed_batches=False))
    r0, r1 = req(0, 8, 3), req(1, 8, 2)
    m.submit(r0)
    arrive(env, m, r1, 2.5)
    env.run()
    assert (r0.first_token_s, r0.last_token_s) == (2, 6.75)
    assert (r1.prefill_start_s, r1.first_token_s, r1.last_token_s) == (3.25, 5.25, 6.75)
    assert m.decode_tokens == 2 + 1


@pytest.mark.parametrize("interval, start", [(1, 3.25), (3, 5.75), (2, 4.5)])
def test_sglang_takes_in_requests_every_recv_interval_decode_steps(interval, start):
    """--scheduler-recv-interval: r1 arrives at 2.5 while r0 decodes (steps [2, 3.25),
    [3.25, 4.5), [4.5, 5.75)). The prefill step [0, 2) weighs 1000, so the scheduler takes in
    requests at 2; then only when the decode steps since weigh ``interval``: r1 is seen, and
    prefilled, at the formation after 3 decode steps (5.75) or 2 (4.5); interval 1 is every
    step."""
    env, m = make(OnDemandMixedInstance, "mixed", max_tokens=16,
                  rules=rules(name="sglang", kv_admission="estimate", mixed_batches=False,
                              recv_interval=interval))
    r0, r1 = req(0, 8, 10), req(1, 8, 2)
    m.submit(r0)
    arrive(env, m, r1, 2.5)
    env.run()
    assert r0.prefill_start_s == 0 and r0.first_token_s == 2
    assert (r1.prefill_start_s, r1.first_token_s) == (start, start + 2)


def test_sglang_recv_interval_never_holds_an_idle_engine():
    """An idle scheduler loop weighs 1 and spins: a request reaching an idle engine is taken
    in at once, whatever the interval."""
    env, m = make(OnDemandMixedInstance, "mixed", max_tokens=16,
                  rules=rules(name="sglang", kv_admission="estimate", mixed_batches=False,
                              recv_interval=30))
    r0, r1 = req(0, 8, 2), req(1, 8, 2)
    m.submit(r0)
    arrive(env, m, r1, 10.0)
    env.run()
    assert (r0.prefill_start_s, r1.prefill_start_s) == (0, 10.0)


def test_recv_interval_is_sglangs_and_colocated():
    with pytest.raises(ConfigError) as e:
        _pool({"name": "trtllm", "recv_interval": 30})
    assert "recv_interval is SGLang's" in str(e.value)
    with pytest.raises(ConfigError) as e:
        _pool({"name": "sglang", "recv_interval": 30}, tp=2, attention_dp=2)
    assert "colocated (mixed) pool" in str(e.value)
    assert _pool({"name": "sglang", "recv_interval": 30}).rules.recv_interval == 30


def test_sglang_admission_counts_the_running_requests_future_tokens():
    """40 tokens of KV (10 blocks of 4). r0 (4, 30) runs; r1 (4, 8) needs 4 + 8 + a page
    while r0 is expected to write (29 - k) x ~0.7 more and holds its own blocks: r1 waits
    for r0 to finish although its prompt fits. vLLM admits it at once (both fit in the end)."""
    from hetsim.engine.policy import SglangPolicy

    def run(**kw):
        env, m = make(OnDemandMixedInstance, "mixed", kv_blocks=10, max_tokens=16,
                      rules=rules(**kw))
        r0, r1 = req(0, 4, 30), req(1, 4, 8)
        m.submit(r0)
        arrive(env, m, r1, 2.5)
        env.run()
        assert r0.state is r1.state is State.COMPLETED
        return m, r0, r1
    m, r0, r1 = run(name="sglang", kv_admission="estimate", mixed_batches=False)
    assert isinstance(m.policy, SglangPolicy)
    assert r1.prefill_start_s == r0.last_token_s and m.preemptions == 0
    m, r0, r1 = run()
    assert r1.prefill_start_s == 2.75 and r1.last_token_s < r0.last_token_s


# --- CUDA graphs --------------------------------------------------------------------------
def test_decode_batches_pad_to_the_next_captured_graph():
    """Graphs for 1, 2, 4, 8: 3 sequences run as 4 (1 + 4/4 = 2 s a step); 9, past the largest,
    run as they are."""
    def step_time(n, **kw):
        env, d = make(DecodeInstance, "decode", max_seqs=16,
                      rules=rules(cuda_graphs=True, graph_sizes=(1, 2, 4, 8), **kw))
        for i in range(n):
            r = req(i, 4, 2)
            r.state = State.TRANSFERRING
            d.reserve(r)
            d.join(r)
        env.run()
        return d.busy_s
    assert step_time(3) == 2.0
    assert step_time(9) == 1 + 9 / 4
    assert step_time(3, graph_padding=False) == 1 + 3 / 4


def test_pad_batch():
    r = rules(cuda_graphs=True, graph_sizes=(1, 2, 4, 8, 16, 24))
    assert [runtimes.pad_batch(r, n) for n in (1, 3, 4, 5, 17, 24, 25)] == [
        1, 4, 4, 8, 24, 24, 25]
    assert runtimes.pad_batch(None, 3) == 3


# --- defaults and KV capacity --------------------------------------------------------------
def _pool(rt, acc="h100-sxm", model="llama-3.1-8b", tp=1, role="mixed", **extra):
    d = {"name": "t", "model": model,
         "workload": {"requests": 4, "arrival": {"process": "poisson", "rate_rps": 1},
                      "input_tokens": {"dist": "fixed", "value": 8},
                      "output_tokens": {"dist": "fixed", "value": 8}},
         "slo": {"ttft_s": 1, "tpot_s": 1},
         "placements": {"p": {"pools": {"m": {"role": role, "accelerator": acc, "tp": tp,
                                              "runtime": rt, **extra}}}}}
    _, placements = resolve_scenario(parse_scenario(d, "t.yaml"))
    return placements["p"].pools["m"]


@pytest.mark.parametrize("rt, acc, want", [
    ("vllm", "h100-sxm", (8192, 1024, 16)),    # vllm serve on >= 70 GiB GPUs
    ("vllm", "a100-sxm", (2048, 256, 16)),     # ... except A100
    ("trtllm", "h100-sxm", (8192, 2048, 32)),
    ("sglang", "h200-sxm", (8192, None, 1)),   # chunked_prefill_size below 160 GiB
    ("sglang", "b200", (16384, None, 1)),
])
def test_runtime_defaults_by_gpu(rt, acc, want):
    p = _pool(rt, acc)
    tokens, seqs, block = want
    assert (p.spec.max_batch_tokens, p.spec.block_size) == (tokens, block)
    if seqs is not None:
        assert p.spec.max_seqs == seqs
    else:   # SGLang: from its KV capacity and the model's context
        ctx = hetsim.load_model("llama-3.1-8b").max_context
        assert p.spec.max_seqs == runtimes.sglang_max_running(p.memory.kv_tokens, ctx)
    assert p.rules.max_seqs == p.spec.max_seqs


# SGLang's state pool for a linear-attention model (docs/runtime-rules.md §1): Qwen3.5 on four
# B200s, whose KV capacity (millions of tokens) never binds the default cap; its states do
def _q35(runtime, **extra):
    return _pool(runtime, acc="b200", model="qwen3.5-397b-a17b", tp=4,
                 precision={"compute": "fp8", "weights": "fp8", "kv": "fp8"}, **extra)


def _slots(p):
    """The state slots SGLang's ratio split gives one rank: 0.9 / 1.9 of its KV memory."""
    state = hetsim.load_model("qwen3.5-397b-a17b").state_bytes(4)
    return int(p.memory.kv_bytes * 0.9 / 1.9 // state)


@pytest.mark.parametrize("runtime, per_request", [
    ("sglang", 5),                                          # radix cache + extra_buffer
    ({"name": "sglang", "overlap": False}, 3),              # radix cache, no_buffer
    ({"name": "sglang", "radix_cache": False}, 1)])         # --disable-radix-cache
def test_sglang_caps_a_hybrid_models_running_requests_by_its_state_slots(runtime, per_request):
    p = _q35(runtime)
    assert 0 < p.spec.max_seqs == _slots(p) // per_request < 4096
    assert p.rules.max_seqs == p.spec.max_seqs


def test_sglang_hybrid_cap_with_max_running_requests_set():
    """--max-running-requests with the radix cache off sizes the state pool (one slot each:
    the cap stands); with the radix cache on the ratio's pool still caps it."""
    off = _q35({"name": "sglang", "radix_cache": False}, max_seqs=100000)
    assert off.spec.max_seqs == 100000
    on = _q35("sglang", max_seqs=100000)
    assert on.spec.max_seqs == _slots(on) // 5
    assert _q35("sglang", max_seqs=64).spec.max_seqs == 64


def test_sglang_state_pool_leaves_models_without_linear_layers_alone():
    a = _pool("sglang", acc="b200")
    b = _pool({"name": "sglang", "radix_cache": False}, acc="b200")
    assert a.spec.max_seqs == b.spec.max_seqs == runtimes.sglang_max_running(
        a.memory.kv_tokens, hetsim.load_model("llama-3.1-8b").max_context)


def test_radix_cache_is_sglangs_key():
    with pytest.raises(ConfigError) as e:
        _pool({"name": "vllm", "radix_cache": False})
    assert "radix_cache is SGLang's" in str(e.value)


def test_kv_capacity_follows_each_runtimes_rule():
    total = hetsim.load_accelerator("h100-sxm").hbm_bytes
    for rt in ("vllm", "trtllm", "sglang"):
        m = _pool(rt).memory
        f = _pool(rt).rules.memory_fraction
        want = {"vllm": f * total - m.weight_bytes - m.activation_bytes,
                "trtllm": f * (total - m.weight_bytes - m.activation_bytes),
                "sglang": f * total - m.weight_bytes}[rt]
        assert m.kv_bytes == pytest.approx(want), rt
    # a user's memory_utilization replaces the runtime's fraction, under the runtime's rule
    half = _pool("trtllm", memory_utilization=0.5).memory.kv_bytes
    assert half < _pool("trtllm").memory.kv_bytes


def test_pool_keys_override_the_runtimes_defaults():
    p = _pool({"name": "vllm", "chunked_prefill": False, "overlap": False},
              max_batch_tokens=4096, block_size=32)
    assert (p.spec.max_batch_tokens, p.spec.block_size) == (4096, 32)
    assert (p.rules.chunked_prefill, p.rules.overlap, p.rules.kv_admission) == (
        False, False, "on-demand")


@pytest.mark.parametrize("rt, path, words", [
    ("vlm", "placements.p.pools.m.runtime", "unknown runtime 'vlm' (did you mean 'vllm'?)"),
    ({"name": "vllm", "version": "0.1"}, "placements.p.pools.m.runtime.version",
     "version 0.24.0 only"),
    ({"name": "trtllm", "chunked": True}, "placements.p.pools.m.runtime.chunked",
     "unknown key"),
])
def test_bad_runtime_names_its_key(rt, path, words):
    with pytest.raises(ConfigError) as e:
        _pool(rt)
    assert e.value.path == path and words in e.value.message


def test_no_runtime_keeps_the_idealised_sizes():
    p = _pool(None)
    assert p.rules is None
    assert (p.spec.max_batch_tokens, p.spec.max_seqs, p.spec.block_size,
            p.spec.memory_utilization, p.spec.kv_allocation) == (8192, 256, 16, 0.9, "reserve")


# --- first token in disaggregated placements ------------------------------------------------
def _disagg(link, first_token):
    d = {"name": "t", "model": "llama-3.1-8b",
         "workload": {"requests": 40, "seed": 1, "arrival": {"process": "poisson", "rate_rps": 2},
                      "input_tokens": {"dist": "fixed", "value": 4000},
                      "output_tokens": {"dist": "fixed", "value": 50}},
         "slo": {"ttft_s": 10, "tpot_s": 1},
         "placements": {"pd": {"pools": {
             "prefill": {"role": "prefill", "accelerator": "h100-sxm"},
             "decode": {"role": "decode", "accelerator": "h100-sxm"}},
             "kv_transfer": {"link": link, "first_token": first_token}}}}
    df = hetsim.run(parse_scenario(d, "t.yaml")).requests
    return df


def test_a_slower_kv_link_raises_ttft_only_when_the_decode_side_shows_the_first_token():
    fast, slow = _disagg("roce-400g", "decode"), _disagg("tcp-25g", "decode")
    assert (slow["ttft_s"] > fast["ttft_s"]).all()
    # the first token is streamed once the KV has arrived and the decode side admits it
    assert (fast["first_token_s"] >= fast["kv_ready_s"]).all()
    assert (fast["first_token_s"] == fast["decode_start_s"]).all()
    fast, slow = _disagg("roce-400g", "prefill"), _disagg("tcp-25g", "prefill")
    assert list(slow["ttft_s"]) == list(fast["ttft_s"])
    assert (fast["first_token_s"] == fast["prefill_end_s"]).all()


def test_trtllm_without_chunking_refuses_a_prompt_over_its_budget():
    env, m = make(MixedInstance, "mixed", max_tokens=16, rules=rules(**TRT))
    assert not m.accepts(req(0, 17, 2)) and m.accepts(req(1, 16, 2))
    assert m.fits(req(0, 17, 2))              # its KV, handed over from a prefill pool, fits
    assert "token budget (16) without chunked prefill" in m.refusal(req(0, 17, 2))
    env, m = make(MixedInstance, "mixed", max_tokens=16,
                  rules=rules(**{**TRT, "chunked_prefill": True}))
    assert m.accepts(req(0, 17, 2))


# --- expert parallelism -------------------------------------------------------------------
def test_moe_ep_reads_the_expert_parallel_kernels():
    """A pool's moe_ep selects the MoE grid measured at (tp / ep, ep): a different time than
    the TP-sharded grid's, from the same profile."""
    from hetsim.perf import PerfModel, StepModel
    m = hetsim.load_model("qwen3-235b-a22b")
    pm = PerfModel(hetsim.load_accelerator("h100-sxm", runtime="trtllm"))
    tp_only = StepModel(m, pm, 4, "fp8").decode_time(8, 8 * 700)
    ep = StepModel(m, pm, 4, "fp8", moe_ep=4)
    assert ep.moe_ep == 4 and ep.decode_time(8, 8 * 700) != tp_only
    assert ep._moe_form is not None


MXFP8 = {"name": "vllm", "mxfp4_moe": "mxfp8"}


@pytest.mark.parametrize("acc, runtime, table", [
    ("b200", "trtllm", "w4a8-mxfp4"), ("gb200", "trtllm", "w4a8-mxfp4"),
    ("h200-sxm", "trtllm", "w4a16-mxfp4"), ("b200", "vllm", "w4a16-mxfp4"),
    ("b200", MXFP8, "w4a8-mxfp4"), ("gb200", MXFP8, "w4a8-mxfp4"),
])
def test_mxfp4_experts_run_in_the_runtime_s_activation_format(acc, runtime, table):
    """TRT-LLM on Blackwell runs gpt-oss's MXFP4 experts on MXFP8 activations, on Hopper on
    BF16; vLLM on BF16 unless VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 is set (docs/runtime-rules.md
    §8): a bf16 pool reads that table's MoE grid, exactly."""
    from hetsim.perf import PerfModel, StepModel
    m = hetsim.load_model("gpt-oss-120b")
    name = runtime["name"] if isinstance(runtime, dict) else runtime
    prof = hetsim.load_accelerator(acc, runtime=name)
    pm = PerfModel(prof)
    step = StepModel(m, pm, 1, "bf16", moe_compute=moe_compute(runtime, prof))
    e = m.moe
    grid = pm.kernels.get("moe", (table, m.hidden_size, e.expert_ffn_size, e.top_k,
                                  e.num_experts, 1, 1, "balanced"))
    assert grid is not None and step.measured_moe
    assert step._moe_grid(64.0) == pytest.approx(grid.grid((64.0,)), rel=1e-9)


@pytest.mark.parametrize("model, extra, path, words", [
    ("qwen3-235b-a22b", {"tp": 4, "moe_ep": 8}, "moe_ep", "must divide tp=4"),
    ("llama-3.1-8b", {"tp": 2, "moe_ep": 2}, "moe_ep", "has no MoE layers"),
])
def test_bad_moe_ep_names_its_key(model, extra, path, words):
    with pytest.raises(ConfigError) as e:
        _pool("vllm", model=model, acc="h200-sxm", **extra)
    assert e.value.path.endswith(path) and words in e.value.message



def test_static_fp8_checkpoints_skip_the_tables_scale_computation():
    """``weights: fp8-static`` (ModelOpt's FP8 releases carry static activation scales): on
    TRT-LLM's H100 profile, whose fp8 GEMMs were timed with a ~7 us dynamic scale computation,
    a Qwen3-32B decode step at batch 8 is faster than with ``weights: fp8`` by at least a few
    us per GEMM; a 4k prompt's prefill gains a smaller share; it is a weight format computed
    in fp8 only."""
    dyn = _pool("trtllm", model="qwen3-32b", precision={"compute": "fp8", "weights": "fp8"})
    st = _pool("trtllm", model="qwen3-32b",
               precision={"compute": "fp8", "weights": "fp8-static"})
    m = hetsim.load_model("qwen3-32b")
    a, b = dyn.step_model(m), st.step_model(m)
    gemms = m.num_layers * 4
    decode = a.decode_time(8, 8 * 1024) - b.decode_time(8, 8 * 1024)
    assert decode > gemms * 5e-6
    # the scale computation grows slower than a 4k-token GEMM: prefill gains a smaller share
    # (about 7% against 11%)
    prefill = 1 - b.time([(4096, 4096)]) / a.time([(4096, 4096)])
    assert 0 < prefill < decode / a.decode_time(8, 8 * 1024)
    for bad, key in (({"compute": "fp8-static"}, "compute"),
                     ({"compute": "fp8", "kv": "fp8-static"}, "kv"),
                     ({"compute": "bf16", "weights": "fp8-static"}, "weights")):
        with pytest.raises(ConfigError) as e:
            _pool("trtllm", model="qwen3-32b", precision=bad)
        assert e.value.path.endswith(key) and "fp8-static" in e.value.message


def test_mxfp8_moe_activations_need_an_fp4_device():
    """vLLM's MXFP8-activation MXFP4 kernel is Blackwell's (SM100): asked for on a Hopper pool
    it is refused, naming the key; on Blackwell it is taken."""
    with pytest.raises(ConfigError) as e:
        _pool(MXFP8, acc="h200-sxm", model="gpt-oss-120b")
    assert e.value.path.endswith("runtime.mxfp4_moe") and "fp4" in e.value.message
    assert _pool(MXFP8, acc="b200", model="gpt-oss-120b").rules.mxfp4_moe == "mxfp8"
    assert _pool("vllm", acc="b200", model="gpt-oss-120b").rules.mxfp4_moe == "bf16"


def test_decode_side_first_token_keeps_tpot_unbiased():
    """The prefill's token is streamed as the decode side admits the request, so the output -
    1 decode steps fall between the first and the last token (a 2-token output: one step)."""
    env, d = make(DecodeInstance, "decode", first_token=True)
    r = req(0, 4, 2)
    r.state = State.TRANSFERRING
    d.reserve(r)
    d.join(r)
    env.run()
    assert (r.first_token_s, r.last_token_s) == (0, 1.25)      # one step: 1 + 1/4


def test_vllm_decode_side_samples_the_first_token_again():
    """vLLM's disaggregated proxy discards the prefill's token: the decode side runs output
    steps, the first token at the end of the first."""
    env, d = make(DecodeInstance, "decode", first_token=True, rules=rules())
    r = req(0, 4, 2)
    r.state = State.TRANSFERRING
    d.reserve(r)
    d.join(r)
    env.run()
    assert (r.first_token_s, r.last_token_s) == (1.25, 2.5)
    assert d.decode_tokens == 2


def test_token_pages_grow_sixteen_tokens_at_a_time_and_keep_every_token():
    """SGLang's page of 1 token: growth takes 16 pages at once (one event per 16 tokens), never
    past the sequence's last context; under pressure requests are retracted and recomputed,
    and every token is still produced."""
    R = rules(name="sglang", kv_admission="estimate", mixed_batches=False)
    env, m = make(OnDemandMixedInstance, "mixed", kv_blocks=60, max_tokens=16, block_size=1,
                  rules=R)
    assert m.grain == 16
    rs = [req(i, 4, 20) for i in range(4)]
    for r in rs:
        m.submit(r)
    env.run()
    assert all(r.state is State.COMPLETED for r in rs)
    assert m.decode_tokens == sum(r.output_tokens - 1 for r in rs)
    assert m.kv.used == 0 and m.kv.peak <= 60
    # alone, a sequence of 4 + 20 tokens never holds more than its 23 written contexts
    env, m = make(OnDemandMixedInstance, "mixed", kv_blocks=60, max_tokens=16, block_size=1,
                  rules=R)
    m.submit(req(0, 4, 20))
    env.run()
    assert m.kv.peak == 4 + 19


@pytest.mark.parametrize("acc, runtime, compute", [
    ("b200", "vllm", "fp4"), ("b200", "sglang", "fp4"), ("gb200", "trtllm", "fp4"),
    ("h200-sxm", "vllm", "bf16"), ("h100-sxm", "trtllm", "bf16")])
def test_nvfp4_experts_run_w4a4_where_the_gpu_computes_fp4(acc, runtime, compute):
    """NVFP4 experts (NVIDIA's ModelOpt MoE releases) carry fp4 activation scales and run W4A4
    on fp4 tensor cores, on every runtime; elsewhere on the pool's format
    (docs/runtime-rules.md §8)."""
    from hetsim.perf import PerfModel, StepModel
    m = dataclasses.replace(hetsim.load_model("minimax-m2.5"), expert_weights="fp4")
    prof = hetsim.load_accelerator(acc, runtime=runtime)
    step = StepModel(m, PerfModel(prof), 2, "bf16",
                     moe_compute=moe_compute(runtime, prof))
    assert (step.expert_weights, step.expert_compute) == ("fp4", compute)
    if compute == "fp4":   # the profiles' nvfp4 MoE tables time MiniMax's layer
        assert step.measured_moe


@pytest.mark.parametrize("runtime", [None, "trtllm"])
def test_w4a4_experts_without_a_moe_grid_are_composed_in_fp4(runtime):
    """Where no measured MoE grid times the layer (the generic profile), the routed experts
    are composed of fp4 GEMMs too: NVFP4 experts on a bf16 pool cost what they cost on an fp4
    pool (the same W4A4 kernels), and only the rest of the layer differs."""
    from hetsim.perf import PerfModel, StepModel
    m = dataclasses.replace(hetsim.load_model("minimax-m2.5"), expert_weights="fp4")
    acc = hetsim.load_accelerator("b200")
    pm = PerfModel(acc)
    bf16 = StepModel(m, pm, 2, "bf16", moe_compute=moe_compute(runtime, acc))
    fp4 = StepModel(m, pm, 2, "fp4", moe_compute=moe_compute(runtime, acc))
    assert not bf16.measured_moe and bf16.expert_compute == "fp4"
    for n in (1, 64, 4096):
        assert bf16._routed_analytic(n) == fp4._routed_analytic(n)


def test_a_pool_s_weight_only_fp4_experts_stay_weight_only():
    """W4A4 is an NVFP4 checkpoint's (it carries the activations' fp4 scales): a model whose
    checkpoint is 16-bit on a pool storing weights in fp4 under bf16 compute runs its experts
    as the pool says (W4A16), on every runtime; the same pool with the checkpoint's own NVFP4
    experts runs them W4A4."""
    from hetsim.perf import PerfModel, StepModel
    from hetsim.precision import Precision
    prof = hetsim.load_accelerator("b200", runtime="vllm")
    pool = Precision("bf16", weights="fp4").formats()
    m = hetsim.load_model("minimax-m2.5")
    for model, compute in ((m, "bf16"), (dataclasses.replace(m, expert_weights="fp4"), "fp4")):
        step = StepModel(model, PerfModel(prof), 2, pool,
                         moe_compute=moe_compute("vllm", prof))
        assert (step.expert_weights, step.expert_compute) == ("fp4", compute)

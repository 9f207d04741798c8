import numpy as np
import pytest

from hetsim.config import build
from hetsim.errors import ConfigError
from hetsim.workload import WorkloadSpec, generate


def spec(**kw):
    d = {"requests": 20000, "seed": 5, "arrival": {"process": "poisson", "rate_rps": 10.0},
         "input_tokens": {"dist": "fixed", "value": 100},
         "output_tokens": {"dist": "fixed", "value": 10}}
    d.update(kw)
    return build(WorkloadSpec, d)


def test_poisson_rate_and_determinism():
    a, b = generate(spec()), generate(spec())
    assert np.array_equal(a.arrival_s, b.arrival_s)
    gaps = np.diff(a.arrival_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_gamma_cv_and_constant():
    g = generate(spec(arrival={"process": "gamma", "rate_rps": 10.0, "cv": 3.0}))
    gaps = np.diff(g.arrival_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)
    c = generate(spec(arrival={"process": "constant", "rate_rps": 4.0}))
    assert np.allclose(np.diff(c.arrival_s), 0.25)


def test_changing_one_source_leaves_the_others():
    a = generate(spec())
    b = generate(spec(arrival={"process": "poisson", "rate_rps": 20.0},
                      input_tokens={"dist": "uniform", "min": 10, "max": 20}))
    assert np.array_equal(a.output_tokens, b.output_tokens)


def test_length_distributions():
    ln = generate(spec(input_tokens={"dist": "lognormal", "mean": 1024, "sigma": 0.8,
                                     "max": 100000})).input_tokens
    assert ln.mean() == pytest.approx(1024, rel=0.03)
    clipped = generate(spec(input_tokens={"dist": "lognormal", "mean": 1024, "sigma": 0.8,
                                          "max": 2000})).input_tokens
    assert clipped.max() == 2000 and clipped.min() >= 1
    u = generate(spec(input_tokens={"dist": "uniform", "min": 10, "max": 20})).input_tokens
    assert u.min() == 10 and u.max() == 20
    n = generate(spec(input_tokens={"dist": "normal", "mean": 500, "std": 50})).input_tokens
    assert n.mean() == pytest.approx(500, rel=0.01)


def test_empirical_and_trace(tmp_path):
    (tmp_path / "h.csv").write_text("tokens,weight\n100,1\n200,3\n")
    e = generate(spec(input_tokens={"dist": "empirical", "file": "h.csv"}), tmp_path).input_tokens
    assert set(np.unique(e)) == {100, 200}
    assert (e == 200).mean() == pytest.approx(0.75, abs=0.02)
    (tmp_path / "t.csv").write_text("timestamp_s,input_tokens,output_tokens\n"
                                    "10.0,5,6\n10.5,7,8\n12,9,1\n")
    t = generate(build(WorkloadSpec, {"trace": "t.csv"}), tmp_path)
    assert t.arrival_s.tolist() == [0.0, 0.5, 2.0] and t.output_tokens.tolist() == [6, 8, 1]
    # the spelling: arrival: {trace: path.csv}
    t2 = generate(build(WorkloadSpec, {"arrival": {"trace": "t.csv"}, "requests": 2}), tmp_path)
    assert t2.arrival_s.tolist() == [0.0, 0.5] and t2.input_tokens.tolist() == [5, 7]


def test_presets_match_published_medians():
    w = build(WorkloadSpec, {"requests": 20000, "seed": 1, "preset": "azure-conv-2023",
                             "arrival": {"process": "poisson", "rate_rps": 1.0}})
    r = generate(w)
    assert np.median(r.input_tokens) == pytest.approx(1020, rel=0.05)
    assert np.percentile(r.input_tokens, 90) == pytest.approx(2735, rel=0.07)
    assert np.median(r.output_tokens) == pytest.approx(129, rel=0.05)
    code = generate(build(WorkloadSpec, {"requests": 20000, "seed": 1, "preset": "azure-code-2023",
                                         "arrival": {"process": "gamma", "rate_rps": 1.0}}))
    gaps = np.diff(code.arrival_s)
    assert gaps.std() / gaps.mean() > 5          # the preset's bursty CV (~13) is applied


@pytest.mark.parametrize("bad,where", [
    ({"arrival": {"process": "poison", "rate_rps": 1}}, "did you mean 'poisson'"),
    ({"arrival": {"process": "poisson", "rate_rps": -1}}, "must be > 0"),
    ({"arrival": {"process": "closed"}}, "concurrency"),
    ({"input_tokens": {"dist": "lognormal", "sigma": 1}}, "exactly one of mean or median"),
    ({"input_tokens": {"dist": "lognormal", "mean": 9, "sigma": 1.3e154}}, "sigma: must be <= 10"),
    ({"input_tokens": {"dist": "uniform", "min": 9, "max": 3}}, "min 9 > max 3"),
])
def test_bad_workloads(bad, where):
    with pytest.raises(ConfigError, match=where):
        spec(**bad)


# --- quantile tables ----------------------------------------------------------------------------
QT = [[0, 10], [0.5, 100], [0.9, 1000], [1, 2000]]


def test_quantile_table_reproduces_its_percentiles():
    r = generate(spec(input_tokens={"dist": "quantiles", "quantiles": QT}))
    x = r.input_tokens
    assert x.min() >= 10 and x.max() <= 2000
    assert np.percentile(x, 50) == pytest.approx(100, rel=0.05)
    assert np.percentile(x, 90) == pytest.approx(1000, rel=0.05)
    # piecewise uniform between the points: the mean is the table's integral
    exact = sum((p1 - p0) * (t0 + t1) / 2 for (p0, t0), (p1, t1) in zip(QT, QT[1:]))
    assert x.mean() == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize("table, where", [
    ([[0, 10]], "quantiles"),
    ([[0, 10], [0.5, 5], [1, 20]], "quantiles[1]"),       # tokens fall
    ([[0, 10], [0.5, 20], [0.5, 30], [1, 40]], "quantiles[2]"),   # p does not rise
    ([[0.1, 10], [1, 20]], "quantiles"),                   # does not start at p=0
    ([[0, 10], [1.5, 20]], "quantiles[1]"),                # p > 1
    ([[0, 10, 3], [1, 20]], "quantiles[0]"),               # not a pair
])
def test_bad_quantile_tables_name_the_point(table, where):
    with pytest.raises(ConfigError) as e:
        spec(input_tokens={"dist": "quantiles", "quantiles": table})
    assert e.value.path.endswith(where)


def test_sharegpt_distserve_preset_matches_its_source():
    """The preset's percentiles are those of DistServe's OPT-13B ShareGPT workload (input mean
    780 / median 758, output mean 176 / median 67); OPT's 2048-token context clips the pairs."""
    r = generate(spec(preset="sharegpt-distserve", input_tokens=None, output_tokens=None,
                      requests=40000, clip_to_context=True), max_context=2048)
    assert 0 < r.clipped < 40000 // 10
    assert np.median(r.input_tokens) == pytest.approx(758, rel=0.05)
    assert np.median(r.output_tokens) == pytest.approx(67, rel=0.1)
    assert r.input_tokens.mean() == pytest.approx(780, rel=0.05)
    assert r.output_tokens.mean() == pytest.approx(176, rel=0.08)
    assert (r.input_tokens + r.output_tokens).max() <= 2048


def test_mlperf_llama2_openorca_preset_matches_its_source():
    """The preset keeps the sourced facts of MLPerf's llama2-70b OpenOrca set: input 48..1021
    tokens with mean 5,463,976 / 24,576 = 222.33, generated output 1..1024 with mean 294.45
    (the lognormal shape between them is an assumption; see the preset)."""
    r = generate(spec(preset="mlperf-llama2-openorca", input_tokens=None, output_tokens=None,
                      requests=200_000), max_context=4096)
    assert r.input_tokens.min() >= 48 and r.input_tokens.max() <= 1021
    assert r.output_tokens.min() >= 1 and r.output_tokens.max() <= 1024
    assert r.input_tokens.mean() == pytest.approx(5463976 / 24576, rel=0.01)
    assert r.output_tokens.mean() == pytest.approx(294.45, rel=0.01)
    assert r.clipped == 0


def test_clipped_lognormal_mean_is_exact():
    """The closed form the MLPerf preset solves with agrees with its limits: no clipping gives
    the lognormal mean median x e^(sigma^2/2); a clip at the median from below, half the draws
    lifted to it."""
    from hetsim.workload.presets import _clipped_mean
    assert _clipped_mean(100, 0.5, 1e-9, 1e12) == pytest.approx(100 * np.exp(0.125), rel=1e-9)
    x = np.random.default_rng(0).lognormal(np.log(100), 0.8, 400_000)
    assert _clipped_mean(100, 0.8, 60, 300) == pytest.approx(np.clip(x, 60, 300).mean(),
                                                             rel=0.003)

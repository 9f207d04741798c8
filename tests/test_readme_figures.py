"""README's generated figures match what the code prints (benchmarks/readme_figures.py).

The quickstart table, the design-space table and the faults section's figures are regenerated
from seeded runs and compared with README.md; on a mismatch, rerun the script and commit
README.md.
"""
import difflib

import pytest

from .conftest import ROOT, benchmark_module


@pytest.fixture(scope="module")
def figures():
    with benchmark_module("readme_figures") as mod:
        yield mod


def test_readme_figures_are_what_the_code_prints(figures):
    current = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = figures.expected_readme(current)
    diff = "".join(difflib.unified_diff(current.splitlines(keepends=True),
                                        expected.splitlines(keepends=True),
                                        "README.md", "README.md (regenerated)"))
    assert expected == current, ("README figures are stale: run `python "
                                 "benchmarks/readme_figures.py` and commit README.md\n" + diff)


def test_only_the_marked_regions_are_replaced(figures):
    text = ("before\n<!-- readme_figures:x -->\nold\nlines\n<!-- /readme_figures:x -->\n"
            "after <!-- readme_figures:x --> inline mentions are not markers\n")
    assert figures.replace_region(text, "x", "new") == (
        "before\n<!-- readme_figures:x -->\nnew\n<!-- /readme_figures:x -->\n"
        "after <!-- readme_figures:x --> inline mentions are not markers\n")
    with pytest.raises(ValueError, match="readme_figures:y"):
        figures.replace_region(text, "y", "new")


def test_check_exits_1_with_a_diff_when_stale_and_0_when_current(figures, tmp_path,
                                                                 monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# t\n<!-- readme_figures:a -->\nold\n<!-- /readme_figures:a -->\n")
    monkeypatch.setattr(figures, "README", readme)
    monkeypatch.setattr(figures, "REGIONS", {"a": lambda: "new"})
    assert figures.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "-old\n+new\n" in out and out.startswith("--- README.md")
    assert "old" in readme.read_text()                       # --check writes nothing
    readme.chmod(0o640)
    assert figures.main([]) == 0
    assert readme.read_text() == "# t\n<!-- readme_figures:a -->\nnew\n<!-- /readme_figures:a -->\n"
    assert readme.stat().st_mode & 0o777 == 0o640            # replaced, mode kept
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]   # no temp file left
    assert figures.main(["--check"]) == 0


def test_prose_the_run_no_longer_shows_fails_instead_of_going_stale(figures):
    summary = {"kv_transfer_exposed_s": {"mean": 0.1}, "tpot_s": {"p99": 0.01},
               "bottleneck": "prefill-bound"}
    with pytest.raises(figures.StaleProse, match="transfer-engine.*becomes transfer-bound"):
        figures._transfer_engine({"rdma": summary, "tcp": summary}, None)


def test_a_failing_resilience_check_is_not_written_into_the_readme(figures, tmp_path,
                                                                   monkeypatch):
    import yaml
    d = yaml.safe_load(figures.CHECKS.read_text())
    d["placements"]["hetero-2p3d"]["pools"]["prefill"]["instances"] = 1
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    monkeypatch.setattr(figures, "CHECKS", f)
    with pytest.raises(figures.StaleProse, match="check-resilience.*every run passes"):
        figures.check_resilience()

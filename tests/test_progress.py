"""Progress on stderr (hetsim.progress and the commands using it): a tqdm bar on a terminal,
plain lines without carriage returns anywhere else, nothing with -q, and never a change to
stdout or results."""
import copy
import io
import re
import subprocess
import sys

import yaml

from hetsim.cli import main
from hetsim.progress import Progress

from .conftest import ROOT


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _lines(text: str) -> list[str]:
    assert "\r" not in text, repr(text[:200])
    return text.splitlines()


def test_a_log_gets_plain_lines_at_most_one_per_tenth():
    log = io.StringIO()
    with Progress("run", "requests", stream=log) as p:
        for i in range(1, 1001):
            p("coloc", i, 1000)
    lines = _lines(log.getvalue())
    assert 1 <= len(lines) <= 11, lines
    assert lines[-1].startswith("run: coloc: 1000/1000 requests (100%)")
    done = [int(re.search(r": (\d+)/1000", ln).group(1)) for ln in lines]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert all(b - a >= 100 for a, b in zip(done, done[1:-1])), done


def test_each_label_gets_its_own_lines_and_an_unknown_total_counts_up():
    log = io.StringIO()
    with Progress("goodput", "rates simulated", stream=log) as p:
        for name in ("a", "b"):
            for k in (1, 2, 3):
                p(name, k)
    lines = _lines(log.getvalue())
    assert lines[0].startswith("goodput: a: 1 rates simulated")
    assert [ln.split(":")[1].strip() for ln in lines] == sorted(ln.split(":")[1].strip()
                                                              for ln in lines)
    assert any(ln.startswith("goodput: a: 3 rates") for ln in lines)   # the last, on close
    assert lines[-1].startswith("goodput: b: 3 rates")
    assert "/" not in "".join(lines)                   # no total to show


def test_a_terminal_gets_a_tqdm_bar():
    tty = _Terminal()
    with Progress("plan", stream=tty) as p:
        for i in (1, 2, 3):
            p("verify", i, 3)
    out = tty.getvalue()
    assert "\r" in out and "plan: verify: 100%" in out and "3/3" in out


def test_nothing_shown_when_disabled_or_before_the_delay():
    for kw in ({"enabled": False}, {"delay_s": 60.0}):
        for stream in (io.StringIO(), _Terminal()):
            with Progress("run", stream=stream, **kw) as p:
                for i in range(1, 101):
                    p("x", i, 100)
            assert stream.getvalue() == "", kw


# --- the commands -------------------------------------------------------------------------------
def _scenario(tmp_path, base_dict) -> str:
    d = copy.deepcopy(base_dict)
    d["workload"]["requests"] = 150
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(f)


def test_goodput_progress_goes_to_stderr_as_lines_and_leaves_stdout_alone(tmp_path, base_dict):
    f = _scenario(tmp_path, base_dict)
    cmd = [sys.executable, "-m", "hetsim", "goodput", f, "--seeds", "1", "--json"]
    loud = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    quiet = subprocess.run(cmd + ["-q"], capture_output=True, text=True, cwd=ROOT)
    assert loud.returncode == quiet.returncode == 0, loud.stderr
    assert loud.stdout == quiet.stdout and quiet.stderr == ""
    lines = _lines(loud.stderr)
    assert lines and all(ln.startswith(("goodput: coloc: ", "goodput: disagg: ")) for ln in lines)
    assert any("disagg" in ln for ln in lines)


def test_plan_progress_lines_and_the_same_result(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "examples" / "plan" / "llama8b-chat.yaml").read_text())
    spec.update(inventory={"h100-sxm": {"max": 2}, "a100-sxm": {"max": 2}}, tp=[1],
                precisions=["bf16"], interconnects=["roce-400g"], shapes=["colocated"],
                target_rps=4, verify=2, verify_requests=200, budget_usd_per_hour=None)
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(spec, sort_keys=False))
    outs = []
    for quiet in (["-q"], []):
        assert main(["plan", str(f), "--out", str(tmp_path / "o"), *quiet]) == 0
        got = capsys.readouterr()
        outs.append((re.sub(r", [0-9.]+ s\n", "\n", got.out), got.err))
    assert outs[0][0] == outs[1][0] and outs[0][1] == ""
    lines = _lines(outs[1][1])
    assert lines and all(ln.startswith("plan: verify: ") for ln in lines)
    assert lines[-1].startswith("plan: verify: 2/2 candidates (100%)")

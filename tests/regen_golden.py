"""Rewrite the golden results on purpose: python -m tests.regen_golden"""
import json

import hetsim

from .conftest import SCENARIOS
from .test_scenarios import GOLDEN

if __name__ == "__main__":
    res = hetsim.run(SCENARIOS / "quickstart.yaml").to_json()
    (GOLDEN / "quickstart.json").write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", GOLDEN / "quickstart.json")

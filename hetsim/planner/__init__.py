"""``hetsim plan``: the cheapest clusters that serve a target load within SLO, from an inventory.

Search in three steps, so it stays practical:
1. **Enumerate** colocated, homogeneous-PD and heterogeneous-PD candidates over the inventory's
   accelerators, the allowed TP degrees and compute precisions, and the candidate KV links.
2. **Prune analytically** with the performance model: memory fit, precision support, TP
   dividing the heads, per-instance capacity under the SLOs (prefill: an M/D/1 queue whose
   90th-percentile wait plus service fits the TTFT target; decode: the largest batch whose step
   fits the TPOT target and whose KV fits memory), rate matching (each pool sized to the target),
   KV link load (and, for a candidate whose prefill and decode sit on different sites, the
   shared cross-site link's load and crossing time), availability caps and the budget.
3. **Verify by simulation** the cheapest survivors of each shape at the target rate (growing the
   pool that misses its SLO by one instance, up to three times), then measure the goodput of the
   verified plans for the cost-vs-goodput Pareto frontier.

``objective: goodput-per-accelerator`` asks DistServe's question instead: which serving unit (one
colocated instance, or one prefill instance plus one decode instance) sustains the most goodput
per accelerator within the inventory. Units are ranked by their analytical capacity per
accelerator, and the best ``verify`` of each shape get a simulated goodput search.

Modules, each importing only those above it: ``spec`` (the YAML schema and loader),
``capacity`` (closed-form per-instance capacity), ``search`` (enumeration and pruning),
``result`` (order, frontier, the written scenario), ``verify`` (simulation; ``plan``).
"""
from .capacity import Option
from .result import PlanResult, by_cost, pareto
from .search import Candidate
from .spec import PlanSpec, Stock, load_plan_spec
from .verify import plan

__all__ = ["PlanSpec", "Stock", "Candidate", "Option", "PlanResult", "plan", "load_plan_spec",
           "by_cost", "pareto"]

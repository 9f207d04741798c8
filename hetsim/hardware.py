"""Accelerator and interconnect profiles: small YAML files referenced by name.

Units are converted once here (GB/s -> B/s, TFLOP/s -> FLOP/s, us -> s) and exposed as
properties with SI units, so nothing downstream converts again.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import build, fraction, meta, non_negative, positive, read_yaml, at_least_one
from .errors import ConfigError, match_name
from .precision import PRECISION_BYTES, unknown_precision

__all__ = ["Accelerator", "Interconnect", "Source", "Price", "Efficiency", "ScaleUp", "Curve",
           "Calibration",
           "load_accelerator", "load_interconnect", "list_profiles", "list_runtimes",
           "profile_dirs"]


def _known_precision(v):
    bad = [p for p in (v if isinstance(v, (list, dict)) else [v]) if p not in PRECISION_BYTES]
    if bad:
        return unknown_precision(bad[0]) + f"; known: {', '.join(PRECISION_BYTES)}"
    return None


@dataclass(frozen=True)
class Source:
    key: str = field(metadata=meta("short tag used in comments, e.g. STAS-A"))
    ref: str = field(metadata=meta("where the number comes from: URL, repository@commit and path"))
    note: str = ""


@dataclass(frozen=True)
class Price:
    usd_per_hour: float = field(metadata=meta("on-demand $ per accelerator-hour", non_negative))
    date: str = field(default="", metadata=meta("when the price was observed"))
    source: str = field(default="", metadata=meta("source key or provider/SKU"))


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of datasheet peaks and fixed overheads (assumptions until calibrated)."""
    gemm: float = field(default=0.7, metadata=meta("fraction of dense peak a large GEMM reaches",
                                                   fraction))
    attention: float = field(default=0.5, metadata=meta(
        "fraction of dense peak that flash-style prefill attention reaches", fraction))
    hbm: float = field(default=0.8, metadata=meta("fraction of HBM bandwidth memory-bound "
                                                  "kernels reach", fraction))
    kernel_overhead_us: float = field(default=4.0, metadata=meta(
        "fixed cost per kernel launch (us)", non_negative))
    iteration_overhead_ms: float = field(default=3.0, metadata=meta(
        "fixed cost per engine iteration: scheduling, sampling, host sync (ms)", non_negative))
    note: str = ""


@dataclass(frozen=True)
class Curve:
    """A fitted throughput correction as a function of one shape variable: log(scale) piecewise
    linear in log2(x) (so a knot-to-knot slope <= 1 keeps time non-decreasing in work between
    knots too), flat beyond the ends. 1.0 means "as the datasheet model predicts"."""
    log2_x: list[float] = field(metadata=meta("knots: log2 of the shape variable", at_least_one))
    scale: list[float] = field(metadata=meta("throughput multiplier at each knot", at_least_one))

    def __post_init__(self):
        if len(self.log2_x) != len(self.scale):
            raise ConfigError("log2_x and scale differ in length", path="scale")
        if any(b <= a for a, b in zip(self.log2_x, self.log2_x[1:])):
            raise ConfigError("knots must increase", path="log2_x")
        if any(s <= 0 for s in self.scale):
            raise ConfigError("scales must be > 0", path="scale")

    def __call__(self, x: float) -> float:
        import math
        lx = math.log2(max(x, 1e-30))
        xs, ys = self.log2_x, self.scale
        if lx <= xs[0]:
            return ys[0]
        if lx >= xs[-1]:
            return ys[-1]
        i = next(i for i in range(1, len(xs)) if xs[i] >= lx)
        f = (lx - xs[i - 1]) / (xs[i] - xs[i - 1])
        return ys[i - 1] * (ys[i] / ys[i - 1]) ** f


@dataclass(frozen=True)
class Calibration:
    """What ``hetsim calibrate`` measured and fitted, with provenance."""
    device: str = field(metadata=meta("device name as torch reports it"))
    torch: str = ""
    driver: str = ""
    date: str = ""
    base_profile: str = field(default="", metadata=meta("the datasheet profile it refines"))
    grid: str = field(default="", metadata=meta("shape grid: quick | full | csv"))
    measurements: str = field(default="", metadata=meta("raw measurements CSV beside the file"))
    gemm: dict[str, Curve] = field(default_factory=dict, metadata=meta(
        "per precision: compute-throughput correction vs m, fitted on compute-bound GEMMs"))
    gemm_memory: dict[str, Curve] = field(default_factory=dict, metadata=meta(
        "per precision: memory-throughput correction vs m, fitted on memory-bound GEMMs "
        "(caches push it above 1, small-m kernels below)"))
    attention_prefill: dict[str, Curve] = field(default_factory=dict, metadata=meta(
        "per precision: compute-throughput correction vs query tokens"))
    attention_decode: dict[str, Curve] = field(default_factory=dict, metadata=meta(
        "per precision: decode-attention compute-throughput correction vs FLOPs"))
    attention_decode_memory: dict[str, Curve] = field(default_factory=dict, metadata=meta(
        "per KV precision: decode-attention memory-throughput correction vs bytes read"))
    allreduce: dict[str, dict[str, float]] = field(default_factory=dict, metadata=meta(
        "per device count: {latency_s, bus_bandwidth_gb_s} of a measured all-reduce "
        "(nccl-tests' bus bandwidth); replaces the scale-up link's alpha-beta for that count"))
    engine_overhead_ms: float = field(default=0.0, metadata=meta(
        "the part of efficiency.iteration_overhead_ms kept from the base profile: the serving "
        "engine's host work per iteration (scheduling, sampling), which device kernels do not "
        "show; the rest was measured", non_negative))
    small_kernel_us: float = field(default=0.0, metadata=meta(
        "measured cost of one tiny kernel (from the probes); charged only to the surplus "
        "kernels of the unfused torch reference when scoring whole iterations", non_negative))
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict, metadata=meta(
        "median / p90 absolute percentage error per op class, before and after, held-out"))
    tables: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=meta(
        "per op of a runtime profile: the kernel tables read, their version, rows read, "
        "points kept and held out, rows dropped or merged by reason, grids and filled cells"))
    kernels: str = field(default="", metadata=meta(
        "measured kernel grids (hetsim.perf.kernels .npz) beside the profile; the step model "
        "reads kernel times from them where they cover a shape"))
    base_efficiency: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "the datasheet profile's efficiency block, restored when re-fitting"))
    notes: str = ""


@dataclass(frozen=True)
class ScaleUp:
    link: str = field(metadata=meta("interconnect profile name of the scale-up fabric"))
    domain_size: int = field(default=8, metadata=meta("accelerators in one scale-up domain",
                                                      positive))


@dataclass(frozen=True)
class Accelerator:
    name: str
    description: str
    vendor: str
    tflops: dict[str, float] = field(metadata=meta("dense peak TFLOP/s (TOPS for int) per "
                                                   "precision", _known_precision))
    precisions: list[str] = field(metadata=meta("precisions the matrix units compute in",
                                                _known_precision, at_least_one))
    hbm_gb: float = field(metadata=meta(
        "device memory as the device reports it (the whole, before any runtime's reserve), "
        "GB (1e9 B); a vendor's '80GB' is often 80 GiB = 85.9 GB", positive))
    hbm_bandwidth_tbps: float = field(metadata=meta("device memory bandwidth, TB/s", positive))
    compute_units: int = field(metadata=meta("SMs / CUs / cores that GEMM tiles spread over",
                                             positive))
    scale_up: ScaleUp | None = None
    scale_out_nic: str = field(default="", metadata=meta("typical per-accelerator NIC profile"))
    host_link: str = field(default="pcie-gen5", metadata=meta("host interconnect profile"))
    tdp_w: float = field(default=0.0, metadata=meta("board power, W", non_negative))
    price: Price | None = None
    efficiency: Efficiency = field(default_factory=Efficiency)
    calibration: Calibration | None = None
    runtime: str = field(default="", metadata=meta(
        "serving runtime whose measured kernels the calibration carries (vllm | sglang | "
        "trtllm); empty: a generic profile"))
    aliases: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list, metadata=meta(
        "where every number comes from", at_least_one))
    notes: str = ""

    def __post_init__(self):
        missing = [p for p in self.precisions if p not in self.tflops]
        if missing:
            raise ConfigError(f"precision {missing[0]!r} is listed but has no peak",
                              path="tflops")

    # SI-unit views, converted once.
    def peak_flops(self, precision: str) -> float:
        return self.tflops[precision] * 1e12

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gb * 1e9

    @property
    def hbm_bandwidth(self) -> float:
        return self.hbm_bandwidth_tbps * 1e12

    @property
    def usd_per_hour(self) -> float:
        return self.price.usd_per_hour if self.price else 0.0

    def supports(self, precision: str) -> bool:
        return precision in self.precisions


@dataclass(frozen=True)
class Interconnect:
    name: str
    description: str
    kind: str = field(metadata=meta("scale-up | network | host"))
    bandwidth_gb_s: float = field(metadata=meta("per-direction bandwidth per port, GB/s",
                                                positive))
    latency_us: float = field(metadata=meta("one-way latency, us", non_negative))
    efficiency: float = field(default=0.85, metadata=meta("achievable fraction of bandwidth for "
                                                          "large transfers", fraction))
    per_transfer_overhead_us: float = field(default=0.0, metadata=meta(
        "fixed cost per transfer: descriptor, registration, connection (us)", non_negative))
    rdma: bool = field(default=True, metadata=meta("GPU-direct capable (false: staged TCP)"))
    per_peer_gb_s: float | None = field(default=None, metadata=meta(
        "per-direction bandwidth to one peer in a point-to-point mesh (xGMI), GB/s", positive))
    collective_base_us: float = field(default=6.6, metadata=meta(
        "fixed start-up of a ring collective, us (NCCL ring LL base latency)", non_negative))
    collective_hop_us: float | None = field(default=None, metadata=meta(
        "per-hop latency inside a ring collective, us (default: latency_us)", non_negative))
    aliases: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list, metadata=meta(
        "where every number comes from", at_least_one))
    notes: str = ""

    @property
    def bandwidth(self) -> float:
        """Achievable per-direction bandwidth, B/s."""
        return self.bandwidth_gb_s * 1e9 * self.efficiency

    @property
    def latency(self) -> float:
        return self.latency_us * 1e-6

    @property
    def per_transfer_overhead(self) -> float:
        return self.per_transfer_overhead_us * 1e-6

    def collective_bandwidth(self, n_devices: int) -> float:
        """Achievable per-device, per-direction bandwidth of a ring over ``n_devices``, B/s.

        NOTE: on a point-to-point mesh (xGMI) a ring of n uses n-1 peer links at most, so a TP2
        group on MI300X gets 64 GB/s, not 448.
        """
        bw = self.bandwidth
        if self.per_peer_gb_s:
            bw = min(bw, self.per_peer_gb_s * 1e9 * self.efficiency * max(1, n_devices - 1))
        return bw

    @property
    def collective_hop(self) -> float:
        return (self.latency_us if self.collective_hop_us is None else self.collective_hop_us) * 1e-6


_KINDS = {"accelerator": ("accelerators", Accelerator), "interconnect": ("interconnects",
                                                                        Interconnect)}


def profile_dirs(extra: list[str | Path] = ()) -> list[Path]:
    """Directories searched for profiles, first match wins.

    ``extra`` (e.g. a scenario's ``hardware_profiles:``), then ``$HETSIM_PROFILE_PATH``
    (os.pathsep-separated), then the profiles shipped with hetsim.
    """
    dirs = [Path(p) for p in extra]
    dirs += [Path(p) for p in os.environ.get("HETSIM_PROFILE_PATH", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    for shipped in (here / "_profiles", here.parent / "hardware_profiles"):
        if shipped.is_dir():
            dirs.append(shipped)
            break
    return dirs


#: Calibrated accelerator profiles (``hetsim calibrate`` output) live beside the datasheet ones
#: and take precedence over them; ``name@datasheet`` asks for the datasheet profile.
CALIBRATED = "calibrated"
DATASHEET_SUFFIX = "@datasheet"


def _stamp(f: Path) -> tuple[str, int, int]:
    """A file's identity for the memos below: path, mtime and size (an edit is a new key)."""
    st = f.stat()
    return str(f), st.st_mtime_ns, st.st_size


# NOTE: the two memos hold immutable results (name tuples, frozen profiles) keyed by a file's
# identity, so they change nothing a run can see; they spare every resolution re-parsing every
# profile (a quickstart validate parsed 850 YAML files before them).
@functools.lru_cache(maxsize=4096)
def _names(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """(name, *aliases) of one profile file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ConfigError("profile must be a mapping with a 'name'", file=path)
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError("must be a list of names", file=path, path="aliases")
    return (raw["name"], *aliases)


@functools.lru_cache(maxsize=1024)
def _built(kind: str, path: str, mtime_ns: int, size: int) -> "Accelerator | Interconnect":
    try:
        built = build(_KINDS[kind][1], read_yaml(path))
    except ConfigError as e:
        raise e.with_file(path) from None
    cal = getattr(built, "calibration", None)
    if cal is not None and cal.kernels and not os.path.isabs(cal.kernels):
        # the grids file is named relative to the profile; kept absolute from here on
        kernels = str(Path(path).parent / cal.kernels)
        if not os.path.isfile(kernels):     # found when the profile loads, not mid-run
            raise ConfigError(f"{cal.kernels}: kernel grids file not found beside the profile",
                              file=path, path="calibration.kernels")
        built = dataclasses.replace(built, calibration=dataclasses.replace(cal, kernels=kernels))
    return built


def _index(kind: str, dirs: list[Path], calibrated: bool = True) -> dict[str, Path]:
    """Every name and alias of ``kind`` -> the profile file it loads. An alias loads exactly
    what its canonical name does (a calibrated ``h100-sxm`` also answers to ``h100``)."""
    sub, _ = _KINDS[kind]
    subs = [sub] + ([CALIBRATED] if kind == "accelerator" and calibrated else [])
    files: dict[str, Path] = {}     # canonical name -> file
    alias: dict[str, str] = {}      # alias -> canonical name
    for d in reversed(dirs):  # earlier directories override later ones
        for s in subs:        # calibrated/ overrides accelerators/ within a directory
            local: dict[str, Path] = {}
            for f in sorted((d / s).glob("*.yaml")) if (d / s).is_dir() else []:
                names = _names(*_stamp(f))
                for n in names:
                    if n in local:
                        raise ConfigError(f"duplicate {kind} name {n!r} (also in {local[n]})",
                                          file=str(f))
                    local[n] = f
                files[names[0]] = f
                alias.update((a, names[0]) for a in names[1:])
    index = {a: files[c] for a, c in alias.items()}
    index.update(files)     # a canonical name wins over another profile's alias
    return index


def list_profiles(kind: str, extra_dirs: list[str | Path] = ()) -> list[str]:
    """Canonical names (not aliases) of the profiles of ``kind``."""
    index = _index(kind, profile_dirs(extra_dirs))
    return sorted({n for n, f in index.items() if n == _names(*_stamp(f))[0]})


def _load(kind: str, name: str, extra_dirs) -> Accelerator | Interconnect:
    datasheet = name.casefold().endswith(DATASHEET_SUFFIX)
    if datasheet:
        name = name[:-len(DATASHEET_SUFFIX)]
    index = _index(kind, profile_dirs(extra_dirs), calibrated=not datasheet)
    try:
        f = index[match_name(name, index, kind)]
    except ConfigError as e:
        raise ConfigError(e.message + "; see `hetsim profiles list`") from None
    return _built(kind, *_stamp(f))


#: runtime profiles (``hetsim calibrate --from-aiconfigurator``): ``<name>.<runtime>.yaml``
RUNTIMES_DIR = "runtimes"


def _runtime_files(dirs: list[Path]) -> dict[str, dict[str, Path]]:
    """Canonical accelerator name -> runtime -> profile file (first directory wins)."""
    out: dict[str, dict[str, Path]] = {}
    for d in reversed(dirs):
        for f in sorted((d / RUNTIMES_DIR).glob("*.yaml")) if (d / RUNTIMES_DIR).is_dir() else []:
            name, dot, runtime = f.stem.rpartition(".")
            if dot:
                out.setdefault(name, {})[runtime] = f
    return {n: dict(sorted(r.items())) for n, r in sorted(out.items())}


def list_runtimes(extra_dirs: list[str | Path] = ()) -> dict[str, list[str]]:
    """Accelerator name -> the runtimes it has a runtime profile for."""
    return {n: list(r) for n, r in _runtime_files(profile_dirs(extra_dirs)).items()}


def load_accelerator(name: str, extra_dirs: list[str | Path] = (),
                     runtime: str | None = None) -> Accelerator:
    """Load an accelerator profile by name or alias, e.g. ``load_accelerator("h100-sxm")``.

    A calibrated profile of that name (``hardware_profiles/calibrated/``) wins over the datasheet
    one; ``"h100-sxm@datasheet"`` forces the datasheet profile. ``runtime="vllm"`` loads the
    runtime profile instead (``runtimes/h100-sxm.vllm.yaml``: the datasheet profile with that
    runtime's measured kernel grids)."""
    if not runtime:
        return _load("accelerator", name, extra_dirs)
    if name.casefold().endswith(DATASHEET_SUFFIX):
        raise ConfigError(f"{name}: a runtime profile is built on the datasheet profile; give "
                          f"the name without {DATASHEET_SUFFIX} to load its {runtime} profile")
    dirs = profile_dirs(extra_dirs)
    acc = _load("accelerator", name, extra_dirs)       # the name's errors, as without a runtime
    have = _runtime_files(dirs).get(acc.name, {})
    if not have:
        raise ConfigError(f"{acc.name} has no runtime profiles (no {RUNTIMES_DIR}/{acc.name}."
                          f"<runtime>.yaml); `hetsim profiles list` shows which accelerators "
                          f"have them")
    try:
        runtime = match_name(runtime, have, f"runtime for {acc.name}")
    except ConfigError as e:
        raise ConfigError(e.message) from None
    built = _built("accelerator", *_stamp(have[runtime]))
    if built.name != acc.name or built.runtime != runtime:
        raise ConfigError(f"a runtime profile of {acc.name} for {runtime} must say name: "
                          f"{acc.name} and runtime: {runtime}", file=str(have[runtime]))
    return built


def load_interconnect(name: str, extra_dirs: list[str | Path] = ()) -> Interconnect:
    """Load an interconnect profile by name or alias, e.g. ``load_interconnect("roce-400g")``."""
    return _load("interconnect", name, extra_dirs)

import re

import pytest

import hetsim
from hetsim.config import read_yaml
from hetsim.errors import ConfigError

ACCELERATORS = ["a100-sxm", "h100-sxm", "h100-pcie", "h200-sxm", "h20", "b200", "gb200", "l40s",
                "l4", "a10g", "mi300x", "mi325x", "mi355x", "gaudi2", "gaudi3", "tpu-v5e",
                "tpu-v5p", "tpu-v6e", "trn2"]
LINKS = ["nvlink3", "nvlink4", "nvlink5", "pcie-gen4", "pcie-gen5", "ib-hdr-200g", "ib-ndr-400g",
         "roce-100g", "roce-200g", "roce-400g", "tcp-25g", "tcp-100g", "efa-400g", "xgmi-mi300",
         "ici-v5e"]


@pytest.mark.parametrize("name", ACCELERATORS)
def test_every_required_accelerator_loads_with_sources(name):
    a = hetsim.load_accelerator(name)
    assert a.name == name and a.sources
    assert all(a.supports(p) and a.tflops[p] > 0 for p in a.precisions)
    assert a.price and a.price.usd_per_hour > 0 and a.price.source
    # its scale-up link and NIC exist
    if a.scale_up:
        hetsim.load_interconnect(a.scale_up.link)
    hetsim.load_interconnect(a.scale_out_nic)


@pytest.mark.parametrize("name", LINKS)
def test_every_required_interconnect_loads_with_sources(name):
    link = hetsim.load_interconnect(name)
    assert link.sources and link.bandwidth_gb_s > 0 and 0 < link.efficiency <= 1


def test_dense_not_sparse_and_per_direction():
    # the reference table's quick checks: dense H100 bf16 = 989 (not 1979), NVLink4 450 (not 900)
    assert hetsim.load_accelerator("h100-sxm").tflops["bf16"] == 989
    assert hetsim.load_accelerator("h100-sxm").tflops["fp8"] == 1979
    assert hetsim.load_accelerator("gaudi3").tflops["bf16"] == 1677
    assert hetsim.load_interconnect("nvlink4").bandwidth_gb_s == 450
    assert hetsim.load_interconnect("roce-400g").bandwidth_gb_s == 50
    assert not hetsim.load_accelerator("a100-sxm").supports("fp8")


def test_xgmi_pair_gets_one_peer_link():
    x = hetsim.load_interconnect("xgmi-mi300")
    assert x.collective_bandwidth(2) == pytest.approx(64e9 * x.efficiency)
    assert x.collective_bandwidth(8) == pytest.approx(448e9 * x.efficiency)


def test_aliases_and_suggestions():
    assert hetsim.load_accelerator("h100").name == "h100-sxm"
    with pytest.raises(ConfigError, match="did you mean 'h100-sxm'"):
        hetsim.load_accelerator("h100-sxn")
    with pytest.raises(ConfigError, match="did you mean 'roce-400g'"):
        hetsim.load_interconnect("roce-40g")


def test_listing_has_everything():
    assert set(ACCELERATORS) <= set(hetsim.list_profiles("accelerator"))
    assert set(LINKS) <= set(hetsim.list_profiles("interconnect"))


def test_extra_profile_dir_overrides(tmp_path):
    d = tmp_path / "accelerators"
    d.mkdir()
    src = (hetsim.hardware.profile_dirs()[-1] / "accelerators" / "h100-sxm.yaml").read_text()
    (d / "h100-sxm.yaml").write_text(re.sub(r"(?m)^hbm_gb: .*$", "hbm_gb: 96", src))
    assert hetsim.load_accelerator("h100-sxm", [tmp_path]).hbm_gb == 96
    assert hetsim.load_accelerator("h100-sxm").hbm_gb == 85.899


# The parts aiconfigurator-core measures that hetsim had no profile for, and the links they need.
AIC_PARTS = ["b300", "gb300", "rtx-pro-6000-server", "arc-pro-b60"]
AIC_LINKS = ["ib-xdr-800g", "pcie-gen6", "pcie-gen5-x8"]


def _numbers(raw, prefix=""):
    """Key paths of every number (and profile reference) a profile file sets, e.g.
    ``tflops.bf16``; names, prose and the sources themselves are not numbers."""
    prose = {"name", "description", "vendor", "kind", "aliases", "sources", "notes", "note",
             "precisions", "rdma", "date", "source"}
    for key, value in raw.items():
        if key in prose:
            continue
        if isinstance(value, dict):
            yield from _numbers(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def _tags(text):
    return set(re.findall(r"\[([A-Z][A-Z0-9-]*)\]", text))


@pytest.mark.parametrize("name", AIC_PARTS + AIC_LINKS)
def test_every_number_names_its_source(name):
    # each number's key path is named in a source's note, and every [TAG] cited is a source key
    kind = "accelerators" if name in AIC_PARTS else "interconnects"
    p = hetsim.load_accelerator(name) if name in AIC_PARTS else hetsim.load_interconnect(name)
    raw = read_yaml(hetsim.hardware.profile_dirs()[-1] / kind / f"{name}.yaml")
    keys = {s.key for s in p.sources}
    covered = {w for s in p.sources for w in re.findall(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*", s.note)}
    missing = [path for path in _numbers(raw) if path not in covered]
    assert not missing, f"{name}: no source names {missing}"
    text = p.notes + " ".join(s.note for s in p.sources)
    text += getattr(getattr(p, "efficiency", None), "note", "")
    assert _tags(text) <= keys, f"{name}: cites {_tags(text) - keys} without a sources entry"
    if getattr(p, "price", None):
        assert p.price.source and p.price.date


@pytest.mark.parametrize("name", AIC_PARTS)
def test_aiconfigurator_parts_load_with_their_links(name):
    a = hetsim.load_accelerator(name)
    assert a.name == name and name in hetsim.list_profiles("accelerator")
    assert all(a.supports(p) and a.tflops[p] > 0 for p in a.precisions)
    for link in (a.scale_up.link, a.scale_out_nic, a.host_link):
        assert hetsim.load_interconnect(link).bandwidth_gb_s > 0


def test_blackwell_ultra_int8_is_cut_and_peaks_dense():
    # the vetted table's call: B300/GB300 INT8 is the cut value (not stas00's 4500/5000), and
    # bf16 is the dense figure (not the 4500/5000 with sparsity)
    b300, gb300 = hetsim.load_accelerator("b300"), hetsim.load_accelerator("gb300")
    assert b300.tflops["int8"] == 153.5 and gb300.tflops["int8"] == 165
    assert b300.tflops["bf16"] == 2250 and gb300.tflops["bf16"] == 2500
    assert b300.tflops["fp4"] == 14000 and gb300.tflops["fp4"] == 15000
    # the capacity each reports (275040 and 284208 MiB: aiconfigurator's system files)
    assert (b300.hbm_gb, gb300.hbm_gb) == (288.4, 298.014)
    assert (b300.scale_up.domain_size, gb300.scale_up.domain_size) == (8, 72)
    assert hetsim.load_accelerator("hgx-b300").name == "b300"


def test_pcie_cards_have_no_nvlink_and_b60_no_fp8():
    rtx, b60 = hetsim.load_accelerator("rtx-pro-6000-server"), hetsim.load_accelerator("b60")
    assert rtx.scale_up.link == "pcie-gen5" and b60.scale_up.link == "pcie-gen5-x8"
    x8, x16 = hetsim.load_interconnect("pcie-gen5-x8"), hetsim.load_interconnect("pcie-gen5")
    assert x8.bandwidth_gb_s == x16.bandwidth_gb_s / 2
    assert not b60.supports("fp8") and rtx.supports("fp4")
    assert b60.vendor == "intel" and b60.efficiency.hbm == 0.5


def test_nvidia_memory_is_what_the_device_reports():
    # NVIDIA's "80GB" is 80 GiB: each profile aiconfigurator covers states its system file's
    # mem_capacity (bytes, as nvidia-smi reports) in GB, base, runtime and calibrated alike
    from importlib import resources

    import yaml
    from hetsim import kerneldb
    systems = resources.files("aiconfigurator_core") / "systems"
    for system, name in kerneldb.SYSTEMS.items():
        cap = yaml.safe_load((systems / f"{system}.yaml").read_text())["gpu"]["mem_capacity"]
        assert hetsim.load_accelerator(name).hbm_gb == round(cap / 1e9, 3), name
        assert hetsim.load_accelerator(f"{name}@datasheet").hbm_bytes == pytest.approx(
            cap, rel=1e-5), name
        for rt in hetsim.hardware.list_runtimes().get(name, ()):
            assert hetsim.load_accelerator(name, runtime=rt).hbm_gb == round(cap / 1e9, 3)

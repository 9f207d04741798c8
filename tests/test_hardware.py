import pytest

import hetsim
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
    (d / "h100-sxm.yaml").write_text(src.replace("hbm_gb: 80", "hbm_gb: 96"))
    assert hetsim.load_accelerator("h100-sxm", [tmp_path]).hbm_gb == 96
    assert hetsim.load_accelerator("h100-sxm").hbm_gb == 80

"""The machine record of reports: what float results depend on besides code, data and seed."""

from __future__ import annotations

from pathlib import Path

import torch

from recsys.utils.machine import KERNEL_ENV, cpu_model, describe, native_libraries, numeric_environment

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1
flags\t\t: fpu avx2 avx512f

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Another Processor
"""


def test_the_cpu_is_named_with_its_family_and_model_numbers_of_the_first_processor(tmp_path: Path) -> None:
    """A virtual machine names every Intel CPU alike; the model number tells two generations apart."""
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert cpu_model(info) == {
        "vendor": "GenuineIntel",
        "family": "6",
        "model": "167",
        "name": "Intel(R) Xeon(R) Processor",
        "stepping": "1",
    }


def test_without_cpuinfo_the_cpu_still_has_a_name(tmp_path: Path) -> None:
    assert set(cpu_model(tmp_path / "missing")) == {"name"}


def test_the_record_names_torchs_kernel_level_and_the_kernel_variables_set(monkeypatch) -> None:
    for name in KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    env = numeric_environment()
    assert env["torch_cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["kernel_env"] == {"OPENBLAS_CORETYPE": "Haswell"}
    line = describe(env)
    assert f"kernels {env['torch_cpu_capability']}" in line and "OPENBLAS_CORETYPE=Haswell" in line


def test_an_older_record_is_described_with_what_it_has() -> None:
    """Reports written before the record existed hold a plain CPU name (or nothing)."""
    assert describe({"cpu": "Intel(R) Xeon(R) Processor"}) == "Intel(R) Xeon(R) Processor"
    assert describe({}) == "unknown CPU"
    record = {
        "cpu": {"name": "X", "family": "6", "model": "85", "stepping": "7"},
        "native_libraries": [
            {"internal_api": "openblas", "architecture": "Haswell"},
            {"internal_api": "openmp"},
        ],
    }
    assert describe(record) == "X (family 6, model 85, stepping 7); BLAS openblas Haswell"


def test_a_failing_library_listing_leaves_the_libraries_out_instead_of_failing_the_report(
    monkeypatch,
) -> None:
    import threadpoolctl

    def broken() -> list:
        raise RuntimeError("dlopen failed")

    monkeypatch.setattr(threadpoolctl, "threadpool_info", broken)
    assert native_libraries() == []
    assert numeric_environment()["native_libraries"] == []

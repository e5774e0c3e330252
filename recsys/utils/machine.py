"""What a run's floating-point results depend on besides the code, the data and the seed.

Training is deterministic on one machine (``train.deterministic``), but torch's CPU kernels, the BLAS
libraries under numpy and scipy and their vector code are chosen per CPU at run time: AVX-512 and AVX2
kernels round differently, a last-place difference in the first weights grows through training, and a
near-tied validation choice can flip (``docs/experiments/2026-12-06-cross-machine``). Reports record
:func:`numeric_environment` so two runs of one command can be told apart.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

KERNEL_ENV = (
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "OPENBLAS_CORETYPE",
    "DNNL_MAX_CPU_ISA",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
"""Environment variables that choose the kernels or the thread counts of torch, MKL and OpenBLAS."""

log = logging.getLogger(__name__)


CPUINFO_KEYS = {
    "model name": "name",
    "vendor_id": "vendor",
    "cpu family": "family",
    "model": "model",
    "stepping": "stepping",
}
"""The ``/proc/cpuinfo`` fields :func:`cpu_model` keeps, and the names it gives them."""


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The CPU's model name and, where ``cpuinfo`` gives them, its vendor, family, model and stepping
    (a virtual machine often names every Intel CPU "Intel(R) Xeon(R) Processor"; the model number tells
    two generations apart). Elsewhere the name is :func:`platform.processor`."""
    found: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if not key:  # the first processor's block ends at the first empty line
                break
            if key in CPUINFO_KEYS:
                found.setdefault(CPUINFO_KEYS[key], value.strip())
    except (OSError, UnicodeDecodeError):
        pass
    return found or {"name": platform.processor() or "unknown"}


def native_libraries() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries loaded in this process (numpy's and scipy's OpenBLAS, torch's
    OpenMP) with their version, threads and the CPU code they chose (OpenBLAS's ``architecture``), from
    threadpoolctl where it is installed (``implicit`` brings it); empty without it or where it fails."""
    try:
        from threadpoolctl import threadpool_info  # optional: implicit's dependency, not ours
    except ImportError:  # pragma: no cover
        return []
    try:
        libraries = threadpool_info()
    except Exception as err:  # a record must never stop the report it belongs to
        log.warning("could not list the loaded BLAS/OpenMP libraries: %s", err)
        return []
    keep = ("internal_api", "prefix", "version", "architecture", "num_threads")
    return [{k: lib[k] for k in keep if lib.get(k) is not None} for lib in libraries]


def numeric_environment() -> dict[str, Any]:
    """The CPU (:func:`cpu_model`), torch's version, kernel level and threads, the loaded BLAS libraries
    (:func:`native_libraries`) and the kernel-choosing variables of :data:`KERNEL_ENV` that are set."""
    import numpy as np
    import torch  # heavy: imported when a report is written, not when the CLI starts

    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "native_libraries": native_libraries(),
        "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
    }


def describe(env: dict[str, Any]) -> str:
    """One line for a report: the CPU (with its family and model numbers), torch's kernel level, the
    BLAS code chosen and any kernel-choosing variable set, from :func:`numeric_environment`'s record
    (older records without these keys give what they have)."""
    cpu = env.get("cpu") or {}
    name = cpu.get("name", "unknown CPU") if isinstance(cpu, dict) else str(cpu)
    if isinstance(cpu, dict) and cpu.get("model"):
        name += (
            f" (family {cpu.get('family', '?')}, model {cpu['model']}, stepping {cpu.get('stepping', '?')})"
        )
    parts = [name]
    if env.get("torch_cpu_capability"):
        parts.append(f"torch {env.get('torch', '?')} kernels {env['torch_cpu_capability']}")
    blas = sorted(
        {
            f"{b['internal_api']} {b['architecture']}"
            for b in env.get("native_libraries", [])
            if b.get("architecture")
        }
    )
    parts += [f"BLAS {b}" for b in blas]
    if env.get("kernel_env"):
        parts.append(", ".join(f"{k}={v}" for k, v in env["kernel_env"].items()))
    return "; ".join(parts)

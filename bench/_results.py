"""What every benchmark script records besides its numbers: the machine, and the JSON file."""

from __future__ import annotations

import json
import os
import pathlib
import platform

import jax


def _processor() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()``
    is often empty)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine(**extra) -> dict:
    """Platform, processor, core count, Python and JAX versions and JAX's default device,
    plus ``extra`` entries."""
    device = jax.devices()[0]
    return {"platform": platform.platform(), "processor": _processor(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__,
            "device": f"{device.platform}: {device.device_kind}", "xla_flags": os.environ.get("XLA_FLAGS", ""),
            **extra}


def write(path: pathlib.Path, result: dict) -> None:
    """Write ``result`` as indented JSON to ``path`` (its folder created) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")

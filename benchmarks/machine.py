"""One line naming the machine a benchmark ran on, for the header of its table."""

from __future__ import annotations

import os
import platform

import torch


def describe(device: torch.device, *versions: str) -> str:
    """GPU name, or CPU model, cores, torch threads and load average; then torch, ``versions`` and Python."""
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        except OSError:
            pass
        hardware = f"{cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    software = ", ".join([f"torch {torch.__version__}", *versions, f"Python {platform.python_version()}"])
    return f"{hardware}{load}; {software}, {platform.system()}"

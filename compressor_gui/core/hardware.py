"""The machine that runs a model: CPU instruction sets, cores, memory, runtime versions.

INT8 accuracy and speed depend on the CPU: onnxruntime's x86 U8S8 kernels use VPMADDUBSW
where there is no VNNI, and its int16 sums saturate (their quantization docs say so); on
AVX-512 VNNI / AVX-VNNI / AMX CPUs and on ARM they do not. The same facts are read from the
local machine and, through the same parser, from an SSH target's probe output.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Flags worth knowing for INT8/BF16 kernels, in /proc/cpuinfo's spelling (x86 "flags",
# ARM "Features": asimddp is the dot-product extension, i8mm the int8 matrix multiply).
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
)

# One word per family whose INT8 behaviour differs, ordered from least to most capable.
ISA_CLASSES = ("x86", "x86-avx2", "x86-avx512", "x86-vnni", "x86-amx", "arm", "arm-dotprod")

# Where a probe over SSH prints each section (see `probe_command`).
_SECTIONS = ("arch", "cpuinfo", "meminfo", "nproc", "runtimes")


# One interpreter for every runtime: the installed distribution's version (no import, so no
# seconds spent loading OpenVINO), else the module's own __version__ (onnxruntime-gpu, apt).
_RUNTIME_PROBE = """
import importlib
for name in ("onnxruntime", "openvino", "tensorrt"):
    try:
        from importlib.metadata import version
        found = version(name)
    except Exception:
        try:
            found = importlib.import_module(name).__version__
        except Exception:
            continue
    print(name, found)
"""


def probe_command(python: str = "python3") -> str:
    """A POSIX shell line printing what `machine_from_probe` reads; the CPU part needs no
    Python (a Jetson without onnxruntime still tells its cores and instruction sets)."""
    return (
        "echo '@@arch'; uname -m; echo '@@cpuinfo'; cat /proc/cpuinfo; "
        "echo '@@meminfo'; head -n 3 /proc/meminfo; echo '@@nproc'; nproc; "
        f"echo '@@runtimes'; {shlex.quote(python)} -c {shlex.quote(_RUNTIME_PROBE)} 2>/dev/null; "
        "true"
    )


@dataclass(frozen=True)
class MachineInfo:
    """What one machine offers a model; `runtimes` maps runtime name -> version."""

    arch: str
    cpu_model: str
    isa: tuple[str, ...]
    cores: int
    memory_bytes: int
    runtimes: Mapping[str, str] = field(default_factory=dict)

    @property
    def isa_class(self) -> str:
        """The INT8-relevant family: one of ISA_CLASSES."""
        flags = set(self.isa)
        if self.arch in ("aarch64", "arm64") or "asimd" in flags:
            return "arm-dotprod" if {"asimddp", "i8mm"} & flags else "arm"
        if {"amx_int8", "amx_tile"} & flags:
            return "x86-amx"
        if {"avx512_vnni", "avx_vnni"} & flags:
            return "x86-vnni"
        if "avx512f" in flags:
            return "x86-avx512"
        if "avx2" in flags:
            return "x86-avx2"
        return "x86"

    @property
    def u8s8_saturates(self) -> bool:
        """True where onnxruntime's U8S8 INT8 kernels sum into int16 and can saturate."""
        return self.isa_class in ("x86", "x86-avx2", "x86-avx512")

    @property
    def summary(self) -> str:
        """One line for results: CPU model, INT8 family, cores, memory, runtimes."""
        flags = ", ".join(f for f in self.isa if f in _SHOWN_FLAGS) or "no SIMD flags read"
        memory = f"{self.memory_bytes / 2**30:.0f} GiB" if self.memory_bytes else "memory n/a"
        runtimes = ", ".join(f"{k} {v}" for k, v in sorted(self.runtimes.items()))
        line = f"{self.cpu_model} ({self.arch}; {flags}), {self.cores} cores, {memory}"
        return f"{line}; {runtimes}" if runtimes else line

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runtimes"] = dict(self.runtimes)
        data["isa_class"] = self.isa_class
        data["u8s8_saturates"] = self.u8s8_saturates
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineInfo:
        return cls(
            arch=str(data.get("arch", "")),
            cpu_model=str(data.get("cpu_model", "")),
            isa=tuple(data.get("isa", ())),
            cores=int(data.get("cores", 0)),
            memory_bytes=int(data.get("memory_bytes", 0)),
            runtimes=dict(data.get("runtimes", {})),
        )


# ARM cores of the boards people deploy to (Jetson Nano/TX1/TX2, Xavier, Orin; Raspberry Pi).
_ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd42": "Cortex-A78AE",
    "0x004": "NVIDIA Carmel",
}

_SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...], int]:
    """CPU model, the ISA_FLAGS present and the processor count from /proc/cpuinfo text."""
    model = part = ""
    flags: set[str] = set()
    processors = 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            processors += 1
        elif key in ("model name", "hardware", "cpu model") and not model:
            model = value
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key == "cpu part" and not part:
            part = value.lower()
    if not model and part:
        model = f"ARM {_ARM_PARTS.get(part, f'CPU part {part}')}"
    return model, tuple(f for f in ISA_FLAGS if f in flags), processors


def _meminfo_bytes(text: str) -> int:
    found = re.search(r"MemTotal:\s+(\d+)\s*kB", text)
    return int(found.group(1)) * 1024 if found else 0


def machine_from_probe(text: str) -> MachineInfo:
    """A MachineInfo from `probe_command()`'s output (run locally or over SSH)."""
    sections: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    current = None
    for line in text.splitlines():
        if line.startswith("@@") and line[2:].strip() in sections:
            current = line[2:].strip()
        elif current:
            sections[current].append(line)
    model, isa, processors = parse_cpuinfo("\n".join(sections["cpuinfo"]))
    arch = (sections["arch"] or [""])[0].strip()
    nproc = "".join(sections["nproc"]).strip()
    runtimes = {}
    for line in sections["runtimes"]:
        name, _, version = line.strip().partition(" ")
        if name and version:
            runtimes[name] = version
    return MachineInfo(
        arch=arch or "unknown",
        cpu_model=model or "unknown CPU",
        isa=isa,
        cores=int(nproc) if nproc.isdigit() else processors,
        memory_bytes=_meminfo_bytes("\n".join(sections["meminfo"])),
        runtimes=runtimes,
    )


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


_LOCAL: MachineInfo | None = None


def local_machine() -> MachineInfo:
    """This machine, read once per process (no subprocess: runtime versions from imports)."""
    global _LOCAL
    if _LOCAL is None:
        model, isa, processors = parse_cpuinfo(_read("/proc/cpuinfo"))
        _LOCAL = MachineInfo(
            arch=platform.machine() or "unknown",
            cpu_model=model or platform.processor() or "unknown CPU",
            isa=isa,
            cores=os.cpu_count() or processors,
            memory_bytes=_meminfo_bytes(_read("/proc/meminfo")),
            runtimes=_runtime_versions(),
        )
    return _LOCAL


def _runtime_versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("onnxruntime", "openvino"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine_key(machine: MachineInfo) -> str:
    """What a cached INT8 measurement depends on: the INT8 family and the onnxruntime version."""
    return f"{machine.isa_class}/ort-{machine.runtimes.get('onnxruntime', 'none')}"

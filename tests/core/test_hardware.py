"""Machine facts: instruction sets from real /proc/cpuinfo layouts, and the probe's parser."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from compressor_gui.core.hardware import (
    MachineInfo,
    local_machine,
    machine_from_probe,
    machine_key,
    parse_cpuinfo,
    probe_command,
)

CPUINFO = Path(__file__).resolve().parents[1] / "fixtures" / "cpuinfo"


@pytest.mark.parametrize(
    ("sample", "model", "isa_class", "saturates"),
    [
        ("epyc_avx2.txt", "AMD EPYC 7B12", "x86-avx2", True),
        ("epyc_vnni.txt", "AMD EPYC 9B14", "x86-vnni", False),
        ("xeon_amx.txt", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "x86-amx", False),
        ("orin_arm.txt", "ARM Cortex-A78AE", "arm-dotprod", False),
    ],
)
def test_cpu_family_is_read_from_cpuinfo(sample, model, isa_class, saturates):
    found_model, isa, processors = parse_cpuinfo((CPUINFO / sample).read_text())
    arch = "aarch64" if sample.startswith("orin") else "x86_64"
    machine = MachineInfo(arch, found_model, isa, processors, 0)
    assert found_model == model
    assert machine.isa_class == isa_class
    assert machine.u8s8_saturates is saturates


def test_probe_output_parses_into_the_local_machine_facts():
    out = subprocess.run(
        ["sh", "-c", probe_command("python3")], capture_output=True, text=True, check=True
    ).stdout
    probed = machine_from_probe(out)
    here = local_machine()
    assert (probed.arch, probed.isa, probed.isa_class) == (here.arch, here.isa, here.isa_class)
    assert probed.memory_bytes == here.memory_bytes > 0
    assert probed.cores >= 1


def test_probe_of_a_board_without_python_still_names_its_cpu():
    text = "@@arch\naarch64\n@@cpuinfo\n" + (CPUINFO / "orin_arm.txt").read_text()
    text += "@@meminfo\nMemTotal:        7620000 kB\n@@nproc\n6\n@@runtimes\n"
    machine = machine_from_probe(text)
    assert machine.cores == 6 and machine.isa_class == "arm-dotprod"
    assert machine.runtimes == {} and "Cortex-A78AE" in machine.summary


def test_cache_key_separates_cpu_families_and_runtime_versions():
    avx2 = MachineInfo("x86_64", "a", ("avx2",), 2, 0, {"onnxruntime": "1.32.0"})
    vnni = MachineInfo("x86_64", "a", ("avx2", "avx512f", "avx512_vnni"), 2, 0, avx2.runtimes)
    newer = MachineInfo("x86_64", "a", ("avx2",), 2, 0, {"onnxruntime": "1.33.0"})
    assert len({machine_key(avx2), machine_key(vnni), machine_key(newer)}) == 3


def test_machine_round_trips_through_json_dicts():
    here = local_machine()
    assert MachineInfo.from_dict(here.to_dict()) == here

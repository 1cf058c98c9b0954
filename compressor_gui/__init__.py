"""compressor-gui: inspect, compress, benchmark and deploy neural networks, offline.

OpenVINO sends usage telemetry each time it is imported (`openvino.tools.ovc` sends an
"import" event) and NNCF on each call, both through the `openvino_telemetry` package, and
both fall back to a silent stub when that package cannot be imported. An offline tool
blocks the import for every process that loads this package: the app, the CLI and their
child processes (the remote runner does the same on a target).
"""

import sys

sys.modules.setdefault("openvino_telemetry", None)  # `import openvino_telemetry` fails

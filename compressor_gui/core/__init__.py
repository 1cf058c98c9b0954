"""Qt-free core: pure functions and frozen dataclasses over onnx/torch."""

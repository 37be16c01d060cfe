"""`manage.py benchmark_encoder`: each runtime measured in its own child, compared with PyTorch's vectors."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command


def test_it_compares_a_runtime_with_pytorch_on_the_same_chunks() -> None:
    out = io.StringIO()
    call_command("benchmark_encoder", chunks=32, variants="openvino/f32", json=True, stdout=out)

    (result,) = json.loads(out.getvalue())
    assert result["variant"] == "openvino/f32"
    assert result["cosine_mean"] >= 0.9999 and result["cosine_min"] >= 0.999
    assert result["chunks_per_second"] > 0 and result["chunks_per_cpu_second"] > 0
    assert result["x_torch"] > 0 and result["x_torch_cpu"] > 0 and result["peak_rss_mb"] > 50


def test_it_refuses_an_unknown_variant() -> None:
    with pytest.raises(CommandError, match="unknown variants \\['onnx/f32'\\]"):
        call_command("benchmark_encoder", variants="onnx/f32")

"""OpenVINO's CPU bf16 inference of an exported detector, emulated in fp32 for a CPU without bf16
units: accuracy only (``bench_precision.py --bf16-emulation``).

OpenVINO's CPU plugin, asked for ``INFERENCE_PRECISION_HINT=bf16``, runs every node in bf16 except
the graph's tail: the nodes reached walking back from the outputs without crossing a
convolution, matmul, RoI pooling or resize, which stay fp32. For this detector the tail is the
post-processing (box decoding, top-k, NMS, clipping, softmax); backbone, RPN head, RoIAlign, box
head and predictors run in bf16. The emulation rounds the weights of those convolutions and
matmuls to bf16 (round to nearest even) and every float tensor they and the nodes between them
produce (a Cast to bf16 and back after each node); biases stay fp32, as they are added in the
fp32 accumulator. OpenVINO rounds once per fused node, this after every node: it rounds at least
as often as the real thing.

    python benchmarks/bf16_emulation.py output/onnx_r18_c4 output/onnx_r18_c4_bf16emu
"""
from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIGNIFICANT = {"Conv", "ConvTranspose", "Gemm", "MatMul", "MaxRoiPool", "Resize"}


def round_bf16(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to the nearest bfloat16 (ties to even), as float32."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def tail_nodes(graph) -> set:
    """Names of the nodes OpenVINO keeps in fp32: reached from the outputs without crossing a
    significant node."""
    producer = {o: n for n in graph.node for o in n.output}
    tail, seen, stack = set(), set(), [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        node = producer[name]
        if node.op_type not in SIGNIFICANT and node.name not in tail:
            tail.add(node.name)
            stack.extend(node.input)
    return tail


def emulate_bf16(export_dir: Path, out: Path) -> dict:
    """Write the emulating graph of ``export_dir/model.onnx`` to ``out`` (a model.onnx path; the
    export's model.json is copied beside it). Returns counts of what was rounded."""
    model = onnx.load(str(export_dir / "model.onnx"))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    graph = model.graph
    tail = tail_nodes(graph)
    initializers = {i.name: i for i in graph.initializer}
    weights = 0
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and node.name not in tail:
            init = initializers.get(node.input[1])
            if init is not None and init.data_type == TensorProto.FLOAT:
                init.CopyFrom(numpy_helper.from_array(round_bf16(numpy_helper.to_array(init)), init.name))
                weights += 1
    consumers = defaultdict(list)
    for node in graph.node:
        for k, name in enumerate(node.input):
            consumers[name].append((node, k))
    outputs = {o.name for o in graph.output}
    nodes, tensors = [], 0
    for node in list(graph.node):
        nodes.append(node)
        if node.name in tail or node.op_type in ("Constant", "Shape", "Size"):
            continue
        for name in node.output:
            if types.get(name) != TensorProto.FLOAT or name in outputs:
                continue
            down, up = name + "__bf16", name + "__bf16_fp32"
            nodes.append(helper.make_node("Cast", [name], [down], to=TensorProto.BFLOAT16, name=node.name + "/to_bf16"))
            nodes.append(helper.make_node("Cast", [down], [up], to=TensorProto.FLOAT, name=node.name + "/to_fp32"))
            for consumer, k in consumers[name]:
                consumer.input[k] = up
            tensors += 1
    del graph.node[:]
    graph.node.extend(nodes)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    shutil.copy(export_dir / "model.json", out.with_name("model.json"))
    return {"fp32_tail_nodes": len(tail), "rounded_tensors": tensors, "rounded_weights": weights}


if __name__ == "__main__":
    print(emulate_bf16(Path(sys.argv[1]), Path(sys.argv[2]) / "model.onnx"))

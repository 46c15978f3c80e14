"""Ask a Triton Inference Server for the top-5 classes of some images (KServe v2 over HTTP, with tritonclient).

The images are prepared exactly as the model's sidecar says (resize, crop, normalise), sent as one batch, and
Triton's classification extension answers with class names from the repository's labels file:

    pip install 'alexnet-deploy[triton]'
    python examples/triton_client.py --sidecar repo/alexnet/1/model.onnx.json cat.jpg dog.jpg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DATATYPES = {"float32": "FP32", "float16": "FP16"}  # sidecar dtype -> KServe v2 datatype


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: image files, the sidecar, the server URL, the model name and how many classes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (JPEG, PNG, ...)")
    parser.add_argument(
        "--sidecar", type=Path, required=True, help="the model's sidecar, e.g. repo/alexnet/1/model.onnx.json"
    )
    parser.add_argument("--url", default="localhost:8000", help="Triton's HTTP endpoint (default: localhost:8000)")
    parser.add_argument("--model", default="alexnet", help="model name in the repository (default: alexnet)")
    parser.add_argument("--top", type=int, default=5, help="classes per image (default: 5)")
    return parser.parse_args(argv)


def load_batch(sidecar: dict, images: list[Path]) -> np.ndarray:
    """The images as one float32 N x 3 x H x W batch, preprocessed by the sidecar's eval preset."""
    from alexnet_deploy.core.data import Preprocessing, eval_transform, load_rgb

    transform = eval_transform(Preprocessing.from_dict(sidecar["preprocessing"]))
    return np.stack([transform(load_rgb(p)).numpy() for p in images]).astype(np.float32)


def build_request(sidecar: dict, batch: np.ndarray, top: int):
    """The request's input tensor and its output, asked for as the top ``top`` classes (Triton's extension)."""
    import tritonclient.http as httpclient

    dtype = sidecar["input"].get("dtype", "float32")
    inp = httpclient.InferInput(sidecar["input"]["name"], list(batch.shape), DATATYPES[dtype])
    inp.set_data_from_numpy(batch.astype(dtype), binary_data=True)
    out = httpclient.InferRequestedOutput(sidecar["output"]["name"], binary_data=True, class_count=top)
    return [inp], [out]


def parse_classes(values: np.ndarray) -> list[list[tuple[float, int, str]]]:
    """Triton's ``b"score:index:label"`` entries -> per image ``[(score, index, label)]`` (labels may hold ``:``)."""
    rows = []
    for row in np.asarray(values).reshape(len(values), -1):
        entries = (v.decode() if isinstance(v, bytes) else str(v) for v in row)
        rows.append([(float(s), int(i), label) for s, i, label in (e.split(":", 2) for e in entries)])
    return rows


def main(argv: list[str] | None = None) -> None:
    """Send the images and print each one's top classes with their logits."""
    import tritonclient.http as httpclient

    args = parse_args(argv)
    sidecar = json.loads(args.sidecar.read_text())
    inputs, outputs = build_request(sidecar, load_batch(sidecar, args.images), args.top)
    with httpclient.InferenceServerClient(args.url) as client:
        result = client.infer(args.model, inputs, outputs=outputs)
    for path, classes in zip(args.images, parse_classes(result.as_numpy(sidecar["output"]["name"])), strict=True):
        print(f"{path}: " + ", ".join(f"{label} ({score:.2f})" for score, _, label in classes))


if __name__ == "__main__":
    main()

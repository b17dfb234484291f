"""Validate a manifest as the server will, before the exporter writes anything.

manifest.schema.json is the server's JSON Schema (src/runtime/manifest-schema.ts; a unit test
keeps the two equal); the cross-field checks below are the ones src/runtime/bundle.ts makes
on the values a user passes to export_bundle (labels, preprocess, outputs).
"""
from __future__ import annotations

import json
import os
from typing import List

_SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "manifest.schema.json")


def manifest_problems(manifest: dict) -> List[str]:
    """Every reason deq-serve would refuse this manifest (empty when it would load it)."""
    try:
        import jsonschema
    except ImportError as err:  # pragma: no cover - the docs and CI install it
        raise RuntimeError("deq_serve_export needs jsonschema to validate the manifest "
                           "(Debian: apt-get install python3-jsonschema; pip: jsonschema)") from err
    with open(_SCHEMA_FILE, encoding="utf8") as fh:
        schema = json.load(fh)
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for e in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in e.absolute_path) or "(manifest)"
        problems.append(f"{where}: {e.message}")
    if problems:
        return problems
    graphs = manifest["graphs"]
    head = graphs.get("head")
    outputs = {o["name"]: o for o in (head["outputs"] if head else manifest.get("state_outputs") or
                                      [{"name": "z_star", "shape": manifest["state"]["shape"]}])}
    for role, name in manifest["outputs"].items():
        if name not in outputs:
            problems.append(f"outputs.{role}: names {name!r}, which the model does not output ({', '.join(outputs)})")
    if manifest["task"] == "image-classification":
        logits = manifest["outputs"].get("logits")
        if logits is None:
            problems.append("outputs.logits is required for image-classification (output_roles={'logits': ...})")
        elif logits in outputs:
            classes = outputs[logits]["shape"][-1] if outputs[logits]["shape"] else 1
            if len(manifest["labels"]) != classes:
                problems.append(f"labels: {len(manifest['labels'])} labels for {classes} logits")
        p = manifest["preprocess"]
        if len(p["mean"]) != p["channels"] or len(p["std"]) != p["channels"]:
            problems.append(f"preprocess.mean and preprocess.std need {p['channels']} entries (one per channel); "
                            f"got {len(p['mean'])} and {len(p['std'])}")
        inputs = graphs["inject"]["inputs"]
        shape = inputs[0]["shape"]
        if len(inputs) != 1 or len(shape) != 3 or shape != [p["channels"], p["height"], p["width"]]:
            problems.append(f"preprocess: channels, height, width = [{p['channels']}, {p['height']}, {p['width']}] "
                            f"do not match the image input the model takes ({[i['shape'] for i in inputs]})")
    elif manifest["task"] == "language-model":
        if "target_logprobs" not in manifest["outputs"]:
            problems.append("outputs.target_logprobs is required for language-model (output_roles=...)")
        if head is not None and len(head["inputs"]) < 2:
            problems.append("a language model's head takes [state, targets]: pass parity_extra={'targets': ...}")
    return problems

"""Edit ``params.yaml`` in place, keeping its comments and layout (ruamel.yaml round trip), atomically."""

from __future__ import annotations

import io
from pathlib import Path

from ruamel.yaml import YAML

from pipeline.config import load_params
from pipeline.data.images import atomic_write_bytes


def add_folder_dataset(params_file: Path, name: str, path: str, color: str, task: str) -> str:
    """Register a folder dataset and make the active profile prepare and evaluate it; returns the profile."""
    load_params(params_file)  # refuse to edit a file that is already malformed
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(params_file.read_text())
    if document.get("folders") is None:
        document["folders"] = {}
    document["folders"][name] = {"path": path, "color": color}
    profile = document["profile"]
    active = document["profiles"][profile]
    for names in (document["datasets"], active["datasets"], active[task]["testsets"]):
        if name not in names:
            names.append(name)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    atomic_write_bytes(params_file, buffer.getvalue().encode())
    load_params(params_file)
    return profile

"""YAML reading for run configs: PyYAML's safe loader, plus the YAML 1.2 float forms.

YAML 1.1 (PyYAML) reads `3e-4` (no dot) as a string; YAML 1.2 and every user mean a number.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3`, `3E+4`, `-2e5` as floats."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse one YAML document (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=ConfigLoader)

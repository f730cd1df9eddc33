"""How params files are read as YAML: PyYAML's safe loader with two mends.

YAML 1.1 reads ``1e-5`` as a string, where researchers write learning rates that way; and
PyYAML keeps the last of two equal keys, so a second ``train:`` section would silently drop the
first's settings. :func:`xlr.config.load_params` validates what :func:`read_yaml` returns.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"  # <<: *anchor, whose keys a mapping may override


class ParamsLoader(yaml.SafeLoader):
    """The safe loader, with scientific notation read as floats and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class names an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice; keep one (the first would be ignored)",
                    key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """``text`` parsed with :class:`ParamsLoader`; raises ``yaml.YAMLError`` on bad YAML."""
    return yaml.load(text, Loader=ParamsLoader)

"""The text of a `--config` file as data, with every key given once: a key given twice is refused, naming the key
and its lines, never resolved silently.

TOML's parser refuses a second key itself ("Cannot overwrite a value (at line 3, column 11)"): `toml_error` adds
the line it points at. YAML's safe loader keeps the last value of a repeated key without a word: `load_yaml` reads
with a `yaml.SafeLoader` whose mappings refuse a key given twice (merge keys, `<<`, keep their meaning: an
explicit key overrides a merged one).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any


class DuplicateKeyError(ValueError):
    """A mapping of a config file that gives one key twice."""


def load_yaml(text: str, path: Path) -> Any:
    """`yaml.safe_load(text)`, refusing a key given twice in any mapping (DuplicateKeyError naming the key, its two
    lines and the fix). PyYAML's own errors (yaml.YAMLError) pass through."""
    import yaml

    return yaml.load(text, Loader=_unique_key_loader(str(path)))  # noqa: S506 (a SafeLoader subclass)


@lru_cache(maxsize=None)
def _unique_key_loader(path: str) -> type:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader whose mappings refuse a key given twice."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader refuses it itself
                    continue
                if first is not None:
                    raise DuplicateKeyError(f"--config {path!r}: key {key!r} is given twice (lines {first} and "
                                            f"{line}); YAML would keep the last silently. Keep one of them")
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def toml_error(path: Path, text: str, error: Exception) -> str:
    """The message for a TOML file `tomllib` refused: its error, and for a key or table given twice (`Cannot
    overwrite`, `Cannot declare`), the text of the line it points at."""
    message = f"--config {str(path)!r} is not valid TOML: {error}"
    found = re.search(r"\(at line (\d+), column \d+\)", str(error))  # tomllib's own position
    lineno = int(found.group(1)) if found else None
    if lineno is not None and ("Cannot overwrite" in str(error) or "Cannot declare" in str(error)):
        lines = text.splitlines()
        if 1 <= lineno <= len(lines):
            message += f": {lines[lineno - 1].strip()!r} gives a key or table a second time; keep one of them"
    return message

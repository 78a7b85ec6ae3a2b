"""The typed fields runctrace takes from an OCI spec, within bounds.

The spec itself is stored whole, once per container, as JSON (the add's
``config_json``); these fields get columns of their own because people filter
on them. They are bounded so that a row, and what the tracker keeps of each
running container (:func:`trim_config`), stays small whatever the spec holds.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Optional


# Bounds on the typed columns taken from a spec (the spec itself is stored whole,
# once, in the add's config_json). They keep a row, and what the tracker holds for
# each running container, small whatever the spec holds: a 16 MiB annotation is
# valid to runc.
MAX_FIELD_CHARS = 4096  # one string


MAX_FIELD_ITEMS = 256  # one list (args) or map (annotations)


def _cap(text: str, cut: list) -> str:
    if len(text) > MAX_FIELD_CHARS:
        cut.append(True)
        return text[:MAX_FIELD_CHARS]
    return text


def _str_or_none(value: Any, cut: list) -> Optional[str]:
    return _cap(value, cut) if isinstance(value, str) else None


def spec_fields(config: Optional[dict[str, Any]], bundle: Optional[str]) -> dict[str, Any]:
    """The common spec fields that get typed columns, each within the bounds above.
    Tolerates any JSON shape. ``truncated`` says whether a bound cut something."""
    config = config if isinstance(config, dict) else {}
    cut: list = [True] if config.get("truncated") is True else []  # (trim_config's mark)
    process = config.get("process") if isinstance(config.get("process"), dict) else {}
    root = config.get("root") if isinstance(config.get("root"), dict) else {}
    args = process.get("args")
    root_path = root.get("path") if isinstance(root.get("path"), str) else None
    if root_path and bundle and not os.path.isabs(root_path):
        root_path = os.path.normpath(os.path.join(bundle, root_path))
    annotations = config.get("annotations")
    if isinstance(args, list):
        if len(args) > MAX_FIELD_ITEMS:
            cut.append(True)
        args = [_cap(str(a), cut) for a in args[:MAX_FIELD_ITEMS]]
    else:
        args = None
    if isinstance(annotations, dict):
        if len(annotations) > MAX_FIELD_ITEMS:
            cut.append(True)
        annotations = [(_cap(str(k), cut), _cap(str(v), cut))
                       for k, v in itertools.islice(annotations.items(), MAX_FIELD_ITEMS)]
    else:
        annotations = None
    return {
        "hostname": _str_or_none(config.get("hostname"), cut),
        "process_args": args,
        "cwd": _str_or_none(process.get("cwd"), cut),
        "root_path": _cap(root_path, cut) if root_path else None,
        "annotations": annotations,
        "truncated": bool(cut),
    }


def trim_config(config: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """What the tracker keeps of a spec once its add is out: the parts the typed
    columns come from, within their bounds. A remove's row takes its typed columns
    from this; the whole spec was recorded with the add."""
    if not isinstance(config, dict):
        return None
    fields = spec_fields(config, None)
    root = config.get("root") if isinstance(config.get("root"), dict) else {}
    trimmed: dict[str, Any] = {
        "hostname": fields["hostname"],
        "process": {"args": fields["process_args"], "cwd": fields["cwd"]},
        "root": {"path": _str_or_none(root.get("path"), [])},
    }
    if fields["annotations"] is not None:
        trimmed["annotations"] = dict(fields["annotations"])
    if fields["truncated"]:
        trimmed["truncated"] = True  # (not an OCI key: the cut is remembered for the remove)
    return trimmed

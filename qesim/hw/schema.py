"""JSON Schema of a hardware config (for editors' YAML language servers) and the field reference
``docs/hardware-config.md`` generated from it.

    qesim hw schema --out hw-config.schema.json        # then, first line of a config YAML:
    # yaml-language-server: $schema=hw-config.schema.json
    qesim hw schema --markdown --out docs/hardware-config.md

The schema is draft-07 (what YAML language servers read best): ``definitions`` instead of
``$defs``, and a ``$ref`` with a description is wrapped in ``allOf``. Every field carries a
description and its unit (``unit``, also appended to the description); fields that accept a
number with a unit (``"4 MiB"``, ``"2039 GB/s"``, ``"1.41 GHz"``) accept such a string by
pattern as well.
"""

from __future__ import annotations

import json
from typing import Any

from qesim.hw.config import HardwareConfig
from qesim.hw.units import KINDS, pattern

def _fix(node: Any) -> Any:
    if isinstance(node, list):
        return [_fix(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _fix(v) for k, v in node.items() if k != "title"}
    # pydantic writes the bounds of an Optional field (anyOf [number, null]) under their Python
    # names inside the number branch; JSON Schema (editors, the Markdown table) knows these
    if node.get("type") in ("number", "integer"):
        for py, js in (("gt", "exclusiveMinimum"), ("ge", "minimum"), ("lt", "exclusiveMaximum"), ("le", "maximum")):
            if py in node:
                node[js] = node.pop(py)
    if "$ref" in node:
        node["$ref"] = node["$ref"].replace("#/$defs/", "#/definitions/")
        if len(node) > 1:
            ref = node.pop("$ref")
            node["allOf"] = [{"$ref": ref}]
    unit = node.get("unit")
    if unit and "description" in node:
        node["description"] = f"{node['description']} [unit: {unit}]"
    kind = node.pop("x-accepts-units", None)
    if kind:
        num = {k: node.pop(k) for k in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
               if k in node}
        node["anyOf"] = [num, {"type": "string", "pattern": pattern(kind),
                               "description": f"a number with a unit: {', '.join(KINDS[kind][1])}"}]
        node["description"] += f"; or a string with a unit, e.g. '{_example(kind)}'"
    return node


def _example(kind: str) -> str:
    from qesim.hw.units import _example as ex

    return ex(kind)


def hw_json_schema() -> dict:
    """Draft-07 JSON Schema of :class:`~qesim.hw.config.HardwareConfig`."""
    s = HardwareConfig.model_json_schema()
    defs = s.pop("$defs", {})
    out = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "qesim hardware config"}
    out.update(_fix(s))
    out["definitions"] = {k: _fix(v) for k, v in defs.items()}
    return out


def schema_text() -> str:
    return json.dumps(hw_json_schema(), indent=1) + "\n"


# ----------------------------------------------------------------------------- markdown
def _resolve(schema: dict, node: dict) -> dict | None:
    ref = node.get("$ref") or next((a.get("$ref") for a in node.get("allOf", []) if "$ref" in a), None)
    if ref is None:
        for a in node.get("anyOf", []):
            if "$ref" in a:
                ref = a["$ref"]
        items = node.get("items")
        if ref is None and isinstance(items, dict) and "$ref" in items:
            ref = items["$ref"]
    return schema["definitions"][ref.split("/")[-1]] if ref else None


def _type(node: dict, schema: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "anyOf" in node:
        parts = []
        for a in node["anyOf"]:
            if a.get("type") == "string" and "pattern" in a:
                parts.append("string with unit")
            else:
                parts.append(_type(a, schema))
        return " or ".join(parts)
    ref = node.get("$ref") or next((a.get("$ref") for a in node.get("allOf", []) if "$ref" in a), None)
    if ref:
        name = ref.split("/")[-1]
        return f"[{name}](#{name.lower()})"
    t = node.get("type", "any")
    if t == "array":
        return f"list of {_type(node.get('items', {}), schema)}"
    if t == "object" and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        return f"mapping to {_type(node['additionalProperties'], schema)}"
    return {"number": "number", "integer": "integer", "boolean": "boolean", "string": "string",
            "null": "null"}.get(t, t)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _bounds(node: dict) -> str:
    src = node
    for a in node.get("anyOf", []):
        if a.get("type") in ("number", "integer"):
            src = a
    b = []
    if "minimum" in src:
        b.append(f">= {_num(src['minimum'])}")
    if "exclusiveMinimum" in src:
        b.append(f"> {_num(src['exclusiveMinimum'])}")
    if "maximum" in src:
        b.append(f"<= {_num(src['maximum'])}")
    if "minItems" in node:
        b.append(f"at least {node['minItems']} item(s)")
    items = node.get("items", {})
    if isinstance(items, dict) and ("minimum" in items or "maximum" in items):
        b.append("each " + _bounds(items))
    return ", ".join(b)


def _default(node: dict, required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in node:
        return ""
    d = node["default"]
    if isinstance(d, dict):
        return "(see section)"
    return f"`{json.dumps(d)}`"


def render_markdown() -> str:
    """docs/hardware-config.md: one table per section of the schema, in nesting order."""
    schema = hw_json_schema()
    L = ["# Hardware config reference", "",
         "Generated from the JSON Schema by `qesim hw schema --markdown --out docs/hardware-config.md`; "
         "do not edit (a test checks it matches). The schema itself: `qesim hw schema --out "
         "hw-config.schema.json`; put `# yaml-language-server: $schema=hw-config.schema.json` at the top of a "
         "config to get completion, hover help and checks in editors that use the YAML language server.", "",
         "Units are in the field names (`*_mhz`, `*_gbps` = GB/s = 1e9 B/s, `*_bytes`, `*_gib` = 2^30 B). "
         "Fields marked *string with unit* also take a quoted number with an explicit unit, converted to the "
         "field's unit: bytes (`B`, `kB`/`KB`, `MB`, `GB`, `TB` = powers of 10; `KiB`, `MiB`, `GiB`, `TiB` = "
         "powers of 2), bandwidth (`MB/s`, `GB/s`, `TB/s`, `GiB/s`, ...), frequency (`Hz`, `kHz`, `MHz`, `GHz`). "
         "A quoted number without a unit (`\"460\"`), a boolean where a number is meant, and `.inf`/`.nan` are "
         "errors; every invalid field is reported, and an unknown key gets a did-you-mean.", "",
         "Every number in a config under `hw_configs/` carries a comment giving its source or saying it is an "
         "assumption.", ""]
    order: list[tuple[str, dict]] = [("HardwareConfig", schema)]
    seen = {"HardwareConfig"}
    i = 0
    while i < len(order):
        name, node = order[i]
        i += 1
        req = set(node.get("required", []))
        L += [f"## {name}", "", node.get("description", "").strip(), "",
              "| field | type | unit | default | bounds | description |", "|---|---|---|---|---|---|"]
        for fname, f in node.get("properties", {}).items():
            desc = f.get("description", "")
            unit = f.get("unit", (f.get("items") or {}).get("unit", "") if isinstance(f.get("items"), dict) else "")
            desc = desc.replace(f" [unit: {unit}]", "") if unit else desc
            L.append(f"| `{fname}` | {_type(f, schema)} | {unit} | {_default(f, fname in req)} | {_bounds(f)} | "
                     f"{desc.replace('|', '/')} |")
            sub = _resolve(schema, f)
            if sub is not None:
                sname = next(k for k, v in schema["definitions"].items() if v is sub)
                if sname not in seen:
                    seen.add(sname)
                    order.append((sname, sub))
        L.append("")
    return "\n".join(L)

"""The three PATCH content types, as pure functions over JSON dicts.

- `json_merge_patch`: RFC 7386 (application/merge-patch+json).
- `strategic_merge_patch`: upstream strategicpatch.StrategicMergeMapPatch as the API server applies
  it (application/strategic-merge-patch+json): merge keys from `kubesvc.api.mergekeys`, the
  `$patch`, `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`
  directives.
- `json_patch`: RFC 6902 (application/json-patch+json) with evanphx/json-patch's error texts.

None of them mutates its arguments. Failures raise `PatchError`, carrying the HTTP code the API
server answers with (400 for a malformed patch document, 422 when it does not apply).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer

from kubesvc.api import mergekeys
from kubesvc.api.errors import ApiError
from kubesvc.api.mergekeys import FieldMeta
from kubesvc.api.typed import json_kind

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"

# kube-apiserver's --json-patch-max-copy-bytes default (jsonpatch.AccumulatedCopySizeLimit)
MAX_COPY_BYTES = 3 * 1024 * 1024
ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"


class PatchError(Exception):
    """A patch that is malformed (code 400) or does not apply (code 422)."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def patch_failed(err: PatchError) -> ApiError:
    """The Status a failed patch becomes: 400 when malformed, 422 when it does not apply."""
    return ApiError(err.code, "BadRequest" if err.code == 400 else "Invalid", err.message)


# ----------------------------------------------------------------------------- Go-style rendering


def go_format(value: Any) -> str:
    """Render a decoded JSON value the way Go's %v prints map[string]interface{} data."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = " ".join(f"{k}:{go_format(value[k])}" for k in sorted(value))
        return f"map[{items}]"
    if isinstance(value, list):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)


def _go_type(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64" if isinstance(value, float) else "int64"
    if isinstance(value, str):
        return "string"
    return "<nil>"


def _bad_arg(expected: str, value: Any) -> PatchError:
    return PatchError(f"expected a {expected}, but received a {_go_type(value)}")


def _no_merge_key(item: Any, key: str) -> PatchError:
    return PatchError(f"map: {go_format(item)} does not contain declared merge key: {key}")


def _bad_patch_type(directive: Any, item: Any) -> PatchError:
    return PatchError(f"unknown patch type: {go_format(directive)} in map: {go_format(item)}")


# ----------------------------------------------------------------------------- JSON merge patch


def json_merge_patch(original: dict, patch: dict) -> dict:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        raise PatchError("Invalid JSON Patch", 400)
    base = original if isinstance(original, dict) else {}
    return _merge_patch_map(base, patch)


def _merge_patch_map(original: dict, patch: dict) -> dict:
    out = copy.deepcopy(original)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = _merge_patch_map(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------- JSON patch

_OPS = ("add", "remove", "replace", "move", "copy", "test")


def json_patch(original: dict, ops: list) -> dict:
    """RFC 6902, applied operation by operation; errors worded as evanphx/json-patch words them."""
    if not isinstance(ops, list):
        raise PatchError(
            f"json: cannot unmarshal {json_kind(ops)} into Go value of type jsonpatch.Patch", 400
        )
    doc: Any = copy.deepcopy(original)
    copied = 0
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError(
                f"json: cannot unmarshal {json_kind(op)} into Go value of type jsonpatch.Operation",
                400,
            )
        if op.get("op") == "copy":
            copied += _copy_size(doc, op.get("from"), MAX_COPY_BYTES - copied)
            if copied > MAX_COPY_BYTES:
                raise PatchError(
                    "Unable to complete the copy, the accumulated size increase of copy is "
                    f"{copied}, exceeding the limit {MAX_COPY_BYTES}"
                )
        doc = _json_patch_op(doc, op)
    if not isinstance(doc, dict):
        raise PatchError("the patched document is not a JSON object", 422)
    return doc


def _copy_size(doc: Any, source: Any, budget: int) -> int:
    """The JSON size of what a copy operation duplicates (evanphx counts the raw bytes). Stops
    counting once past budget, so measuring a huge value costs no more than the limit."""
    if not isinstance(source, str):
        return 0
    node = doc
    for part in _pointer_parts(source, "from", "copy") if source else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return 0  # the operation itself reports the missing path
    size = 0
    for chunk in _ENCODER.iterencode(node):
        size += len(chunk)
        if size > budget:
            break
    return size


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _pointer_parts(path: Any, what: str, kind: str) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(f"{kind} operation failed to decode {what}: missing value")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(_missing_container_message(kind, path))
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _find_container(doc: Any, parts: list[str]) -> Any:
    """evanphx findObject: the container holding the last token, or None."""
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return None
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, dict | list) else None


def _has_key(container: Any, key: str) -> bool:
    if isinstance(container, dict):
        return key in container
    return key.isdigit() and int(key) < len(container)


def _index_error(container: Any, key: str, *, adding: bool = False) -> str | None:
    if not isinstance(container, list) or (adding and key == "-"):
        return None
    try:
        idx = int(key)
    except ValueError:
        if adding:
            return f"value was not a proper array index: '{key}'"
        return f'strconv.Atoi: parsing "{key}": invalid syntax'
    limit = len(container) + (1 if adding else 0)
    if idx < 0 or idx >= limit:
        return f"Unable to access invalid index: {idx}: invalid index referenced"
    return None


def _json_patch_op(doc: Any, op: dict) -> Any:
    kind = op.get("op")
    if kind not in _OPS:
        raise PatchError(f"Unexpected kind: {kind if isinstance(kind, str) else ''}")
    path = op.get("path")
    parts = _pointer_parts(path, "path", str(kind))
    if _precheck(doc, op, str(kind), str(path), parts):
        return doc
    try:
        return jsonpatch.apply_patch(doc, [op], in_place=True)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(f"testing value {path} failed: test failed") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchError(f"error in {kind} for path: '{path}': {exc}") from exc


def _precheck(doc: Any, op: dict, kind: str, path: str, parts: list[str]) -> bool:
    """Raise the error evanphx/json-patch reports for an operation that does not apply.

    Returns True for an operation that succeeds without changing anything (testing an absent
    member for null).
    """
    if kind in ("move", "copy"):
        _precheck_from(doc, op, kind)
    if not parts:
        return False
    container = _find_container(doc, parts)
    key = parts[-1]
    if container is None:
        raise PatchError(_missing_container_message(kind, path))
    if kind in ("add", "move", "copy"):
        err = _index_error(container, key, adding=True)
        if err:
            verb = "add" if kind == "add" else kind
            raise PatchError(f"error in {verb} for path: '{path}': {err}")
        if "value" not in op and kind == "add":
            raise PatchError(f"add operation does not apply: missing value for path: {path}")
    elif kind == "remove":
        _precheck_remove(container, key, path)
    elif kind == "replace" and not _has_key(container, key):
        raise PatchError(
            f"replace operation does not apply: doc is missing key: {path}: missing value"
        )
    elif kind == "test" and not _has_key(container, key):
        if op.get("value") is not None:
            raise PatchError(f"testing value {path} failed: test failed")
        return True
    return False


def _precheck_remove(container: Any, key: str, path: str) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise PatchError(
                f"error in remove for path: '{path}': Unable to remove nonexistent key: {key}: "
                "missing value"
            )
        return
    err = _index_error(container, key)
    if err:
        raise PatchError(f"error in remove for path: '{path}': {err}")


def _precheck_from(doc: Any, op: dict, kind: str) -> None:
    source = op.get("from")
    parts = _pointer_parts(source, "from", kind)
    if not parts:
        return
    container = _find_container(doc, parts)
    if container is None or not _has_key(container, parts[-1]):
        raise PatchError(
            f"{kind} operation does not apply: doc is missing from path: {source}: missing value"
        )


def _missing_container_message(kind: str, path: str) -> str:
    if kind in ("add", "remove"):
        return f'{kind} operation does not apply: doc is missing path: "{path}": missing value'
    if kind in ("move", "copy"):
        return (
            f"{kind} operation does not apply: doc is missing destination path: {path}: "
            "missing value"
        )
    if kind == "test":
        return f"test operation does not apply: is missing path: {path}: missing value"
    return f"replace operation does not apply: doc is missing path: {path}: missing value"


# ---------------------------------------------------------------------------- strategic merge patch


def strategic_merge_patch(kind: str, original: dict, patch: dict) -> dict:
    """Apply a strategic merge patch to an object of `kind` (upstream StrategicMergeMapPatch)."""
    if not isinstance(patch, dict):
        raise PatchError(
            f"json: cannot unmarshal {json_kind(patch)} into Go value of type "
            "map[string]interface {}",
            400,
        )
    base = copy.deepcopy(original) if isinstance(original, dict) else {}
    return _merge_map(base, copy.deepcopy(patch), mergekeys.root(kind))


def _merge_map(original: dict | None, patch: dict, meta: FieldMeta) -> dict:
    """mergeMap: both arguments are private copies and may be modified."""
    if DIRECTIVE in patch:
        return _map_directive(patch)
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, meta)
    for key, value in patch.items():
        _merge_field(original, key, value, meta)
    return original


def _map_directive(patch: dict) -> dict:
    directive = patch[DIRECTIVE]
    if directive == "replace":
        del patch[DIRECTIVE]
        return _clean(patch)
    if directive == "delete":
        return {}
    raise _bad_patch_type(directive, patch)


def _merge_field(original: dict, key: str, value: Any, meta: FieldMeta) -> None:
    delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
    if delete_list:
        key = key[len(DELETE_FROM_PRIMITIVE_LIST) :]
    elif key.startswith("$"):
        return  # unknown directive: never stored
    if value is None:
        original.pop(key, None)
        return
    if key not in original or _shape(original[key]) != _shape(value):
        if delete_list:
            return
        if isinstance(value, dict) and value.get(DIRECTIVE) == "delete":
            original.pop(key, None)
        else:
            original[key] = _clean(value)
        return
    child = mergekeys.field_meta(meta.type_name, key)
    current = original[key]
    if isinstance(current, dict):
        base = {} if child.merge_strategy == "replace" else current
        original[key] = _merge_map(base, value, child)
    elif isinstance(current, list):
        original[key] = _merge_list(current, value, child, delete_list)
    else:
        original[key] = value


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _clean(value: Any) -> Any:
    """What a patch value becomes when stored as is: no nulls in maps, no directives."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [
            _clean(v) for v in value if not (isinstance(v, dict) and v.get(DIRECTIVE) == "delete")
        ]
    return value


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retain = patch.pop(RETAIN_KEYS)
    if not isinstance(retain, list):
        raise PatchError(ERR_RETAIN_KEYS, 400)
    allowed = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in allowed:
            raise PatchError(ERR_RETAIN_KEYS, 400)
    for key in [k for k in original if k not in allowed]:
        del original[key]


def _merge_ordered_lists(original: dict, patch: dict, meta: FieldMeta) -> None:
    """mergePatchIntoOriginal: lists that come with a $setElementOrder directive."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg("[]interface {}", order)
        name = key[len(SET_ELEMENT_ORDER) :]
        if name in original and not isinstance(original[name], list):
            raise _bad_arg("[]interface {}", original[name])
        if name in patch and not isinstance(patch[name], list):
            raise _bad_arg("[]interface {}", patch[name])
        child = mergekeys.field_meta(meta.type_name, name)
        merge_key = child.patch_merge_key
        orig_list: list = original.get(name) or []
        patch_list: list = patch.get(name) or []
        _validate_set_order(patch_list, order, merge_key)
        if name in original and name not in patch:
            merged = orig_list
        elif name in patch and name not in original:
            merged = _clean(patch_list)
        elif name in patch:
            merged = _merge_list(orig_list, patch_list, child, False)
        else:
            continue
        patch.pop(name, None)
        if not orig_list and not patch_list:
            original[name] = merged
            continue
        if merge_key:
            patch_items, server_only = _partition_maps(merged, order, merge_key)
        else:
            patch_items, server_only = _partition_primitives(merged, order)
        kind = _element_kind(orig_list, patch_list)
        original[name] = _normalize_element_order(
            patch_items, server_only, order, orig_list, merge_key, kind
        )


def _validate_set_order(patch_list: list, order: list, merge_key: str) -> None:
    """The items of the patch list must appear in the $setElementOrder list, in its order."""
    if not order or not patch_list:
        return
    items = _split_deletes(patch_list)[0] if merge_key else patch_list
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        if isinstance(items[pi], dict) and DIRECTIVE in items[pi]:
            pi += 1
            continue
        if _merge_key_equal(items[pi], order[oi], merge_key):
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise PatchError(
            f"The order in patch list:\n{go_format(patch_list)}\n doesn't match "
            f"{SET_ELEMENT_ORDER} list:\n{go_format(order)}\n"
        )


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for item in (left, right):
        if not isinstance(item, dict):
            raise _bad_arg("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
    return _same(left[merge_key], right[merge_key])


def _same(a: Any, b: Any) -> bool:
    """Go interface equality on decoded JSON scalars (a bool never equals a number)."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _merge_list(original: list, patch: list, meta: FieldMeta, delete_list: bool) -> list:
    """mergeSliceHandler."""
    if meta.merge_strategy == "merge":
        return _merge_slice(original, patch, meta, delete_list)
    return _clean(patch)


def _element_kind(*lists: list) -> str:
    """sliceElementType: every element of every list must have the same JSON type."""
    kind = ""
    for items in lists:
        for item in items:
            current = json_kind(item)
            if not kind:
                kind = current
                if kind == "array":
                    raise PatchError(ERR_LIST_OF_LISTS)
            elif current != kind:
                raise PatchError(f"list element types are not identical: {go_format(list(lists))}")
    if not kind:
        raise PatchError("no elements in any of the given slices")
    return kind


def _merge_slice(original: list, patch: list, meta: FieldMeta, delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    merge_key = ""
    if kind != "object":
        if delete_list:
            return [v for v in original if not any(_same(v, p) for p in patch)]
        merged = _dedupe(original + patch)
        patch_items, server_only = _partition_primitives(merged, patch)
    else:
        merge_key = meta.patch_merge_key
        if not merge_key:
            raise PatchError("cannot merge lists without merge key")
        original, patch = _merge_special_elements(original, patch, merge_key)
        merged = _merge_plain_elements(original, patch, merge_key, mergekeys.item_meta(meta))
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _dedupe(items: list) -> list:
    out: list = []
    for item in items:
        if not any(_same(item, seen) for seen in out):
            out.append(item)
    return out


def _merge_special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """mergeSliceWithSpecialElements: `$patch: delete|replace` items of a list of maps."""
    plain: list = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            value = item[merge_key]
            original = [o for o in original if not _same(_get(o, merge_key), value)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        return plain, []
    return original, plain


def _get(item: Any, key: str) -> Any:
    if not isinstance(item, dict):
        raise _bad_arg("map[string]interface {}", item)
    return item.get(key, _MISSING)


_MISSING: Any = object()


def _merge_plain_elements(
    original: list, patch: list, merge_key: str, item_meta: FieldMeta
) -> list:
    """mergeSliceWithoutSpecialElements: merge items that share a key, append the others."""
    merged = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        value = item[merge_key]
        index = next((i for i, o in enumerate(merged) if _same(_get(o, merge_key), value)), -1)
        if index >= 0:
            merged[index] = _merge_map(merged[index], item, item_meta)
        else:
            merged.append(item)
    return merged


def _partition_maps(items: list, by: list, merge_key: str) -> tuple[list, list]:
    present: list = []
    server_only: list = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg("map[string]interface {}", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        value = item[merge_key]
        found = any(isinstance(b, dict) and _same(b.get(merge_key, _MISSING), value) for b in by)
        (present if found else server_only).append(item)
    return present, server_only


def _partition_primitives(items: list, by: list) -> tuple[list, list]:
    present = [v for v in items if any(_same(v, b) for b in by)]
    server_only = [v for v in items if not any(_same(v, b) for b in by)]
    return present, server_only


def _index_fn(merge_key: str, kind: str) -> Callable[[list, Any], int]:
    def value_of(item: Any) -> Any:
        if kind == "object":
            return item.get(merge_key) if isinstance(item, dict) else None
        return item

    def index(items: list, item: Any) -> int:
        wanted = value_of(item)
        for i, candidate in enumerate(items):
            if _same(value_of(candidate), wanted):
                return i
        return -1

    return index


def _normalize_element_order(
    patch_items: list,
    server_only: list,
    patch_order: list,
    server_order: list,
    merge_key: str,
    kind: str,
) -> list:
    """Sort patch items by the patch order, server-only items by the live order, interleave."""
    patch_items = _normalize_slice_order(patch_items, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted(server_only, patch_items, server_order, merge_key, kind)


def _normalize_slice_order(items: list, order: list, merge_key: str, kind: str) -> list:
    deletes: list = []
    if kind == "object":
        for item in [*items, *order]:
            if not isinstance(item, dict):
                raise _bad_arg("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        items, deletes = _split_deletes(items)
    index = _index_fn(merge_key, kind)

    def less(a: Any, b: Any) -> bool:
        ia, ib = index(order, a), index(order, b)
        return ia < ib if ia >= 0 and ib >= 0 else True

    out = list(items)
    # Go's sort.SliceStable is an insertion sort for short lists; the comparator is not a
    # strict order when an item is missing from `order`, so follow the same steps.
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out + deletes


def _split_deletes(items: list) -> tuple[list, list]:
    keep: list = []
    deletes: list = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg("map[string]interface {}", item)
        (deletes if item.get(DIRECTIVE) == "delete" else keep).append(item)
    return keep, deletes


def _merge_sorted(left: list, right: list, server_order: list, merge_key: str, kind: str) -> list:
    """mergeSortedSlice: insert server-only items among patch items, by the live order."""
    index = _index_fn(merge_key, kind)
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = index(server_order, left[i]), index(server_order, right[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def dumps_go(value: Any) -> str:
    """Compact JSON as Go's encoding/json writes it (sorted keys, HTML-safe escapes)."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

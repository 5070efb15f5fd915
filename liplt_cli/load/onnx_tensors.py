"""ONNX tensors as stored in the file, checked before anything reads them.

Each stored tensor must hold exactly what its dims declare, within the memory budget, so that a
few bytes declaring 10¹² values are refused instead of allocated.  Tensors stored beside the
file (``model.onnx.data``, as torch's dynamo exporter writes) are read by liplt itself, from a
regular file confined to the model's folder, and only the slices their dims declare.
"""

from __future__ import annotations

from pathlib import Path

from liplt_cli.errors import ModelLoadError

__all__ = ["FLOAT_TYPES", "ITEMSIZE", "check_tensor_sizes", "load_external_data"]


# bytes per value of the ONNX tensor types liplt may meet (sub-byte and string types are absent)
ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1, 24: 1}
# the typed field holding each type's values when it is not in raw_data (values per element)
_TYPED_FIELD = {1: ("float_data", 1), 2: ("int32_data", 1), 3: ("int32_data", 1), 4: ("int32_data", 1),
                5: ("int32_data", 1), 6: ("int32_data", 1), 7: ("int64_data", 1), 9: ("int32_data", 1),
                10: ("int32_data", 1), 11: ("double_data", 1), 12: ("uint64_data", 1), 13: ("uint64_data", 1),
                14: ("float_data", 2), 15: ("double_data", 2), 16: ("int32_data", 1)}


FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _all_tensors(model):
    """Every TensorProto of the model: initializers and tensor attributes, in subgraphs too."""
    from onnx import external_data_helper

    return list(external_data_helper._get_all_tensors(model))


def _declared_bytes(tensor, path: Path) -> int:
    """The byte size ``tensor``'s dims declare; :class:`ModelLoadError` for negative dims or over budget."""
    from liplt_cli.limits import element_count, format_shape, over_budget, scientific

    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"'{path}': tensor '{tensor.name}' declares a negative dimension {format_shape(dims)}")
    count = element_count(dims)
    size = count * ITEMSIZE.get(tensor.data_type, 1)
    reason = over_budget(size, f"tensor '{tensor.name}' of shape {format_shape(dims)} ({scientific(count)} values)")
    if reason:
        raise ModelLoadError(f"'{path}': {reason}")
    return size


def check_tensor_sizes(model, path: Path) -> None:
    """Each stored tensor holds exactly what its dims declare, within the memory budget.

    Runs before anything converts a tensor to an array, so that a few bytes declaring 10¹²
    values are refused instead of allocated.
    """
    from onnx import TensorProto

    from liplt_cli.limits import format_shape

    for tensor in _all_tensors(model):
        size = _declared_bytes(tensor, path)
        if tensor.data_location == TensorProto.EXTERNAL:
            continue  # checked against its file by load_external_data
        itemsize = ITEMSIZE.get(tensor.data_type)
        if itemsize is None:
            continue
        count = size // itemsize
        if tensor.HasField("raw_data") or tensor.raw_data:
            held, unit = len(tensor.raw_data), "bytes"
            want = size
        else:
            field, per = _TYPED_FIELD.get(tensor.data_type, (None, 1))
            if field is None:
                continue
            held, unit = len(getattr(tensor, field)), "values"
            want = count * per
        if held != want:
            raise ModelLoadError(
                f"'{path}': tensor '{tensor.name}' declares shape {format_shape(tensor.dims)} ({want} {unit}) "
                f"but holds {held} {unit}"
            )


def _external_entries(tensor, path: Path) -> tuple[str, int, int | None]:
    """(location, offset, length) of an external tensor; :class:`ModelLoadError` when malformed."""
    entries = {e.key: e.value for e in tensor.external_data}
    where = f"'{path}': external data of tensor '{tensor.name}'"
    location = entries.get("location", "")
    numbers: dict[str, int | None] = {}
    for key in ("offset", "length"):
        text = entries.get(key)
        if text is None:
            numbers[key] = None
            continue
        try:
            numbers[key] = int(text)
        except ValueError:
            raise ModelLoadError(f"{where} has a non-integer {key} '{text[:40]}'") from None
        if numbers[key] < 0:  # type: ignore[operator]
            raise ModelLoadError(f"{where} has a negative {key} {numbers[key]}")
    return location, numbers["offset"] or 0, numbers["length"]


def _confined_external_file(location: str, folder: Path, where: str) -> Path:
    """The file ``location`` names, which must be a regular file inside ``folder`` (symlinks resolved).

    Refused: an empty or absolute location, any ``..`` component, a NUL byte, a symlink whose
    target leaves the folder, and anything that is not a regular file (FIFO, device, directory).
    """
    from pathlib import PurePosixPath, PureWindowsPath

    from liplt_cli.paths import require_regular_file

    if not location:
        raise ModelLoadError(f"{where} has no location")
    if "\x00" in location:
        raise ModelLoadError(f"{where} has a location with a NUL byte")
    shown = location if len(location) <= 80 else location[:80] + "…"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive:
        raise ModelLoadError(f"{where} names the absolute path '{shown}'; it must be a file beside the model")
    if ".." in PurePosixPath(location).parts or ".." in PureWindowsPath(location).parts:
        raise ModelLoadError(f"{where} names '{shown}', which uses '..'; it must be a file beside the model")
    root = folder.resolve()
    target = (folder / location).resolve()
    if target != root and root not in target.parents:
        raise ModelLoadError(f"{where} names '{shown}', which resolves outside the model's folder (to '{target}')")
    require_regular_file(target, f"{where}: the data file", ModelLoadError)
    return target


def load_external_data(model, path: Path) -> None:
    """Read tensors stored beside the file (``model.onnx.data``, as torch's dynamo exporter writes).

    Every location is confined to the model's folder (see :func:`_confined_external_file`), and
    every slice must lie inside its file and hold exactly the bytes the tensor's dims declare.
    The bytes are read by liplt itself and stored in the tensor (as ``raw_data``).
    """
    import os

    from onnx import TensorProto

    from liplt_cli.limits import over_budget

    external = [t for t in _all_tensors(model) if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    folder = path.parent
    total = 0
    plans = []
    for tensor in external:
        where = f"'{path}': external data of tensor '{tensor.name}'"
        location, offset, length = _external_entries(tensor, path)
        target = _confined_external_file(location, folder, where)
        size = os.stat(target).st_size
        itemsize = ITEMSIZE.get(tensor.data_type)
        if itemsize is None:
            raise ModelLoadError(f"{where}: tensors of ONNX type {tensor.data_type} cannot be read from external data")
        want = _declared_bytes(tensor, path)
        span = want if length is None else length
        if offset + span > size:
            raise ModelLoadError(
                f"{where}: bytes {offset}…{offset + span} run past the end of '{location}' ({size} bytes; "
                f"the tensor's shape needs {want} bytes)"
            )
        if span != want:
            raise ModelLoadError(f"{where}: length {span} does not match the tensor's {want} bytes")
        total += want
        plans.append((tensor, target, offset, want))
    reason = over_budget(total, f"the external data of '{path}'")
    if reason:
        raise ModelLoadError(reason)
    for tensor, target, offset, want in plans:
        try:
            with open(target, "rb") as fh:
                fh.seek(offset)
                data = fh.read(want)
        except OSError as exc:
            raise ModelLoadError(f"'{path}': cannot read the external data of tensor '{tensor.name}': "
                                 f"{exc.strerror or exc}") from None
        if len(data) != want:
            raise ModelLoadError(f"'{path}': the external data of tensor '{tensor.name}' ended early")
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = TensorProto.DEFAULT

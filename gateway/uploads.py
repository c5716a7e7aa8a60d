"""What an uploaded model file is, from its first bytes: refused early when it is nothing ml-server loads.

A skops file is a zip archive with a `schema.json`; an ONNX model is a protobuf
`ModelProto`, whose first field is `ir_version` (tag byte 0x08). Pickles (and
joblib files, which are pickles, maybe compressed) are refused whatever they
hold: loading one runs code of the uploader's choosing. Whether a skops file
holds only trusted types, and whether a graph loads, is the consumer's check
(`consumers/imports.py`), done before anything is stored.
"""

from __future__ import annotations

from contracts import archives
from contracts.errors import InvalidInput, UnsupportedMediaType

SKOPS, ONNX = "skops", "onnx"

# First bytes of what `joblib.dump` and `pickle.dump` write: pickle protocols 2-5, and joblib's
# zlib, gzip, bz2, xz and lz4 compressions.
_PICKLES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_COMPRESSED = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x04\x22\x4d\x18")
_ZIP = b"PK\x03\x04"
_ONNX = 0x08

REFUSED = (
    "pickle and joblib files are refused (loading one runs code from the file): save the model with "
    "skops.io.dump, or convert it to ONNX"
)


def sniff(blob: bytes, declared: str | None, limits: archives.ArchiveLimits) -> str:
    """`skops` or `onnx`; UnsupportedMediaType (415) for a pickle, a joblib file or anything else,
    InvalidInput (422) for an empty or truncated file, an archive past `limits`, or one that is not
    what `declared` says."""
    if not blob:
        raise InvalidInput("file: the body is empty: send the model file as the body", fields={"file": ["empty"]})
    if blob.startswith(_PICKLES) or blob.startswith(_COMPRESSED):
        raise UnsupportedMediaType(f"file: {REFUSED}", fields={"file": ["pickle or joblib"]})
    if blob.startswith(_ZIP):
        found = SKOPS
        try:
            with archives.check(blob, limits) as archive:  # caps from what it declares: nothing is inflated
                names = set(archive.namelist())
        except archives.ArchiveRefused as e:
            raise InvalidInput(f"file: {e}", fields={"file": [str(e)]}) from None
        if "schema.json" not in names:
            raise InvalidInput("file: a zip archive without schema.json is not a skops file", fields={"file": ["not skops"]})
    elif blob[0] == _ONNX:
        found = ONNX
    else:
        raise UnsupportedMediaType(
            "file: not a skops or ONNX model file (upload a skops.io.dump file or an ONNX model)", fields={"file": ["unknown format"]}
        )
    if declared is not None and declared != found:
        raise InvalidInput(f"file: format={declared!r}, but the file is a {found} file", fields={"format": [f"the file is {found}"]})
    return found

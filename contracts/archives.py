"""Zip archives from uploads (skops files), opened within caps: a small file never inflates into gigabytes.

A skops file is a zip archive whose members (`schema.json`, one `.npy` per array)
are inflated by whoever reads them. Deflate turns 1 MiB into 1 GiB of spaces,
so before a member is read the archive is checked against `ArchiveLimits`
from what it declares (`check`): the number of members (from the end record,
before the central directory is parsed), each member's and the total declared
uncompressed size, and the compression ratio of large members. A member is
then read with a cap (`read`), whatever its header said: Python's zipfile
stops at the declared size, and `read` stops at the cap as well, so a header
that lies can't make a reader hold more than the cap.

The gateway checks an upload before it is stored or queued; the consumer
checks it again before skops or any other reader opens it (a file can also
come straight over AMQP).
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass

__all__ = ["ArchiveLimits", "ArchiveRefused", "check", "read"]

# Members smaller than this are not held to the ratio cap (a short JSON of repeated keys compresses well).
RATIO_FLOOR = 1 << 20
# A directory entry is 46 bytes and the member's name (and extra fields): skops names members by uuid.
DIRECTORY_BYTES_PER_MEMBER = 4096

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"


class ArchiveRefused(ValueError):
    """The archive would inflate past a cap, or can't be read as one; the message says which and names the setting."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what an uploaded archive may inflate to (settings `ML_SERVER_IMPORT_*`)."""

    max_members: int = 10_000
    max_member_bytes: int = 512 * 2**20
    max_total_bytes: int = 1024 * 2**20
    max_ratio: int = 200


def declared(blob: bytes) -> tuple[int, int] | None:
    """(entries, central directory bytes) as the archive's end record declares them (zip64 too), read
    without parsing the directory; None when there is no end record (zipfile says what is wrong next)."""
    tail = blob[-(0xFFFF + 22) :]
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    entries, size = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries != 0xFFFF and size != 0xFFFFFFFF:
        return int(entries), int(size)
    locator = tail.rfind(_EOCD64_LOCATOR, 0, at)
    if locator < 0 or at - locator < 20:
        return None
    (offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
    record = blob[offset : offset + 56]
    if len(record) < 56 or not record.startswith(_EOCD64):
        return None
    total, size64 = struct.unpack("<QQ", record[32:48])
    return int(total), int(size64)


def check(blob: bytes, limits: ArchiveLimits) -> zipfile.ZipFile:
    """The open archive, once what it declares is within `limits`; ArchiveRefused otherwise. Nothing is inflated."""
    found = declared(blob)
    if found is not None:
        count, directory = found
        if count > limits.max_members:
            raise ArchiveRefused(f"the archive declares {count} members, more than ML_SERVER_IMPORT_MAX_MEMBERS={limits.max_members}")
        if directory > DIRECTORY_BYTES_PER_MEMBER * max(count, 1):
            raise ArchiveRefused(f"the archive's directory declares {directory} bytes for {count} members: member names are too long")
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error) as e:
        raise ArchiveRefused(f"a truncated or damaged zip archive ({e}), not a readable skops file") from None
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise ArchiveRefused(f"the archive holds {len(members)} members, more than ML_SERVER_IMPORT_MAX_MEMBERS={limits.max_members}")
    total = 0
    for info in members:
        if info.file_size > limits.max_member_bytes:
            raise ArchiveRefused(
                f"member {info.filename[:100]!r} declares {info.file_size} bytes uncompressed, more than "
                f"ML_SERVER_IMPORT_MAX_MEMBER_BYTES={limits.max_member_bytes}"
            )
        if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveRefused(
                f"member {info.filename[:100]!r} inflates {info.compress_size} bytes into {info.file_size}, a ratio above "
                f"ML_SERVER_IMPORT_MAX_RATIO={limits.max_ratio}"
            )
        total += info.file_size
    if total > limits.max_total_bytes:
        raise ArchiveRefused(
            f"the archive declares {total} bytes uncompressed in all, more than ML_SERVER_IMPORT_MAX_TOTAL_BYTES={limits.max_total_bytes}"
        )
    return archive


def read(archive: zipfile.ZipFile, name: str, limits: ArchiveLimits) -> bytes:
    """A member's bytes, read in chunks and stopped at the member cap whatever its header declared."""
    cap = limits.max_member_bytes
    out = bytearray()
    try:
        with archive.open(name) as member:
            while True:
                chunk = member.read(min(1 << 20, cap + 1 - len(out)))
                if not chunk:
                    return bytes(out)
                out += chunk
                if len(out) > cap:
                    raise ArchiveRefused(f"member {name[:100]!r} inflates past ML_SERVER_IMPORT_MAX_MEMBER_BYTES={cap}")
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:  # a lying header: bad CRC, truncated stream
        if isinstance(e, ArchiveRefused):
            raise
        raise ArchiveRefused(f"member {name[:100]!r} can't be read: {e}") from None

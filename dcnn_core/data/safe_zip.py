"""Look at a zip before reading it, then read its members in memory with a cap.

A zip's headers are written by whoever made it. Everything that could hurt the
server — too many members, a huge unpacked size, a compression ratio only a zip
bomb has, paths that climb out of a folder, links, encryption — is refused from
the listing alone, before a single member is decompressed. Nothing is ever
extracted to disk.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib

MB = 1024 * 1024
RATIO_FLOOR_BYTES = 1 * MB  # smaller members may compress very well (a flat BMP) without being a bomb
_END_RECORD = b"PK\x05\x06"
_END_RECORD_SIZE = 22
_ZIP64_LOCATOR, _ZIP64_LOCATOR_SIZE = b"PK\x06\x07", 20
_ZIP64_RECORD, _ZIP64_RECORD_SIZE = b"PK\x06\x06", 56
_DIRECTORY_ENTRY_BYTES = 512  # a generous size for one central-directory entry (46 bytes + name + extras)


class ZipRefused(ValueError):
    """The whole archive is refused; the message names the archive or the member and says why."""


class MemberUnreadable(Exception):
    """One member cannot be used; the message is a short reason for a table of skipped files."""


def check_directory_size(data: bytes, name: str, max_members: int) -> None:
    """Refuse an oversized central directory before ``zipfile`` builds an object for every entry.

    A 50 MB archive of empty entries would otherwise become a million ZipInfo objects in memory.
    The 0xFFFF / 0xFFFFFFFF placeholders are never skipped: where a zip64 record follows them,
    its 64-bit counts are checked (``zipfile`` uses those); without one, ``zipfile`` takes the
    placeholders at face value, and so does this check.
    """
    tail = data[-(_END_RECORD_SIZE + 0xFFFF) :]
    at = tail.rfind(_END_RECORD)
    if at < 0 or len(tail) - at < _END_RECORD_SIZE:
        return  # zipfile will say the archive is damaged
    entries, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
    if entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:
        entries, directory_bytes = _zip64_counts(tail, at, entries, directory_bytes)
    if entries > max_members:
        raise ZipRefused(f"'{name}' holds {entries:,} files; the limit is {max_members:,}.")
    if directory_bytes > max_members * _DIRECTORY_ENTRY_BYTES:
        raise ZipRefused(f"'{name}' lists more files than the limit of {max_members:,}.")


def _zip64_counts(tail: bytes, end_at: int, entries: int, directory_bytes: int) -> tuple[int, int]:
    """Entry count and directory size from the zip64 end record right before the locator, as ``zipfile`` reads them."""
    locator_at, record_at = end_at - _ZIP64_LOCATOR_SIZE, end_at - _ZIP64_LOCATOR_SIZE - _ZIP64_RECORD_SIZE
    if record_at < 0 or tail[locator_at : locator_at + 4] != _ZIP64_LOCATOR or tail[record_at : record_at + 4] != _ZIP64_RECORD:
        return entries, directory_bytes  # no zip64 record: zipfile believes the placeholders, so they are checked as numbers
    entries64, directory_bytes64 = struct.unpack_from("<QQ", tail, record_at + 32)
    return entries64, directory_bytes64


def check_zip(
    archive: zipfile.ZipFile, archive_bytes: int, name: str, *, max_members: int, max_total_bytes: int, max_ratio: int
) -> list[zipfile.ZipInfo]:
    """The archive's files (not folders), once every entry and the totals pass the checks."""
    members = archive.infolist()
    if len(members) > max_members:
        raise ZipRefused(f"'{name}' holds {len(members):,} files; the limit is {max_members:,}.")
    for info in members:
        _check_path(info.filename, name)
        _check_kind(info, name)
        _check_ratio(info, name, max_ratio)
    files = [info for info in members if not info.is_dir()]
    if not files:
        raise ZipRefused(f"'{name}' is empty: put one folder per class inside it, with images in each.")
    total = sum(info.file_size for info in files)
    if total > max_total_bytes:
        raise ZipRefused(f"'{name}' unpacks to {total / MB:,.0f} MB; the limit is {max_total_bytes / MB:,.0f} MB.")
    if total > max_ratio * max(archive_bytes, 1) and total > RATIO_FLOOR_BYTES:
        raise ZipRefused(
            f"'{name}' unpacks to {total / archive_bytes:,.0f}× its size; more than {max_ratio}× is how zip bombs look, so it was refused."
        )
    return files


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes, never more than ``cap`` decompressed, whatever its header says."""
    if info.file_size > cap:
        raise MemberUnreadable(f"file too large ({info.file_size / MB:.1f} MB; the limit is {cap / MB:.0f} MB)")
    try:
        with archive.open(info) as member:
            data = member.read(cap + 1)
    except NotImplementedError as error:
        raise MemberUnreadable("compressed with a method this app cannot read") from error
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise MemberUnreadable("damaged inside the zip") from error
    if len(data) > cap:
        raise MemberUnreadable(f"file too large (over {cap / MB:.0f} MB)")
    return data


def _check_path(path: str, name: str) -> None:
    if "\\" in path:
        raise ZipRefused(f"'{path}' in '{name}' has a backslash in its path; make the zip again with a standard tool.")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise ZipRefused(f"'{path}' in '{name}' has an absolute path; the zip must hold relative folders only.")
    if ".." in path.split("/"):
        raise ZipRefused(f"'{path}' in '{name}' climbs out of its folder with '..'; the zip was refused.")
    if any(ord(c) < 32 for c in path):
        raise ZipRefused(f"{path!r} in '{name}' has control characters in its name; rename it.")


def _check_kind(info: zipfile.ZipInfo, name: str) -> None:
    mode = info.external_attr >> 16  # Unix mode bits, where the zip was made on Unix
    if stat.S_ISLNK(mode):
        raise ZipRefused(f"'{info.filename}' in '{name}' is a symbolic link; zips with links are refused.")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ZipRefused(f"'{info.filename}' in '{name}' is not a regular file; the zip was refused.")
    if info.flag_bits & 0x1:
        raise ZipRefused(f"'{info.filename}' in '{name}' is encrypted; make the zip without a password.")


def _check_ratio(info: zipfile.ZipInfo, name: str, max_ratio: int) -> None:
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        raise ZipRefused(
            f"'{info.filename}' in '{name}' unpacks to {ratio:,.0f}× its compressed size "
            f"({info.file_size / MB:,.0f} MB); that is how zip bombs look, so the zip was refused."
        )

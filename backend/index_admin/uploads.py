"""Rebuild sources that arrive as bytes (an uploaded archive or corpus.jsonl): written to a
staging folder under DATA_DIR and unpacked safely. An archive entry that would land outside
the folder (absolute path, `..`, a link) refuses the whole archive instead of being skipped,
so a malicious upload is reported, not half-indexed."""
from __future__ import annotations

import hashlib
import shutil
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from backend.errors import InputError
from backend.ingestion.sources import TEXT_SUFFIXES

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_ENTRIES = 50_000


def kind_of(name: str) -> str:
    """'archive', 'jsonl' or 'file' (one .txt/.md/.html/.pdf); anything else is refused."""
    low = name.lower()
    if low.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if low.endswith(".jsonl"):
        return "jsonl"
    if Path(low).suffix in TEXT_SUFFIXES:
        return "file"
    raise InputError(f"unsupported upload '{name}': give a .zip/.tar.gz archive, a corpus.jsonl or a "
                     f"{'/'.join(sorted(TEXT_SUFFIXES))} file")


def _check_name(name: str, archive: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise InputError(f"refused archive {archive}: entry '{name}' points outside the archive folder")


def _check_total(total: int, count: int, archive: str) -> None:
    if count > MAX_ENTRIES or total > MAX_UNPACKED_BYTES:
        raise InputError(f"refused archive {archive}: {count:,} entries / {total / 1024**2:,.0f} MB unpacked is over "
                         f"the limit ({MAX_ENTRIES:,} entries, {MAX_UNPACKED_BYTES / 1024**3:.0f} GB)")


def extract_archive(archive: Path, dest: Path) -> Path:
    """Unpack a .zip or .tar(.gz) into dest after checking every entry; returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_name(info.filename, name)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise InputError(f"refused archive {name}: entry '{info.filename}' is a symbolic link")
                _check_total(sum(i.file_size for i in infos), len(infos), name)
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                for m in members:
                    _check_name(m.name, name)
                    if m.issym() or m.islnk():
                        raise InputError(f"refused archive {name}: entry '{m.name}' is a link")
                _check_total(sum(m.size for m in members), len(members), name)
                tf.extractall(dest, filter="data")  # the stdlib's own guard, on top of the checks above
        else:
            raise InputError(f"{name} is not a readable .zip or .tar.gz archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"cannot unpack {name}: {type(exc).__name__}: {exc}") from exc
    return dest


def safe_filename(filename: str, default: str = "upload") -> str:
    """The last part of a name a browser or a user sent ('../../x' -> 'x', 'C:\\a\\b' -> 'b'), so
    it can name a file inside our folders; `default` when nothing is left."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else default


def stage_upload(uploads_dir: Path, filename: str, data: bytes) -> tuple[Path, Path, str]:
    """Write an upload to its own staging folder; returns (source to load, folder to remove
    afterwards, a description with the content hash for the version's `source`)."""
    kind = kind_of(filename)
    if not data:
        raise InputError(f"the upload '{filename}' is empty")
    safe = safe_filename(filename)
    staging = uploads_dir / uuid.uuid4().hex[:12]
    staging.mkdir(parents=True)
    try:
        target = staging / safe
        target.write_bytes(data)
        described = f"upload {safe} (sha256 {hashlib.sha256(data).hexdigest()[:12]})"
        if kind == "archive":
            source = extract_archive(target, staging / "files")
            target.unlink()
            return source, staging, described
        if kind == "file":
            return staging, staging, described
        return target, staging, described
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def precheck_source(path: Path) -> None:
    """Refuse at once what can never load (missing, empty folder, wrong type), so the user
    sees the reason in the form instead of in a failed job."""
    if not path.exists():
        raise InputError(f"source not found: {path}")
    if path.is_file():
        if path.suffix == ".jsonl":
            if path.stat().st_size == 0:
                raise InputError(f"{path} is empty")
            return
        raise InputError(f"unsupported source {path}: give a folder of .txt/.md/.html/.pdf files or a corpus.jsonl")
    if (path / "corpus.jsonl").is_file():
        return
    if not any(f.is_file() and f.suffix.lower() in TEXT_SUFFIXES for f in path.rglob("*")):
        raise InputError(f"no .txt/.md/.html/.pdf files or corpus.jsonl found in {path}")

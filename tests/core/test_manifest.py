from __future__ import annotations

import os
import stat

import pytest

from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import atomic_path, sha256_file, write_bytes_atomic
from alexnet_deploy.core.manifest import Manifest, load_manifest, save_manifest, sidecar_path


def test_atomic_write_replaces_whole_and_uses_the_umask_mode(tmp_path):
    target = tmp_path / "a.bin"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "b.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="Cannot write to"):
        write_bytes_atomic(blocker / "sub" / "c.bin", b"x")


def test_manifest_roundtrip_and_errors(tmp_path):
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model bytes")
    m = Manifest(kind="onnx", classes=["a", "b"], precision="int8", model={"name": "alexnet"})
    assert save_manifest(artifact, m) == sidecar_path(artifact) == tmp_path / "model.onnx.json"
    loaded = load_manifest(artifact)
    assert loaded.sha256 == sha256_file(artifact) and loaded.num_classes == 2 and loaded.precision == "int8"
    assert "torch" in loaded.versions
    with pytest.raises(ArtifactError, match="has no manifest"):
        load_manifest(tmp_path / "other.onnx")
    assert load_manifest(tmp_path / "other.onnx", required=False) is None
    sidecar_path(artifact).write_text("{not json")
    with pytest.raises(ArtifactError, match="is not valid"):
        load_manifest(artifact)

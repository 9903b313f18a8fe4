"""napari_wsss.atomic: the one atomic file writer."""

import pytest

from napari_wsss.atomic import TMP_SUFFIX, atomic_write, atomic_write_bytes, atomic_write_text


@pytest.mark.parametrize("fsync", [True, False])
def test_creates_and_replaces_leaving_no_temporary_file(tmp_path, fsync):
    path = tmp_path / "a.json"
    atomic_write_bytes(path, b"old", fsync=fsync)
    assert path.read_bytes() == b"old"
    assert atomic_write_text(path, "néw") == path
    assert path.read_text(encoding="utf-8") == "néw"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_failing_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "mask.png"
    path.write_bytes(b"published")
    seen = []

    def half_then_fail(tmp):
        seen.append(tmp)
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"published"
    assert seen[0].parent == tmp_path and seen[0].name.endswith(TMP_SUFFIX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]

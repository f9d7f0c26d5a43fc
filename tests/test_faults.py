"""Faults during feature extraction (issue 22): a full disk, killed processes, SIGTERM.

The full disk is a fake of the environment (``shutil.disk_usage``, ``os.posix_fallocate``, a write that
raises ENOSPC), never of the code under test.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vtclip import features
from vtclip.datasets import get_dataset


@pytest.fixture
def toy_test():
    return get_dataset("toy-colours").split("test")


def _extract(clip, ds, cache, **kw):
    return features.extract(clip, ds, dataset_name="toy-colours", split="test", cache_dir=cache,
                            num_workers=0, progress=False, **kw)


def _left_in(cache: Path) -> list[str]:
    """Every name under the cache's dataset folder, hidden temporary folders included."""
    folder = cache / "toy-colours"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_too_little_free_space_is_refused_before_the_map_is_written(tiny_hf, toy_test, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(OSError) as err:
        _extract(tiny_hf, toy_test, tmp_path, indices=range(4))
    msg = str(err.value)
    needed = 4 * (16 * 32 * 4 + tiny_hf.embed_dim * 4 + 8)              # spatial + pooled + labels
    assert f"in {tmp_path / 'toy-colours'} ({needed / 2**20:.1f} MiB needed, 0.0 MiB free)" in msg
    assert "free space there, or set VTCLIP_HOME" in msg and msg.count("\n") == 0
    assert _left_in(tmp_path) == []                                       # nothing half-written stays


def test_a_disk_that_fills_is_enospc_when_the_map_is_allocated_not_sigbus(tiny_hf, toy_test, tmp_path, monkeypatch):
    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"no room on the disk for a feature cache entry in "
                                                       rf"{tmp_path / 'toy-colours'} \(.* MiB needed"):
        _extract(tiny_hf, toy_test, tmp_path, indices=range(4))
    assert _left_in(tmp_path) == []


def test_the_map_is_allocated_on_disk_before_it_is_written(tiny_hf, toy_test, tmp_path, monkeypatch):
    """The temporary spatial.npy holds all its blocks once the first batch is in: a sparse file
    written through a map is what turns a full disk into SIGBUS."""
    real, seen = tiny_hf.encode_image, []

    def encode(pixels):
        if seen == [] and list((tmp_path / "toy-colours").glob(".*/spatial.npy")):
            (npy,) = (tmp_path / "toy-colours").glob(".*/spatial.npy")
            st = npy.stat()
            seen.append((st.st_blocks * 512, st.st_size))
        return real(pixels)

    monkeypatch.setattr(tiny_hf, "encode_image", encode)
    _extract(tiny_hf, toy_test, tmp_path, indices=range(8), batch_size=2)
    ((allocated, size),) = seen
    assert allocated >= size > 8 * 16 * 32 * 4


def test_enospc_while_writing_the_rest_of_the_entry_is_the_same_message(tiny_hf, toy_test, tmp_path, monkeypatch):
    real = np.save

    def save(path, arr, *a, **k):
        if Path(path).name == "pooled.npy":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, arr, *a, **k)

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(OSError, match=rf"entry in {tmp_path / 'toy-colours'}; free space"):
        _extract(tiny_hf, toy_test, tmp_path, indices=range(4))
    assert _left_in(tmp_path) == []


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_extraction_removes_temporary_entries_of_dead_processes_only(tiny_hf, toy_test, tmp_path):
    folder = tmp_path / "toy-colours"
    dead = _dead_pid()
    names = {"dead": f".0123abcd.tmp-{dead}",                          # written by an older version
             "dead_here": f".4567abcd.tmp-{dead}@{socket.gethostname()}",
             "alive": f".89abcdef.tmp-{os.getpid()}@{socket.gethostname()}",
             "elsewhere": f".0123cdef.tmp-{dead}@another-machine"}     # a shared cache: not ours to judge
    for name in names.values():
        (folder / name).mkdir(parents=True)
        (folder / name / "spatial.npy").write_bytes(b"\0" * 1000)
    _extract(tiny_hf, toy_test, tmp_path, indices=range(2))
    left = _left_in(tmp_path)
    assert names["dead"] not in left and names["dead_here"] not in left
    assert names["alive"] in left and names["elsewhere"] in left
    assert len([n for n in left if not n.startswith(".")]) == 1          # and the new entry


SLOW_COMMAND = textwrap.dedent("""
    import sys, time
    from vtclip import cli

    def slow(args):                 # a command still at work when the signal comes
        print("working", flush=True)
        time.sleep(60)

    cli.cmd_zeroshot = slow
    sys.exit(cli.main(["zeroshot", "--dataset", "toy-colours"]))
""")


def test_sigterm_ends_a_command_like_ctrl_c_with_one_line_and_status_143(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_COMMAND], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "VTCLIP_HOME": str(tmp_path)})
    assert proc.stdout.readline() == "working\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 143, err
    assert len(lines) == 1 and lines[0].startswith("vtclip zeroshot: terminated (SIGTERM). No file is left")


def test_sigterm_during_an_extraction_leaves_no_temporary_entry(tiny_hf_dir, tmp_path):
    """A real extraction in a child process, stopped by SIGTERM (what Slurm and `timeout` send)."""
    script = textwrap.dedent(f"""
        import sys, time
        import vtclip as vt
        from vtclip import cli, features
        from vtclip.datasets import get_dataset

        clip = vt.load_clip({str(tiny_hf_dir)!r}, device="cpu")
        real = clip.encode_image

        def slow(pixels):           # the first batch is written, then the process is at work
            out = real(pixels)
            print("encoding", flush=True)
            time.sleep(0.5)
            return out

        clip.encode_image = slow

        def extract(args):
            features.extract(clip, get_dataset("toy-colours").split("test"), dataset_name="toy-colours",
                             split="test", cache_dir={str(tmp_path)!r}, num_workers=0, progress=False,
                             batch_size=2)

        cli.cmd_zeroshot = extract
        sys.exit(cli.main(["zeroshot", "--dataset", "toy-colours"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "encoding\n"
    assert [p for p in (tmp_path / "toy-colours").iterdir() if ".tmp-" in p.name]   # writing now
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and list((tmp_path / "toy-colours").iterdir()) == []


def test_a_vtclip_home_that_cannot_hold_the_cache_says_so(tiny_hf, toy_test, tmp_path, monkeypatch):
    """VTCLIP_HOME is a file (or a read-only mount): one message naming it and what to do."""
    from vtclip import features

    home = tmp_path / "home-is-a-file"
    home.write_text("not a folder")
    monkeypatch.setenv("VTCLIP_HOME", str(home))
    with pytest.raises(OSError, match=r"feature cache cannot be written under .*home-is-a-file.*set VTCLIP_HOME"):
        features.extract(tiny_hf, toy_test, dataset_name="toy-colours", split="test", indices=[0, 1],
                         progress=False)


def test_check_writable_on_a_read_only_mount_names_the_option(tmp_path, monkeypatch):
    """On a read-only mount both creating the probe file and unlinking it fail with EROFS (a fake of
    the file system, not of ``check_writable``): the message names the option, not the probe file."""
    import builtins

    from vtclip.experiments import check_writable

    real_open, real_unlink = builtins.open, Path.unlink

    def read_only_open(path, *args, **kw):
        if str(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kw)

    def read_only_unlink(self, missing_ok=False):
        if str(self).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(Path, "unlink", read_only_unlink)
    with pytest.raises(ValueError, match=r"^--out .*: cannot write there \(Read-only file system\); give a folder"):
        check_writable(tmp_path, "--out")


def test_a_record_write_on_a_full_disk_leaves_no_temporary_file(tmp_path, monkeypatch):
    """ENOSPC while the record's temporary file is written (a fake of the disk, not of write_new)."""
    from vtclip.experiments import write_new

    real_write_text = Path.write_text

    def full_disk(self, text, *args, **kw):
        real_write_text(self, "", *args, **kw)          # the file is created, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_new(tmp_path / "r.json", "{}")
    assert list(tmp_path.iterdir()) == []

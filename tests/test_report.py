"""Generated result tables: correct aggregation, and the README never drifts from the records."""
from __future__ import annotations

import json

import pytest

from vtclip import report
from vtclip.experiments import record_name


def _write(folder, method, dataset, shots, seed, top1, variant=None):
    r = {"method": method, "backbone": "pocket", "dataset": dataset, "shots": shots, "seed": seed, "top1": top1,
         **({"variant": variant} if variant else {})}
    (folder / record_name(r)).write_text(json.dumps(r))


def test_tables_average_seeds_and_count_zero_shot_once(tmp_path):
    for seed, acc in [(1, 70.0), (2, 80.0), (3, 90.0)]:
        _write(tmp_path, "vtclip", "pocket-crowds", 16, seed, acc)
        _write(tmp_path, "zeroshot", "pocket-crowds", 16, seed, 50.0)    # the sweep repeats it per cell
    _write(tmp_path, "vtclip", "pocket-crowds", 1, 1, 55.0)
    for seed in (1, 2, 3):                                                  # a variant in the same folder
        _write(tmp_path, "vtclip", "pocket-crowds", 16, seed, 10.0, variant="dropout0.5")
    (tmp_path / "zeroshot.json").write_text("{}")                           # not a record: ignored
    text = report.pocket_tables(tmp_path)
    assert "| **VT-CLIP** | 80.0 ± 8.2 | 80.0 |" in text
    assert "| zero-shot CLIP | 50.0 | 50.0 |" in text
    assert "| pocket-crowds | 50.0 | 55.0 | 80.0 ± 8.2 |" in text
    cells = report.cells(json.loads(p.read_text()) for p in tmp_path.glob("*seed*.json"))
    assert cells["vtclip+dropout0.5", "pocket-crowds", 16] == [10.0] * 3          # its own cell, not blended


def test_tables_need_records(tmp_path):
    with pytest.raises(FileNotFoundError, match="vtclip sweep"):
        report.pocket_tables(tmp_path)


def test_update_readme_rewrites_only_its_block(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    _write(records, "vtclip", "pocket-crowds", 16, 1, 61.0)
    _write(records, "zeroshot", "pocket-crowds", 16, 1, 50.0)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nstale table\n{report.END}\noutro\n")
    assert report.update_readme(readme, records) is True
    assert readme.read_text() == f"intro\n{report.readme_block(records)}\noutro\n"
    assert "| **VT-CLIP** | 61.0 | 61.0 |" in readme.read_text()
    assert report.update_readme(readme, records) is False                # already up to date
    readme.write_text("no block here\n")
    with pytest.raises(ValueError, match="has no <!-- results:start --> ... <!-- results:end --> block"):
        report.update_readme(readme, records)
    assert readme.read_text() == "no block here\n"                       # refused, left as it was


def test_command_line_checks_without_writing_and_regenerates(tmp_path, capsys):
    records = tmp_path / "records"
    records.mkdir()
    _write(records, "vtclip", "pocket-crowds", 16, 1, 61.0)
    _write(records, "zeroshot", "pocket-crowds", 16, 1, 50.0)
    readme = tmp_path / "README.md"
    stale = f"intro\n{report.START}\nstale table\n{report.END}\noutro\n"
    readme.write_text(stale)
    where = ["--readme", str(readme), "--records", str(records)]
    assert report.main(["--check", *where]) == 1                         # out of date: said, not fixed
    assert "out of date" in capsys.readouterr().err and readme.read_text() == stale
    assert report.main(where) == 0                                        # a plain call regenerates
    assert readme.read_text() == f"intro\n{report.readme_block(records)}\noutro\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "records"]     # no temporary file
    assert report.main(["--check", *where]) == 0
    assert "up to date" in capsys.readouterr().err
    readme.write_text("no block here\n")
    assert report.main(where) == 2
    assert capsys.readouterr().err.startswith("python -m vtclip.report: error: ")
    assert readme.read_text() == "no block here\n"


@pytest.mark.filterwarnings("ignore:'vtclip.report' found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["--check"], 0), (["--no-such-flag"], 2)])
def test_module_run_reads_its_arguments_and_writes_nothing_unasked(argv, code, monkeypatch, capsys):
    # `python -m vtclip.report --help` used to ignore its arguments and rewrite the README
    import runpy

    before = report.README.stat().st_mtime_ns
    monkeypatch.setattr("sys.argv", ["python -m vtclip.report", *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("vtclip.report", run_name="__main__")           # as `python -m vtclip.report`
    assert exit_.value.code == code
    assert ("--check" in capsys.readouterr().out) == (argv == ["--help"])
    assert report.README.stat().st_mtime_ns == before


def test_readme_results_block_matches_committed_records():
    text = report.README.read_text()
    assert report.START in text, "README lost its generated results block"
    block = text[text.index(report.START):text.index(report.END) + len(report.END)]
    assert block == report.readme_block(), "README results drifted from results/pocket: run python -m vtclip.report"


def test_readme_links_every_chapter_with_a_colab_badge():
    import re

    from vtclip import settings

    toc = (settings.REPO_ROOT / "_toc.yml").read_text()
    readme = (settings.REPO_ROOT / "README.md").read_text()
    notebooks = [f for f in re.findall(r"-\s*file:\s*(\S+)", toc) if (settings.REPO_ROOT / f"{f}.ipynb").exists()]
    assert len(notebooks) >= 8
    for f in notebooks:
        assert f"]({f}.ipynb)" in readme, f"README does not link {f}.ipynb"
        assert f"colab.research.google.com/github/vtclip/vtclip/blob/main/{f}.ipynb" in readme, \
            f"README has no Colab badge for {f}"

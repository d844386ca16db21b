"""The built wheel works on its own: ``dtfl compare`` and ``dtfl reproduce`` run from a fresh
venv, outside the repository, importing the installed package (not the source tree).

The wheel is built from a copy of the sources (``pip wheel --no-deps --no-build-isolation``,
with this venv's setuptools) and installed into a venv made in ``tmp_path``; no network: the
fresh venv gets this venv's site-packages (numpy, torch, ...) through a ``.pth`` file, which
adds it as a plain directory (``.pth`` files inside it, such as the editable install's
finder, are not processed), and pip installs the wheel with ``--no-index``. About 25 s on
2 busy cores (a build, a venv and three interpreters that import torch), so not marked slow:
the default run and ``.ci/run`` include it. It needs setuptools in this venv (the ``dev``
extra).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: what the wheel is built from (pyproject.toml's packages and its readme)
SOURCES = ("pyproject.toml", "README.md", "agents", "dtfl_env", "solvers")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(fresh venv, environment for its commands, a working folder outside the repo)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # no PYTHONPATH (it would put a source tree first) and no pip configuration or index
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env.update(MPLBACKEND="Agg", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    src = tmp / "src"  # a copy, so that the build's build/ and *.egg-info stay out of the repo
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    build = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)]
    _run([sys.executable, "-m", "pip", *build], tmp, env)
    (wheel,) = dist.glob("dtfl_gym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "agents/figures/fig4.py" in names and "agents/ppo_defaults.json" in names
    for agent in ("ppo_tableii", "ppo_random"):  # the pretrained agents ship in the wheel
        for f in ("model.zip", "vecnormalize.pkl", "config.json", "card.json"):
            assert f"agents/pretrained/{agent}/{f}" in names
    assert not [n for n in names if n.startswith(("examples/", "tests/"))]

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", purelib], tmp, env).strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_dtfl_test_deps.pth").write_text("\n".join(ours) + "\n")
    # --ignore-installed: the dtfl-gym seen through the .pth (this venv's) is never touched
    install = ["install", "--no-deps", "--no-index", "--ignore-installed", "--quiet", str(wheel)]
    _run([str(python), "-m", "pip", *install], tmp, env)
    work = tmp / "work"
    work.mkdir()
    return venv, env, work


def test_installed_package_is_the_wheel(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    code = (
        "import json, agents, agents.cli, agents.figures.fig4, dtfl_env, solvers\n"
        "from pathlib import Path\n"
        "mods = [agents, agents.cli, agents.figures.fig4, dtfl_env, solvers]\n"
        "print(json.dumps({m.__name__: m.__file__ for m in mods}))\n"
    )
    files = json.loads(_run([str(venv / "bin" / "python"), "-c", code], work, env))
    for name, path in files.items():
        assert Path(path).resolve().is_relative_to(venv.resolve()), (name, path)
        assert not Path(path).resolve().is_relative_to(ROOT), (name, path)
    package = Path(files["agents"]).parent
    assert sorted(p.name for p in package.glob("*.json")) == sorted(
        p.name for p in (ROOT / "agents").glob("*.json")
    )


def test_dtfl_compare_from_the_wheel(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    out = work / "compare"
    small = '{"clusters": 3, "rounds": 1}'  # the README test's smaller episode
    argv = ["compare", "--episodes", "1", "--config", small, "--out", str(out)]
    stdout = _run([str(venv / "bin" / "dtfl"), *argv], work, env)
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("wrote ")]
    paths = [Path(p) for p in line.removeprefix("wrote ").split(", ")]
    assert paths and all(p.is_file() and p.parent == out for p in paths), paths
    assert {".json", ".csv"} <= {p.suffix for p in paths}


def test_dtfl_reproduce_from_the_wheel(installed: tuple[Path, dict[str, str], Path]) -> None:
    venv, env, work = installed
    out = work / "figures"
    stdout = _run(
        [str(venv / "bin" / "dtfl"), "reproduce", "fig4", "--quick", "--out", str(out)], work, env
    )
    fig = out / "fig4_latency_vs_q"
    assert (fig / "fig4_latency_vs_q.png").read_bytes()[:8] == PNG_MAGIC
    assert (fig / "fig4_latency_vs_q.csv").is_file()
    summary = json.loads((fig / "fig4_latency_vs_q_summary.json").read_text())
    assert summary["summary"]["T_star_grows_with_L"] is True
    assert "Fig. 4 on Table II" in stdout
    assert not (work / "runs").exists()


def _readme_main_command() -> list[str]:
    """The README's install-and-run line, its last part (the main job), as argv."""
    text = (ROOT / "README.md").read_text()
    block = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0]
    line = next(ln for ln in block.splitlines() if "dtfl compare" in ln)
    argv = shlex.split(line.split("&&")[-1])
    assert argv[0] == ".venv/bin/dtfl" and argv[1] == "compare", argv
    return argv[1:]


@pytest.mark.slow
def test_readme_main_command_from_the_wheel(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    """The README's main job, verbatim (pretrained PPO beside Algorithm 2, the exact solver
    and a heuristic on DTFL-v0), run from the wheel outside the repository (about a minute
    or two on 2 cores: slow; .ci/run runs it)."""
    venv, env, work = installed
    argv = _readme_main_command()
    stdout = _run([str(venv / "bin" / "dtfl"), *argv], work, env, timeout=900)
    assert "| ppo:random |" in stdout and "| algorithm2 |" in stdout
    assert "final accuracy" in stdout
    out = work / argv[argv.index("--out") + 1]
    assert (out / "results.json").is_file() and (out / "accuracy_time.png").is_file()

"""Build the peers once into ``<stack>/peers/``, like the stack's Kafka jars: later runs reuse them.

- **Flink** (``<stack>/peers/flink/``): ``mvn -q package`` of
  ``bench/peers/flink`` with its own local repository there (Maven Central's
  jars are fetched once), the jar in ``target/peers.jar`` and its classpath
  in ``target/lib/``. Skipped while the jar is newer than the POM and every
  source file.
- **Quix Streams** (``<stack>/peers/quix/venv``): a venv of its own with
  ``quix-requirements.txt`` (quixstreams needs an older pydantic than
  riskstream pins), re-made when that file changes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.progress import Progress
from core.settings import Settings
from stack.control import stack_root
from stack.launch import Child, spawn

__all__ = [
    "FLINK_PROJECT",
    "QUIX_JOB",
    "QUIX_REQUIREMENTS",
    "Built",
    "build_all",
    "build_flink",
    "build_quix",
]

HERE = Path(__file__).resolve().parent
FLINK_PROJECT = HERE / "flink"
QUIX_REQUIREMENTS = HERE / "quix-requirements.txt"
QUIX_JOB = HERE / "quix_job.py"

#: The longest a build may take (the first Flink build fetches ~70 jars).
BUILD_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Built:
    """What the bench runs: the Flink classpath and the Quix venv's Python."""

    flink_classpath: str
    quix_python: Path


def _newest_source_mtime() -> float:
    sources = [FLINK_PROJECT / "pom.xml", *(FLINK_PROJECT / "src").rglob("*")]
    return max(path.stat().st_mtime for path in sources if path.is_file())


def _run(name: str, argv: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run a build step with a progress line; its log's end on failure; stopped on every way out."""
    progress = Progress()
    started = time.monotonic()
    child: Child = spawn(name, argv, {}, log, cwd=cwd)
    try:
        while child.alive():
            elapsed = time.monotonic() - started
            if elapsed > BUILD_TIMEOUT_S:
                raise SystemExit(f"{name} took over {BUILD_TIMEOUT_S:.0f} s: see {log}")
            progress.update(f"  {name}: {elapsed:.0f} s")
            time.sleep(0.5)
    finally:
        child.stop(timeout_s=10)
        progress.done()
    if child.process.returncode != 0:
        raise SystemExit(
            f"{name} failed (exit code {child.process.returncode}):\n{child.log_tail()}"
        )
    print(f"  {name}: done in {time.monotonic() - started:.1f} s", flush=True)


def build_flink(settings: Settings) -> str:
    """The Flink jobs' classpath, built first if the jar is missing or older than the sources."""
    root = stack_root(settings) / "peers" / "flink"
    target = root / "target"
    jar = target / "peers.jar"
    if not jar.exists() or jar.stat().st_mtime < _newest_source_mtime():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise SystemExit("the Flink peers need Maven (mvn) and a JDK 17 on PATH")
        _run(
            "building the Flink peers (mvn -q package)",
            [
                mvn,
                "-q",
                "-B",
                f"-Dmaven.repo.local={root / 'repository'}",
                f"-Dpeers.build.dir={target}",
                "-f",
                str(FLINK_PROJECT / "pom.xml"),
                "package",
            ],
            root / "build.log",
        )
    return f"{jar}:{target / 'lib'}/*"


def build_quix(settings: Settings) -> Path:
    """The Quix venv's python, the venv (re)made if its requirements changed."""
    root = stack_root(settings) / "peers" / "quix"
    venv = root / "venv"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = QUIX_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    # The base interpreter's venv module (this one may itself be a venv's),
    # without pip: ensurepip is missing where Debian's python3-venv is, so
    # this interpreter's pip installs into it (pip --python).
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    _run(
        "installing Quix Streams into its venv",
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(QUIX_REQUIREMENTS),
        ],
        root / "build.log",
    )
    stamp.write_text(wanted)
    return python


def build_all(settings: Settings) -> Built:
    return Built(
        flink_classpath=build_flink(settings), quix_python=build_quix(settings)
    )

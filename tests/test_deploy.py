"""The deployment files keep their promises: docker-compose.yml validates with .env.example and has
the production shape docs/DEPLOY.md describes; the Dockerfile builds a small, non-root image.

Needs the `docker-compose` CLI (Debian package `docker-compose`), not a Docker daemon: `config` only
parses. Without it the compose tests fail, unless PAYWINDOW_SKIP_COMPOSE=1 skips them.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

APP = ("migrate", "worker", "api")
SERVICES = {
    "postgres",
    "temporal-postgres",
    "temporal",
    "temporal-search-attributes",
    "temporal-ui",
    *APP,
    "prometheus",
    "grafana",
}
SECRETS = (
    "AUTH_JWT_SECRET",
    "POSTGRES_PASSWORD",
    "TEMPORAL_POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "MOMO_ACCESS_KEY",
    "MOMO_SECRET_KEY",
    "VNPAY_HASH_SECRET",
    "PAYOS_API_KEY",
    "PAYOS_CHECKSUM_KEY",
)
DONE, HEALTHY = "service_completed_successfully", "service_healthy"


def compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("PAYWINDOW_SKIP_COMPOSE") == "1":
            pytest.skip("docker-compose is not installed (PAYWINDOW_SKIP_COMPOSE=1)")
        pytest.fail(
            "docker-compose is not on PATH: install it (Debian: apt-get install -y docker-compose), "
            "or set PAYWINDOW_SKIP_COMPOSE=1 to skip the compose checks",
            pytrace=False,
        )
    # Only the env file's values: variables in the test's own environment would override them.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    cmd = [exe, "--env-file", str(env_file), "-f", str(COMPOSE), *args]
    return subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """`docker-compose config` with .env.example, as a dict (the Debian 1.29 CLI has no --format json)."""
    result = compose("config")
    assert result.returncode == 0, f"docker-compose config failed with .env.example:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written (anchors resolved, ${...} not interpolated)."""
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    """The variables .env.example sets (commented-out lines are documentation, not values)."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"[A-Z_]+=", line))


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume: compose 1.x prints "src:dst:mode", 2.x prints mappings."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            out.append((source, target))
    return out


def test_compose_config_has_every_service(config: dict[str, Any]) -> None:
    assert SERVICES <= set(config["services"]), SERVICES - set(config["services"])


def test_app_services_start_after_migrations_and_temporal_setup(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("api", "worker"):
        deps = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert deps.get("migrate") == DONE, (name, deps)
        assert deps.get("temporal-search-attributes") == DONE, (name, deps)
        assert deps.get("temporal") == HEALTHY, (name, deps)
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == HEALTHY
    assert services["temporal-search-attributes"]["restart"] == "no"
    assert services["temporal-search-attributes"]["depends_on"]["temporal"]["condition"] == HEALTHY
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert "command" not in services["api"]  # the image's CMD: uvicorn
    assert len({services[name]["image"] for name in (*APP, "temporal-search-attributes")}) == 1


def test_app_environment_is_production(config: dict[str, Any]) -> None:
    for name in APP:
        env = config["services"][name]["environment"]
        assert env["ENVIRONMENT"] == "production", name
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert env["SANDBOX_ENABLED"] == "false", name
        assert urlsplit(env["DATABASE_URL"]).hostname == "postgres", name


def test_backing_services(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("postgres", "temporal-postgres"):
        assert services[name]["image"].startswith("postgres:16"), name
        assert "pg_isready" in " ".join(services[name]["healthcheck"]["test"]), name
        assert "/var/lib/postgresql/data" in {target for _, target in mounts(services[name])}, name
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "temporal-postgres"
    assert "healthcheck" in services["temporal"]
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_monitoring_is_an_opt_in_profile(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert not [name for name in SERVICES - {"prometheus", "grafana"} if services[name].get("profiles")]
    for service in ("prometheus", "grafana"):
        for source, _ in mounts(services[service]):
            assert not source.startswith("/") or Path(source).exists(), f"{service} mounts missing {source}"
    assert (ROOT / "deploy/grafana/provisioning/datasources").is_dir()


def test_compose_refuses_to_run_without_a_secret(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_example().items() if k != "AUTH_JWT_SECRET"))
    result = compose("config", "--quiet", env_file=env_file)
    assert result.returncode != 0
    assert "AUTH_JWT_SECRET" in result.stderr


def test_ports_and_secrets_are_variables(raw: dict[str, Any]) -> None:
    port = re.compile(r"\$\{\w+:-[\d.]+\}:\$\{(\w+):-\d+\}:(\d+|\$\{\w+:-\d+\})")
    for name, service in raw["services"].items():
        for mapping in service.get("ports", []):
            assert port.fullmatch(mapping), f"{name}: port {mapping!r} is not ${{BIND}}:${{PORT}}:..."
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} must be required with ${{{secret}:?...}}"
    example = env_example()
    for required in set(re.findall(r"\$\{(\w+):\?", text)):
        assert example.get(required), f".env.example must set {required} or copying it will not validate"
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    undocumented = set(re.findall(r"\$\{(\w+)", text)) - documented
    assert not undocumented, f"document every compose variable in .env.example: {undocumented}"
    for secret in SECRETS:
        field = Settings.model_fields.get(secret.lower())
        if field is not None:  # a secret the app reads: its public built-in default must not ship here
            assert field.default not in text and field.default not in ENV_EXAMPLE.read_text(), secret


def test_preflight_refuses_env_example_secrets(tmp_path: Path) -> None:
    example = env_example()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        **example,
        "ENVIRONMENT": "production",
        "SANDBOX_ENABLED": "false",
        "DATABASE_URL": f"postgresql://paywindow:{example['POSTGRES_PASSWORD']}@postgres:5432/paywindow",
    }

    def preflight(**overrides: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(ROOT / "deploy/preflight.py")]
        # cwd=tmp_path: Settings reads ./.env, and a developer's must not leak in.
        return subprocess.run(
            cmd, check=False, cwd=tmp_path, env=env | overrides, capture_output=True, text=True, timeout=30
        )

    refused = preflight()
    assert refused.returncode == 2 and "AUTH_JWT_SECRET" in refused.stderr, refused.stderr
    app_secrets = [key for key in SECRETS if key.lower() in Settings.model_fields]
    real = {key: f"{key.lower()}-{'0123456789abcdef' * 2}" for key in app_secrets}
    real["DATABASE_URL"] = "postgresql://paywindow:s3cret@postgres:5432/paywindow"
    assert "VNPAY_PAYMENT_URL" in preflight(**real).stderr  # still .env.example's placeholder
    real["VNPAY_PAYMENT_URL"] = "https://pay.example.vn/paymentv2/vpcpay.html"
    real["VNPAY_API_URL"] = "https://pay.example.vn/merchant_webapi/api/transaction"
    accepted = preflight(**real)
    assert accepted.returncode == 0, accepted.stderr
    sandbox_key = {"MOMO_SECRET_KEY": Settings.model_fields["momo_secret_key"].default}
    assert preflight(**{**real, **sandbox_key}).returncode == 2


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = [[]]
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_small_and_non_root() -> None:
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(preamble), re.MULTILINE))
    base = [re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], stage[0].split()[1]) for stage in stages]
    assert base[-1] == "python:3.11-slim", base
    assert re.search(r"\bAS builder\b", stages[0][0], re.IGNORECASE)
    builder, runtime = "\n".join(stages[0]), "\n".join(stages[-1])
    assert re.search(r"pip install \.(\s|$)", builder)
    assert "[dev]" not in builder and "[embedded]" not in builder
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    users = re.findall(r"^USER (\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert re.search(r"^HEALTHCHECK .*python.*/healthz", runtime, re.MULTILINE)
    assert re.search(r'^CMD \["api"\]', runtime, re.MULTILINE)


TOOLING = {"devstack"}  # packaged for `make dev`, never shipped in the image


def product_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    return packages - TOOLING


def test_dockerfile_copies_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    modules = [f"{m}.py" for m in project["tool"]["setuptools"].get("py-modules", [])]
    _, *stages = dockerfile_stages()
    for stage in (stages[0], stages[-1]):
        copied = {
            src.rstrip("/")
            for line in stage
            if line.startswith("COPY ") and "--from" not in line
            for src in line.split()[1:-1]
        }
        missing = (product_packages() | set(modules)) - copied
        assert not missing, f"{stage[0]}: not copied {missing}"
        assert not copied & TOOLING, f"{stage[0]}: the image must not carry {copied & TOOLING}"
    copied = " ".join(stages[-1])
    assert "alembic.ini" in copied and "migrations/" in copied
    assert TOOLING <= {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}


def test_the_image_runs_without_the_dev_tooling() -> None:
    """What the image carries (the product packages, worker.py, the deploy scripts, the migrations)
    never imports devstack/, which it does not carry."""
    files = [ROOT / "worker.py", *(ROOT / "deploy").glob("*.py"), *(ROOT / "migrations").rglob("*.py")]
    files += [path for package in product_packages() for path in (ROOT / package).rglob("*.py")]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] in TOOLING for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"the image has no devstack/, yet these import it: {offenders}"


def test_the_image_carries_no_gateway_sandbox() -> None:
    """The fake gateways are dev tooling (devstack/sandbox/, kept out by .dockerignore): nothing the
    Dockerfile copies holds a sandbox module."""
    assert (ROOT / "devstack" / "sandbox" / "__init__.py").is_file()
    _, *stages = dockerfile_stages()
    copies = [line for stage in stages for line in stage if line.startswith("COPY ") and "--from" not in line]
    copied = {ROOT / src for line in copies for src in line.split()[1:-1]}
    files = [f for path in copied for f in (path.rglob("*") if path.is_dir() else [path])]
    assert not [str(f.relative_to(ROOT)) for f in files if "sandbox" in f.name.lower()]


def test_entrypoint_roles() -> None:
    script = (ROOT / "deploy/docker-entrypoint.sh").read_text()
    assert "uvicorn api.app:app_factory --factory --host 0.0.0.0" in script
    assert '--port "${API_PORT:-8000}"' in script
    assert "exec python -m infra.migrate" in script  # the product's entry point, not devstack's
    for role in ("api)", "worker)", "migrate)"):
        assert role in script


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".data", ".env", "test-artifacts"} <= ignored


def test_workers_and_api_processes_scale_out(config: dict[str, Any]) -> None:
    services = config["services"]
    assert int(services["worker"]["deploy"]["replicas"]) >= 2
    assert int(services["api"]["environment"]["WEB_CONCURRENCY"]) >= 2
    # Each process holds its own pool: all of them together must fit Postgres's max_connections.
    pool = int(services["api"]["environment"]["DB_POOL_SIZE"])
    processes = int(services["worker"]["deploy"]["replicas"]) + int(
        services["api"]["environment"]["WEB_CONCURRENCY"]
    )
    limit = int(services["postgres"]["command"][-1].split("=")[1])
    assert processes * pool * 2 <= limit  # pool + overflow per process

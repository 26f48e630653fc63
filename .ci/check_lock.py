"""The lock files match pyproject.toml: every dependency (and test extra) is pinned there, at a
version its specifier allows, with hashes. Regenerate them with (pip-tools):

    pip-compile --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \\
        --no-emit-find-links -o requirements.lock pyproject.toml
    pip-compile --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \\
        --no-emit-find-links --extra test -o requirements-test.lock pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def pins(path: Path) -> dict[str, tuple[Version, bool]]:
    """name -> (version, has hashes)."""
    found: dict[str, tuple[Version, bool]] = {}
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            hashed = "--hash=sha256:" in line or "--hash=sha256:" in following
            found[canonicalize_name(match[1])] = (Version(match[2]), hashed)
    return found


def check(lock: Path, requirements: list[str]) -> list[str]:
    pinned = pins(lock)
    problems = []
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in pinned:
            problems.append(f"{lock.name}: {req.name} is not pinned")
            continue
        version, hashed = pinned[name]
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{lock.name}: {req.name}=={version} does not satisfy {req.specifier}")
        if not hashed:
            problems.append(f"{lock.name}: {req.name} has no hash")
    unhashed = [name for name, (_, hashed) in pinned.items() if not hashed]
    problems += [f"{lock.name}: {name} has no hash" for name in unhashed]
    return problems


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = list(project["dependencies"])
    test = runtime + list(project["optional-dependencies"]["test"])
    problems = check(ROOT / "requirements.lock", runtime)
    problems += check(ROOT / "requirements-test.lock", test)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("regenerate the lock files (see .ci/check_lock.py)", file=sys.stderr)
        return 1
    print("lock files match pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())

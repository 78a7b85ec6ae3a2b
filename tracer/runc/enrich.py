"""What a recording adds to runc's own facts: the manager that drove runc, the
Kubernetes fields, and the redaction of secrets. Pure functions (the init's
namespaces and cgroup are read by :mod:`runctrace.runc.proc`).
"""

from __future__ import annotations

import copy
from typing import Any, Optional

REDACTED = "<redacted>"

# Kubernetes fields, from the CRI annotations each runtime puts in the OCI spec.
# containerd's CRI plugin and CRI-O name them differently; first match wins.
K8S_ANNOTATIONS = {
    "pod_name": ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name", "io.kubernetes.cri-o.KubeName"),
    "pod_namespace": ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace", "io.kubernetes.cri-o.Namespace"),
    "pod_uid": ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"),
    "container_name": ("io.kubernetes.cri.container-name", "io.kubernetes.container.name", "io.kubernetes.cri-o.ContainerName"),
    "sandbox_id": ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID"),
    "image_name": ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "io.kubernetes.cri-o.Image"),
}


def k8s_fields(annotations: Optional[dict[str, Any]]) -> dict[str, Any]:
    ann = annotations if isinstance(annotations, dict) else {}
    out: dict[str, Any] = {}
    for column, keys in K8S_ANNOTATIONS.items():
        out[column] = next((str(ann[k]) for k in keys if k in ann), None)
    # containerd: container-type sandbox|container; CRI-O: ContainerType sandbox|container
    kind = ann.get("io.kubernetes.cri.container-type") or ann.get("io.kubernetes.cri-o.ContainerType")
    out["is_sandbox"] = None if kind is None else kind == "sandbox"
    return out


def manager_of(root: Optional[str], caller: Optional[str], annotations: Optional[dict] = None) -> str:
    """Who drove runc: derived from runc's --root, the calling process and CRI annotations."""
    root = root or ""
    caller = caller or ""
    ann = annotations if isinstance(annotations, dict) else {}
    # Docker >= 20.10 runs containers through containerd in its "moby" namespace
    if root.startswith("/run/docker/") or root.rstrip("/").endswith("/containerd/runc/moby") or caller == "dockerd":
        return "docker"
    if any(k.startswith("io.kubernetes.cri-o.") for k in ann) or caller == "crio":
        return "cri-o"
    if caller == "conmon":
        return "conmon"
    if caller.startswith("containerd-shim") or "/containerd/" in root:
        return "containerd"
    return "by-hand"


def redact_env(config: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """A copy of an OCI spec with every environment value replaced by ``<redacted>``.

    Covers ``process.env`` and each hook's ``env`` (hooks run with the spec's
    secrets too). Keys are kept: which variables exist is useful and rarely secret.
    """
    if not isinstance(config, dict):
        return config
    process = config.get("process")
    hooks = config.get("hooks")
    if not (isinstance(process, dict) and process.get("env")) and not isinstance(hooks, dict):
        return config
    out = copy.copy(config)
    if isinstance(process, dict) and isinstance(process.get("env"), list):
        out["process"] = dict(process, env=_redact_list(process["env"]))
    if isinstance(hooks, dict):
        out["hooks"] = {
            stage: [dict(h, env=_redact_list(h["env"])) if isinstance(h, dict) and isinstance(h.get("env"), list) else h
                    for h in entries] if isinstance(entries, list) else entries
            for stage, entries in hooks.items()
        }
    return out


def _redact_list(env: list) -> list:
    return [f"{str(e).split('=', 1)[0]}={REDACTED}" if isinstance(e, str) else e for e in env]

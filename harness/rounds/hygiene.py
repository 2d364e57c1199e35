"""Measurement hygiene of a round: a performance run has its host to itself.

Two jobs on one host at the same time measure each other (CPU, memory bandwidth, PCIe, the GPU
itself), so before a round starts the harness works out, from the launcher's own settings, how
many jobs it may run at once on one host; a round with a performance job (``mode`` performance
or submission) where that can be more than one is refused in one line that says how to run the
jobs one at a time. Rounds of accuracy-only jobs may run in parallel. What the settings cannot
show (how a cluster packs jobs onto nodes) is covered by the launcher's own exclusivity knobs,
which are checked here, and afterwards by the overlaps every round records
(:func:`harness.rounds.jobs.overlaps`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError

# A Ray resource that each node of a benchmark cluster offers once (`ray start --resources=...`):
# a task that claims one unit has its node to itself. Any custom resource works the same way.
RAY_HOST_RESOURCE = "harness_host"


@dataclass(frozen=True)
class Placement:
    """How many jobs the launcher may run at once on one host (None: it cannot be told), and the
    setting that makes it one."""

    at_once: int | None
    how: str  # what the number comes from, e.g. "n_jobs=-1 on 2 CPUs"
    fix: str  # the override that runs the jobs one per host at a time


def _cls(launcher: Mapping[str, Any]) -> str:
    return str(launcher.get("_target_", "")).rsplit(".", 1)[-1]


def placement(launcher: Mapping[str, Any], batch: int, environ: Mapping[str, str] | None = None) -> Placement:
    """Jobs of one launch of ``batch`` jobs that may run at once on one host, for ``launcher`` (the
    resolved ``hydra.launcher`` config)."""
    environ = os.environ if environ is None else environ
    one_at_a_time = "hydra.sweeper.max_batch_size=1"
    kind = _cls(launcher)
    if kind == "BasicLauncher":
        return Placement(1, "one job after another in this process", "")
    if kind == "JoblibLauncher":
        n = launcher.get("n_jobs")
        cpus = _cpus()
        workers = 1 if n is None else cpus + 1 + n if n < 0 else n  # joblib's rule for negative n_jobs
        return Placement(min(max(workers, 1), batch), f"n_jobs={n} on {cpus} CPUs", "hydra.launcher.n_jobs=1")
    if kind == "LocalLauncher":  # submitit_local: every job of a launch is its own process, all at once
        return Placement(batch, "submitit_local starts every job of a launch at once", one_at_a_time)
    if kind == "SlurmLauncher":
        extra = launcher.get("additional_parameters") or {}
        if _truthy(extra.get("exclusive")):
            return Placement(1, "sbatch --exclusive: one job per node", "")
        parallel = launcher.get("array_parallelism") or batch
        if parallel == 1:
            return Placement(1, "array_parallelism=1", "")
        return Placement(None, "Slurm may place several jobs on one node",
                         "+hydra.launcher.additional_parameters.exclusive=true")
    if kind == "RayLauncher":
        return _ray(launcher.get("ray") or {}, batch, environ)
    name = launcher.get("_target_", "?")
    return Placement(None, f"the harness cannot tell how {name} places jobs", one_at_a_time)


def _ray(ray: Mapping[str, Any], batch: int, environ: Mapping[str, str]) -> Placement:
    """Ray runs a task wherever its claimed resources are free: jobs share a node unless each claims
    what a node has once. A local instance (no address) has the resources ``init`` gives it."""
    init, remote = ray.get("init") or {}, ray.get("remote") or {}
    custom = {k: float(v) for k, v in (remote.get("resources") or {}).items() if v}
    fix = (f"hydra.launcher.ray.remote.resources={{{RAY_HOST_RESOURCE}:1}} with one {RAY_HOST_RESOURCE} per node "
           f"(ray start --resources='{{\"{RAY_HOST_RESOURCE}\": 1}}')")
    local = init.get("address") is None and not environ.get("RAY_ADDRESS")
    if not local:
        if custom:  # the cluster's nodes offer it once each (README, "Rounds on a cluster")
            return Placement(1, f"each job claims {', '.join(custom)} (one per node)", "")
        return Placement(None, "Ray may place several jobs on one node", fix)
    offered = {"CPU": float(init.get("num_cpus") or _cpus()), **{k: float(v) for k, v in
                                                                   (init.get("resources") or {}).items()}}
    if init.get("num_gpus") is not None:
        offered["GPU"] = float(init["num_gpus"])
    claimed = {"CPU": float(remote.get("num_cpus", 1) or 0), **custom}
    if remote.get("num_gpus"):
        claimed["GPU"] = float(remote["num_gpus"])
    if any(k not in offered for k in claimed if claimed[k]):
        return Placement(None, "jobs claim resources the local Ray instance is not given", fix)
    fits = min((math.floor(offered[k] / v) for k, v in claimed.items() if v), default=batch)
    how = ", ".join(f"{k} {offered[k]:g}/{v:g}" for k, v in claimed.items() if v)
    return Placement(min(max(fits, 1), batch), f"local Ray instance, offered/claimed per job: {how}",
                     "hydra.launcher.ray.remote.num_cpus=<the CPUs of ray.init.num_cpus>")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _truthy(value: Any) -> bool:
    # `exclusive: true` becomes `#SBATCH --exclusive`; --exclusive=user would still share a node
    return value is True or str(value).lower() == "true"


def check(launcher: Mapping[str, Any], choice: str, batch: int, performance: int) -> Placement:
    """Refuse (ConfigError, exit 2) a launch of ``batch`` jobs, ``performance`` of them measuring
    performance, that could put a performance job beside another job on one host."""
    where = placement(launcher, batch)
    if batch < 2 or performance == 0 or where.at_once == 1:
        return where
    at_once = "several" if where.at_once is None else str(where.at_once)
    raise ConfigError(f"measurement hygiene: hydra/launcher={choice} could run {at_once} of this round's "
                      f"{batch} jobs at once on one host ({where.how}) and {performance} of them measure "
                      f"performance, which needs the host to itself: run one job per host at a time ({where.fix}), "
                      "or run an accuracy-only round (mode=accuracy) in parallel")

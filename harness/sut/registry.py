"""Which adapter ``sut=<name>`` selects: the built-in ones, those registered in-process, and those
other packages declare in the ``harness.suts`` entry-point group.

Nothing here imports an adapter until it is chosen, so listing SUT names or running ``sut=echo``
never imports torch or an HTTP client. A third-party package declares its adapter in its
pyproject.toml (README "Write your own SUT")::

    [project.entry-points."harness.suts"]
    mine = "my_package.sut:MySUT"

and ``harness sut=mine`` runs it: its settings come from ``conf/sut/mine.yaml`` when there is
one, else from the defaults of the adapter's ``Params`` dataclass (stored as the ``sut/mine``
option of Hydra's config store when a config is composed, :func:`store_default_configs`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.sut.base import SUT

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "harness.suts"

# sut=<name> -> "module:Class"; imported only when chosen (torch, HTTP clients cost nothing before).
BUILTIN: dict[str, str] = {
    "echo": "harness.sut.fakes:EchoSUT",
    "oracle": "harness.sut.fakes:OracleSUT",
    "failing": "harness.sut.fakes:FailingSUT",
    "null": "harness.sut.fakes:NullSUT",
    "queue": "harness.sut.fakes:QueueSUT",  # known capacity: slots / service time
    "hf": "harness.sut.hf.adapter:HFSUT",  # torch/transformers: imported only when chosen
    "openai": "harness.sut.openai.adapter:OpenAISUT",  # any OpenAI-compatible server (HTTP/1.1)
}

_registered: dict[str, type[SUT]] = {}

S = TypeVar("S", bound="type[SUT]")


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make ``sut=<name>`` select this adapter in this process (a script, a test).
    Packages declare theirs as entry points instead, so they are found without being imported."""

    def add(cls: S) -> S:
        cls.name = name
        _registered[name] = cls
        return cls

    return add


@functools.cache
def plugins() -> dict[str, str]:
    """``harness.suts`` entry points: name -> "module:Class" (built-in names cannot be taken). Read
    once per process: packages installed while it runs are seen by the next one."""
    from importlib.metadata import entry_points  # only when a name is looked up, not on import

    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            log.warning("entry point %s = %s ignored: sut=%s is built in", ep.name, ep.value, ep.name)
        else:
            found.setdefault(ep.name, ep.value)
    return found


def names() -> list[str]:
    """Every name ``sut=`` accepts, sorted."""
    return sorted({**BUILTIN, **plugins(), **_registered})


def adapter(name: str) -> type[SUT]:
    """The adapter class ``sut.name=<name>`` selects; ConfigError naming ``sut.name`` when none."""
    if name in _registered:
        return _registered[name]
    spec = BUILTIN.get(name) or plugins().get(name)
    if spec is None:
        raise ConfigError(f"unknown SUT 'sut.name={name}' (known: {', '.join(names())})")
    return _load(name, spec)


def _load(name: str, spec: str) -> type[SUT]:
    from harness.sut.base import SUT

    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"sut.name={name}: cannot load its adapter {spec} ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(obj, type) and issubclass(obj, SUT)):
        raise ConfigError(f"sut.name={name}: {spec} is not a harness.sut.base.SUT subclass")
    if not dataclasses.is_dataclass(getattr(obj, "Params", None)):
        raise ConfigError(f"sut.name={name}: {spec} has no Params dataclass (its sut.<key> settings)")
    if not obj.name:
        obj.name = name
    return obj


def default_config(cls: type[SUT]) -> dict[str, Any] | None:
    """The adapter's settings with their defaults (its ``Params``), as a ``conf/sut/`` file would
    hold them; None when a setting has no default."""
    try:
        params = cls.Params()
    except TypeError:
        return None
    return dataclasses.asdict(params)


def store_default_configs(store: Any, conf_dir: Any) -> None:
    """Give each entry-point SUT without a ``conf/sut/<name>.yaml`` a ``sut/<name>`` option in
    Hydra's config store (``store``): its ``Params`` defaults. A plugin that cannot be loaded is
    skipped with a warning here; choosing it then fails with the reason."""
    for name, spec in plugins().items():
        if (conf_dir / "sut" / f"{name}.yaml").is_file():
            continue
        try:
            defaults = default_config(_load(name, spec))
        except ConfigError as exc:
            log.warning("%s", exc)
            continue
        if defaults is None:
            log.warning("sut=%s: its Params have settings without defaults; add conf/sut/%s.yaml", name, name)
            continue
        store.store(group="sut", name=name, node={"name": name, **defaults}, provider=ENTRY_POINT_GROUP)

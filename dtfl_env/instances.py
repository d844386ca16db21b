"""Instance files as a scenario: the clusters of ``dtfl solve --instance`` files as an
environment's cluster sites.

An env config's ``{"scenario": {"instances": [FILE, ...]}}`` (the files, in that order) or
``{"scenario": {"instances": "DIR"}}`` (every ``*.json`` file of DIR, sorted by name) names
instance files in the JSON schema of :meth:`dtfl_env.config.Cluster.load`. They are read
once, when the config is validated (:func:`load_instances`), into an :class:`InstanceSet`;
an error names the entry, the file and the field
(``scenario.instances[2] (path/x.json): gld.energy_budget_j[0]: must be > 0, got -1.0``).
The environment deals its sites from the set (:func:`dtfl_env.envs.sites.instance_sites`).

Imports nothing of dtfl-gym but :mod:`dtfl_env.config`, so validating a config stays light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from dtfl_env.config import Cluster, Constants

__all__ = ["InstanceSet", "instance_paths", "load_instances"]

#: where the instance files sit in an env config (the prefix of the errors)
WHERE = "scenario.instances"


def instance_paths(spec: Any, where: str = WHERE) -> list[str]:
    """The instance files of ``spec``: a directory (a string; its ``*.json`` files sorted by
    name) or a non-empty list of file paths (strings, kept in their order).

    A missing or empty directory, an empty list or an entry that is not a string raises
    ``ValueError`` naming ``where`` (a missing file is found by :func:`load_instances`)."""
    if isinstance(spec, str):
        folder = Path(spec)
        if not folder.is_dir():
            raise ValueError(
                f"{where}: no such directory: {spec!r} (give a directory of *.json instance "
                "files or a list of instance files)"
            )
        paths = sorted(str(p) for p in folder.glob("*.json") if p.is_file())
        if not paths:
            raise ValueError(f"{where}: no *.json instance files in the directory {spec!r}")
        return paths
    if isinstance(spec, Mapping) or not isinstance(spec, Sequence):
        raise ValueError(
            f"{where}: expected a list of instance files or a directory (strings), "
            f"got {type(spec).__name__}"
        )
    if not spec:
        raise ValueError(f"{where}: the list is empty; give at least one instance file")
    for i, path in enumerate(spec):
        if not isinstance(path, str):
            raise ValueError(f"{where}[{i}]: expected a file path (a string), got {path!r}")
    return list(spec)


def _read(path: str, label: str) -> tuple[Cluster, tuple[str, ...]]:
    """The cluster of one instance file and the constants it sets; errors start with
    ``label``."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ValueError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{label}: is a directory, not an instance file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{label}: cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{label}: expected a JSON object with gld, bld (and constants), "
            f"got {type(data).__name__}"
        )
    try:
        cluster = Cluster.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None
    given = data.get("constants", {})
    return cluster, tuple(sorted(given))


@dataclass(frozen=True, eq=False)
class InstanceSet:
    """Clusters read from instance files (:func:`load_instances`), in the files' order.

    ``source`` is the configured value (a directory or the list of files, as given),
    ``paths`` the files read, ``clusters`` their validated clusters (with each file's
    constants: the defaults of :class:`~dtfl_env.config.Constants` for keys it leaves out)
    and ``given_constants`` the constants keys each file sets; ``where`` is the dotted path
    its errors start with."""

    name: ClassVar[str] = "instances"  # the scenario's name in the scenario registry

    source: str | tuple[str, ...]
    paths: tuple[str, ...]
    clusters: tuple[Cluster, ...] = field(repr=False)
    given_constants: tuple[tuple[str, ...], ...] = field(repr=False)
    where: str = field(default=WHERE, repr=False)

    def __len__(self) -> int:
        return len(self.clusters)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceSet):
            return NotImplemented
        return (self.source, self.paths) == (other.source, other.paths) and all(
            a == b for a, b in zip(self.clusters, other.clusters, strict=True)
        )

    def __hash__(self) -> int:  # equal sets read the same files (EnvConfig stays hashable)
        return hash((self.source, self.paths))

    def label(self, index: int) -> str:
        """How errors name instance ``index``: ``scenario.instances[2] (path/x.json)``."""
        return f"{self.where}[{index}] ({self.paths[index]})"

    def largest(self) -> tuple[int, int]:
        """(index, devices) of the first instance with the most devices (M + N)."""
        sizes = [c.n_gld + c.n_bld for c in self.clusters]
        i = max(range(len(sizes)), key=sizes.__getitem__)
        return i, sizes[i]

    def sets_constant(self, key: str) -> bool:
        """Whether some file sets the constant ``key``."""
        return any(key in given for given in self.given_constants)

    def shared_constants(self, overrides: Mapping[str, Any] | None = None) -> Constants:
        """The constants every instance shares once ``overrides`` (the env config's
        ``constants``) apply over each file's; the sites of an env share one set, so
        instances that still differ raise ``ValueError`` naming both files and the key."""
        first: Constants | None = None
        for i, cluster in enumerate(self.clusters):
            own = cluster.constants.replace(**overrides) if overrides else cluster.constants
            if first is None:
                first = own
                continue
            if own != first:
                key = next(
                    f.name
                    for f in fields(Constants)
                    if getattr(own, f.name) != getattr(first, f.name)
                )
                raise ValueError(
                    f"{self.label(i)}: constants.{key}: {getattr(own, key)!r} differs from "
                    f"{getattr(first, key)!r} of {self.label(0)}; an env's sites share one set "
                    f"of constants (set constants.{key} in the env config to use one value)"
                )
        assert first is not None  # an InstanceSet holds at least one cluster
        return first

    def to_dict(self) -> dict[str, Any]:
        """The configured value, JSON-ready (``{"instances": ...}``)."""
        return {"instances": self.source if isinstance(self.source, str) else list(self.source)}


def load_instances(spec: Any, where: str = WHERE) -> InstanceSet:
    """Read the instance files of ``spec`` (:func:`instance_paths`: a directory or a list of
    files) into an :class:`InstanceSet`.

    Raises
    ------
    ValueError
        Naming the entry, the file and the field: ``scenario.instances[2] (x.json):
        gld.energy_budget_j[0]: must be > 0, got -1.0``; a missing file, a file that is not
        valid JSON, a missing or empty directory or an empty list likewise.
    """
    if isinstance(spec, InstanceSet):
        return spec
    paths = instance_paths(spec, where)
    read = [_read(p, f"{where}[{i}] ({p})") for i, p in enumerate(paths)]
    return InstanceSet(
        source=spec if isinstance(spec, str) else tuple(spec),
        paths=tuple(paths),
        clusters=tuple(c for c, _ in read),
        given_constants=tuple(g for _, g in read),
        where=where,
    )

"""Does a ``Use`` (usage.py) exist in one Slicer release's API (reference_api.py)?"""

from __future__ import annotations

import unittest

from Testing.slicer_api.reference_api import SlicerApi, vtk_reference
from Testing.slicer_api.usage import Use

# Python bases of Slicer's scripted-module classes that live outside Slicer.
_STDLIB_BASES = {"unittest.TestCase": set(dir(unittest.TestCase))}


def _script_class_members(api: SlicerApi, dotted_class: str) -> set[str] | None:
    module, _, name = dotted_class.rpartition(".")
    cls = api.script_class(module, name)
    if cls is None:
        return None
    members = set(cls["methods"]) | set(cls["attributes"])
    for base in cls["bases"]:
        members |= _STDLIB_BASES.get(base, set())
    return members


def _base_member(use: Use, api: SlicerApi) -> str | None:
    found = False
    for base in use.name.split("|"):
        members = _script_class_members(api, base)
        if members is None:
            return f"{base} does not exist"
        found = found or use.member in members
    return None if found else f"no base class ({use.name}) has {use.member}"


def _keyword(use: Use, api: SlicerApi) -> str | None:
    module, _, function = use.name.rpartition(".")
    signature = api.function(module, function)
    if signature is None:  # a method of a module's class (SampleData.SampleDataLogic.X)?
        owner, _, name = module.rpartition(".")
        cls = api.script_class(owner, name) if owner else None
        signature = cls["methods"].get(function) if cls else None
    if signature is None:
        return None  # not a function (a class or name): checked as a "module" use
    if use.member in signature["params"] or signature["varkw"]:
        return None
    return f"{use.name}() takes no keyword {use.member!r} (it takes {signature['params']})"


def _script_member(use: Use, api: SlicerApi) -> str | None:
    members = _script_class_members(api, use.name)
    if members is None:
        return f"{use.name} does not exist"
    return None if use.member in members else f"{use.name} has no member {use.member!r}"


def _member(use: Use, api: SlicerApi) -> str | None:
    if not api.has_class(use.name):
        return f"class {use.name} does not exist"
    if use.member in api.members(use.name):
        return None
    return f"{use.name} has no member {use.member!r}"


def _signal(use: Use, api: SlicerApi) -> str | None:
    if not api.has_class(use.name):
        return f"class {use.name} does not exist"
    if use.member in api.signals(use.name):
        return None
    return f"{use.name} has no signal {use.member}"


def _module(use: Use, api: SlicerApi) -> str | None:
    if api.module(use.name) is None:
        return f"module {use.name} does not exist"
    if use.member in api.module_names(use.name):
        return None
    return f"{use.name} has no {use.member!r}"


def _vtk(use: Use, api: SlicerApi) -> str | None:
    reference = vtk_reference()
    if use.name in reference["constants"] or api.has_class(use.name):
        return None
    return f"vtk has no {use.name}"


_CHECKS = {
    "namespace": lambda u, api: None if u.member in api.namespace() else f"no slicer.{u.member}",
    "module": _module,
    "keyword": _keyword,
    "member": _member,
    "signal": _signal,
    "class": lambda u, api: None if api.has_class(u.name) else f"class {u.name} does not exist",
    "vtk": _vtk,
    "base_member": _base_member,
    "script_member": _script_member,
}


def problem(use: Use, api: SlicerApi) -> str | None:
    """Why ``use`` fails in ``api``'s Slicer release, or None when it exists there."""
    return _CHECKS[use.kind](use, api)


def problems(uses: list[Use], apis: list[SlicerApi]) -> list[str]:
    """What fails: a use missing in any of ``apis``; an optional use missing in all of them."""
    found = []
    for use in uses:
        failures = [(api, why) for api in apis if (why := problem(use, api))]
        if use.optional and len(failures) < len(apis):
            continue
        found += [f"{use.where}: {why} in Slicer {api.tag}" for api, why in failures]
    return sorted(set(found))

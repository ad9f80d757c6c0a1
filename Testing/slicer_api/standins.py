"""Stand-ins for Slicer's Python modules and the PyTorch extension, as strict as the real ones.

Why: a stand-in that accepts any attribute hides exactly the mistakes it should catch (a test that
replaced ``slicer.util.executePythonModule`` passed although Slicer 5.10 has no such function).
These stand-ins know, from the reference lists, which names a given Slicer release (or the
PyTorchUtils source) has and which parameters each function takes: anything else raises. A test
supplies implementations only for what the code under test should call.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

from Testing.slicer_api.reference_api import SlicerApi, pytorch_utils, supported


def reference_signature(spec: dict) -> inspect.Signature:
    """A signature with the reference's parameter names, required ones without default."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter(
            name, kind, default=inspect.Parameter.empty if name in spec["required"] else None
        )
        for name in spec["params"]
    ]
    if spec["varargs"]:
        parameters.append(inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL))
    if spec["varkw"]:
        parameters.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def checked(function: Callable, spec: dict | list[dict], where: str) -> Callable:
    """``function``, but a call that a real signature (every one of ``spec``) rejects raises."""
    signatures = [reference_signature(one) for one in (spec if isinstance(spec, list) else [spec])]

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        for signature in signatures:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{where}: the real one would reject this call ({error})") from None
        return function(*args, **kwargs)

    return call


class StrictModule(types.ModuleType):
    """A module with only the names the reference lists; the stand-in provides some of them.

    ``fallback``: a real module that serves allowed names the stand-in does not provide
    (slicer-core's ``slicer.util`` for ``arrayFromVolume`` and the like).
    """

    def __init__(
        self, name: str, allowed: set[str], release: str, fallback: types.ModuleType | None = None
    ) -> None:
        super().__init__(name)
        self._allowed, self._release, self._fallback = allowed, release, fallback

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") or attribute not in self._allowed:
            raise AttributeError(f"{self.__name__} has no {attribute!r} in {self._release}")
        if self._fallback is not None and hasattr(self._fallback, attribute):
            return getattr(self._fallback, attribute)
        raise AttributeError(f"{self.__name__}.{attribute} exists but this test did not provide it")

    def provide(self, functions: dict | None = None, **values: Any) -> StrictModule:
        """Set implementations; a name the real module lacks is refused."""
        for name, value in {**(functions or {}), **values}.items():
            assert name in self._allowed, f"{self.__name__} has no {name!r} in {self._release}"
            setattr(self, name, value)
        return self


def slicer_module(api: SlicerApi, name: str, functions: dict[str, Callable]) -> StrictModule:
    """``slicer.util`` (or another slicer submodule) of ``api``'s release with checked functions."""
    module = StrictModule(name, api.module_names(name), f"Slicer {api.tag}")
    wrapped = {}
    for function_name, implementation in functions.items():
        spec = api.function(name, function_name)
        assert spec is not None, f"{name} has no function {function_name} in Slicer {api.tag}"
        wrapped[function_name] = checked(implementation, spec, f"{name}.{function_name}")
    return module.provide(wrapped)


def common_slicer_module(
    name: str, functions: dict[str, Callable], fallback: types.ModuleType | None = None
) -> StrictModule:
    """A slicer submodule with the names every supported release has; calls checked against all."""
    apis = supported()
    allowed = set.intersection(*(api.module_names(name) for api in apis))
    release = "every supported Slicer (" + ", ".join(api.tag for api in apis) + ")"
    module = StrictModule(name, allowed, release, fallback)
    wrapped = {}
    for function_name, implementation in functions.items():
        specs = [api.function(name, function_name) for api in apis]
        assert all(specs), f"{name}.{function_name} is missing in a supported Slicer"
        wrapped[function_name] = checked(implementation, specs, f"{name}.{function_name}")
    return module.provide(wrapped)


def slicer_package(api: SlicerApi, submodules: dict[str, StrictModule], **values: Any) -> Any:
    """The ``slicer`` package of ``api``'s release holding ``submodules`` (util, packaging...)."""
    package = StrictModule("slicer", api.namespace(), f"Slicer {api.tag}")
    for name, module in submodules.items():
        package.provide(**{name.removeprefix("slicer."): module})
    return package.provide(**values)


def pytorch_utils_module(implementations: dict[str, Callable]) -> types.ModuleType:
    """``PyTorchUtils`` with a ``PyTorchUtilsLogic`` that has the real class's methods only.

    Each given implementation is checked against the real method's parameters; a real method the
    test did not implement raises NotImplementedError, a method the real class lacks AttributeError.
    """
    reference = pytorch_utils()["PyTorchUtilsLogic"]
    methods, static = reference["methods"], set(reference["staticmethods"])
    unknown = set(implementations) - set(methods)
    assert not unknown, f"the real PyTorchUtilsLogic has no {sorted(unknown)}"

    def missing(name: str) -> Callable:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise NotImplementedError(f"PyTorchUtilsLogic.{name} is not implemented here")

        return call

    members: dict[str, Any] = {}
    for name, spec in methods.items():
        if name == "__init__":
            continue
        function = checked(
            implementations.get(name, missing(name)), spec, f"PyTorchUtilsLogic.{name}"
        )
        members[name] = staticmethod(function) if name in static else function
    module = types.ModuleType("PyTorchUtils")
    module.PyTorchUtilsLogic = type("PyTorchUtilsLogic", (), members)
    return module


def sample_data_module(register: Callable) -> types.ModuleType:
    """``SampleData`` whose ``SampleDataLogic.registerCustomSampleDataSource`` is ``register``,
    checked against the real static method's parameters in every supported Slicer."""
    name = "registerCustomSampleDataSource"
    specs = []
    for api in supported():
        logic = api.script_class("SampleData", "SampleDataLogic")
        assert logic is not None, f"no SampleDataLogic in Slicer {api.tag}"
        assert name in logic["methods"], f"no {name} in Slicer {api.tag}"
        specs.append(logic["methods"][name])
    method = staticmethod(checked(register, specs, f"SampleDataLogic.{name}"))
    module = types.ModuleType("SampleData")
    module.SampleDataLogic = type("SampleDataLogic", (), {name: method})
    return module

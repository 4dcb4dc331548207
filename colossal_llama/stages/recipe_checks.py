"""The building blocks of the recipe schema (`recipe_schema.py`): errors at keys, settings, paths, names.

Pydantic reports every error of a validation at once. A check that concerns
one key raises `problem(message)` there; one that finds several raises a
`Problems`, a ValidationError whose errors sit at their own keys (pydantic
merges it into the enclosing one, the keys prefixed). Our messages are whole
sentences ("unknown key (allowed: ...)", "expected float, got 'fast'"); the
types of pydantic's own errors are turned into such words in `recipe.py`.

Checks read what they need beyond their value from the validation context:
`base`, `run_dir` and `check_paths` for paths, `sources` for source names.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from colossal_llama.config import coerce, field_types
from colossal_llama.errors import ConfigError
from colossal_llama.model.hub import cached_snapshot, is_repo_id

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MESSAGE_TYPES = ("recipe", "unknown_key")  # our own error types: the message is the whole text


def problem(message: str, kind: str = "recipe") -> PydanticCustomError:
    """An error whose message is `message` verbatim (a template would read its braces as fields)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


class Problems:
    """Errors at several keys, raised as one ValidationError (pydantic merges it into the enclosing one)."""

    def __init__(self) -> None:
        self.details: list[InitErrorDetails] = []

    def add(self, loc: tuple, message: str, value: Any = None, kind: str = "recipe") -> None:
        self.details.append(InitErrorDetails(type=problem(message, kind), loc=loc, input=value))

    def keep(self, prefix: tuple, error: dict) -> None:
        """Carry an error of another ValidationError over, its key under `prefix`."""
        if error["type"] in MESSAGE_TYPES:
            self.add(prefix + tuple(error["loc"]), error["msg"], error.get("input"), error["type"])
            return
        detail = InitErrorDetails(type=error["type"], loc=prefix + tuple(error["loc"]), input=error.get("input"))
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        self.details.append(detail)

    def check(self, prefix: tuple, validate, *args, **kwargs):
        """validate(*args, **kwargs), or None with its errors kept under `prefix`."""
        try:
            return validate(*args, **kwargs)
        except ValidationError as exc:
            for error in exc.errors():
                self.keep(prefix, error)
            return None

    def raise_if_any(self) -> None:
        if self.details:
            raise ValidationError.from_exception_data("recipe", self.details)


def check_settings(settings: dict, cls, owned: dict, **dummies) -> dict:
    """Settings of a config dataclass, each checked at its key, then the dataclass's own checks on the whole.

    A key must be a field and not one the runner sets (`owned`: key -> what to
    use instead); a value is converted as train.py's --config file converts it
    (`config.coerce`). `dummies` stand in for the fields the runner fills in.
    Returns the converted settings.
    """
    types, problems, out = field_types(cls), Problems(), {}
    for name, value in settings.items():
        if name not in types:
            problems.add((name,), f"unknown key (allowed: {', '.join(types)})", value, "unknown_key")
        elif name in owned:
            problems.add((name,), f"set by the runner; use {owned[name]}", value)
        else:
            try:
                out[name] = coerce(value, types[name])
            except ConfigError as exc:
                problems.add((name,), str(exc), value)
    problems.raise_if_any()
    try:
        cls(**{**dummies, **out})
    except (ConfigError, TypeError, ValueError) as exc:
        raise problem(str(exc)) from None
    return out


def _path(value: str, info, folder: bool = False) -> str:
    """Relative to the recipe's folder, `{run_dir}` replaced; it must exist where context says so."""
    context = info.context
    text = value.replace("{run_dir}", context["run_dir"])
    resolved = text if os.path.isabs(text) else os.path.normpath(os.path.join(context["base"], text))
    if context["check_paths"]:
        if not os.path.exists(resolved):
            raise problem(f"{resolved} does not exist")
        if folder and not os.path.isdir(resolved):
            raise problem(f"{resolved} is not a folder")
    return resolved


def _folder(value: str, info) -> str:
    return _path(value, info, folder=True)


def _model_dir(value: str, info) -> str:
    """A model folder (as `_folder`), or a Hugging Face id (`org/name`) of a model in the local cache: its
    snapshot folder (`model.hub`), so every stage and probe sees a folder."""
    text = value.replace("{run_dir}", info.context["run_dir"])
    local = text if os.path.isabs(text) else os.path.join(info.context["base"], text)
    if os.path.exists(local) or not is_repo_id(text):
        return _folder(value, info)
    try:  # the id alone: a folder of that name under the current directory is not the recipe's
        return cached_snapshot(text, text, error=ValueError)
    except ValueError as exc:
        if info.context["check_paths"]:
            raise problem(str(exc)) from None
        return text


def one_or_many(value):
    """A single value is a list of one; null is an empty list."""
    return [] if value is None else value if isinstance(value, list) else [value]


def _number(value) -> float:
    """A number or a numeric string (YAML 1.1 reads `1e-3` as a string) as a float; a bool is no number."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    raise problem(f"expected float, got {value!r}")


def one_of(choices) -> AfterValidator:
    """A check that a value is one of `choices` (the message lists them)."""
    def check(value):
        if value not in choices:
            raise problem(f"must be one of {', '.join(choices)}, got {value!r}")
        return value
    return AfterValidator(check)


def named(what: str) -> AfterValidator:
    """A check that a stage or source name can be a folder name."""
    def check(value: str) -> str:
        if not NAME.match(value):
            raise problem(f"a {what} name is letters, digits, '_', '-' or '.'")
        return value
    return AfterValidator(check)


def _positive(value: float) -> float:
    if value <= 0:
        raise problem(f"a weight must be positive, got {value:g}")
    return value


def source_key(value: str, info) -> str:
    """A key of a stage's `data`: one of the recipe's sources."""
    sources = info.context["sources"]
    if sources is not None and value not in sources:  # None: `sources:` itself is wrong (reported there)
        raise problem(f"unknown key (allowed: {', '.join(sources)})", "unknown_key")
    return value


def source_ref(value: str, info) -> str:
    """A source named in a list (`eval`)."""
    sources = info.context["sources"]
    if sources is not None and value not in sources:
        raise problem(f"no source {value!r} (sources: {', '.join(sources)})")
    return value


Path = Annotated[StrictStr, AfterValidator(_path)]
Folder = Annotated[StrictStr, AfterValidator(_folder)]
ModelDir = Annotated[StrictStr, AfterValidator(_model_dir)]
Paths = Annotated[list[Path], BeforeValidator(one_or_many)]
Number = Annotated[float, BeforeValidator(_number)]
Weight = Annotated[Number, AfterValidator(_positive)]
SourceKey = Annotated[StrictStr, AfterValidator(source_key)]
SourceRef = Annotated[StrictStr, AfterValidator(source_ref)]


class Spec(BaseModel):
    """A block of the recipe: unknown keys refused, each field's docstring its description."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    @model_validator(mode="wrap")
    @classmethod
    def _name_allowed_keys(cls, raw, handler):
        """An unknown key's error says which keys are allowed here (pydantic's says only "extra")."""
        try:
            return handler(raw)
        except ValidationError as exc:
            problems = Problems()
            for error in exc.errors():
                if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
                    problems.add(error["loc"], f"unknown key (allowed: {', '.join(cls.model_fields)})",
                                 error["input"], "unknown_key")
                else:
                    problems.keep((), error)
            problems.raise_if_any()
            raise

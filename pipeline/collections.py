"""Creating collections: one code path for the admin, the API and the command."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from pipeline import providers
from pipeline.embedding import PipelineError, embed_raw
from pipeline.models import Collection, validate_extra_params
from pipeline.models.rules import key_host_problem, portal_variable_problem


def known_dimensions(model: str) -> int | None:
    """A local model's dimensions, None for a provider's; a ValidationError names an unknown local one."""
    try:
        return providers.known_dimensions(model)
    except providers.UnknownLocalModel as exc:
        raise ValidationError({"model": str(exc)}) from None


def check_dimensions(collection: Collection) -> None:
    """A local model's dimensions are the collection's (a ValidationError otherwise)."""
    known = known_dimensions(collection.model)
    if known is not None and known != collection.dimensions:
        raise ValidationError({"dimensions": f"{collection.model} has {known} dimensions, not {collection.dimensions}"})


def resolve_dimensions(collection: Collection, advice: str = "; set dimensions") -> int:
    """Dimensions for the collection's model: known for local models, else asked of the provider."""
    known = known_dimensions(collection.model)
    try:  # before the probe: a malformed value must not reach the provider
        validate_extra_params(collection.extra_params)
    except ValidationError as exc:
        raise ValidationError({"extra_params": exc.messages}) from None
    # Nor a portal variable's value, nor a key to a host not bound to it: this probe runs before the model's
    # validators (create_collection, re-embed, the admin form).
    key_variable = collection.api_key_env
    if problem := portal_variable_problem(key_variable) or key_host_problem(collection.api_base, key_variable):
        raise ValidationError({"api_key_env": problem})
    wanted = (collection.extra_params or {}).get("dimensions")
    if known is not None:
        if wanted is not None and int(wanted) != known:
            raise ValidationError({"extra_params": f"{collection.model} always has {known} dimensions"})
        return known
    if wanted is not None:
        return int(wanted)
    try:
        vectors = embed_raw(collection, ["dimension probe"])
    except PipelineError as exc:
        raise ValidationError(
            {"dimensions": f"could not ask {collection.model} for its dimensions ({exc}){advice}"}
        ) from None
    if not vectors or not len(vectors[0]):
        raise ValidationError({"dimensions": "the model returned no vector; set dimensions"})
    return len(vectors[0])


def check_model_dimensions(collection: Collection) -> None:
    """The collection's dimensions are what its model produces, a provider's model asked with one call
    (a ValidationError otherwise, also when the provider cannot be asked)."""
    produced = resolve_dimensions(collection, advice="")
    if produced != collection.dimensions:
        wrong = f"{collection.model} has {produced} dimensions, not {collection.dimensions}"
        raise ValidationError({"dimensions": wrong})


def create_collection(**fields: Any) -> Collection:
    """Validate and create a collection and its HNSW index (one transaction)."""
    collection = Collection(**fields)
    if collection.dimensions is None:  # not given: ask the model (0 is not "not given": it is refused)
        collection.dimensions = resolve_dimensions(collection)
    else:
        others = [f.name for f in Collection._meta.fields if f.name != "dimensions"]
        collection.clean_fields(exclude=others)  # the model's bounds and messages
        check_dimensions(collection)
    collection.full_clean()
    try:
        with transaction.atomic():
            collection.save()
    except IntegrityError:
        # Created by another request since full_clean looked: the same error as had it been there then.
        collection.validate_unique()
        collection.clean()  # a name in other letter case
        raise
    return collection

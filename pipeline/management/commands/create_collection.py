from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import trail
from pipeline.choices import ChunkingStrategy, ChunkUnit
from pipeline.collections import create_collection
from pipeline.models import Collection
from pipeline.models.collection import DIMENSIONS_RANGE

# Options that carry a collection field's name and value as they are.
SAME_NAMES = "name api_base api_key_env dimensions chunk_size chunk_overlap batch_size provider_concurrency".split()


def _number_or_text(value: str) -> int | str:
    """A whole number as an int (dimensions=256); anything else, "²" and 5000 digits included (digits to
    str.isdigit() that int() refuses), stays text for the extra_params rules to judge."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return value


class Command(BaseCommand):
    help = "Create a collection (and its HNSW index)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--model", default=None, help="LiteLLM model string (default: local/all-MiniLM-L6-v2)")
        low, high = DIMENSIONS_RANGE
        parser.add_argument(
            "--dimensions", type=int, help=f"Vector dimensions, {low} to {high} (omit it to ask the model)"
        )
        parser.add_argument("--api-base", default="")
        parser.add_argument("--api-key-env", default="", help="Name of the env var holding the API key")
        parser.add_argument("--strategy", choices=ChunkingStrategy.values, default=ChunkingStrategy.RECURSIVE)
        parser.add_argument("--unit", choices=ChunkUnit.values, default=ChunkUnit.TOKENS)
        parser.add_argument("--chunk-size", type=int, default=256)
        parser.add_argument("--chunk-overlap", type=int, default=32)
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument(
            "--no-contextual-chunks", action="store_true", help="Embed chunk text alone (no title or heading path)"
        )
        parser.add_argument(
            "--provider-concurrency",
            type=int,
            default=1,
            help="Embedding calls a worker makes at once for one batch with a remote provider (1 to 32)",
        )
        parser.add_argument("--freshness-sla", type=int, help="Freshness SLA in seconds (default 3600)")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Extra LiteLLM parameter (repeatable), e.g. --param dimensions=256",
        )
        parser.add_argument("--if-not-exists", action="store_true", help="Succeed quietly if it exists")
        parser.add_argument("--team", help="The owning team (a group); default: none, the platform's own")

    def handle(self, *args: Any, **o: Any) -> None:
        if Collection.objects.filter(name=o["name"]).exists():
            if o["if_not_exists"]:
                self.stdout.write(f"Collection {o['name']} exists.")
                return
            raise CommandError(f"collection {o['name']!r} already exists")
        extra: dict[str, Any] = {}
        for item in o["param"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--param {item!r}: use KEY=VALUE")
            extra[key] = _number_or_text(value)
        fields: dict[str, Any] = {name: o[name] for name in SAME_NAMES}
        fields.update(
            model=o["model"] or settings.EMBEDPORTAL_DEFAULT_MODEL,
            extra_params=extra,
            chunking_strategy=o["strategy"],
            chunk_unit=o["unit"],
            contextual_chunks=not o["no_contextual_chunks"],
        )
        if o["team"]:
            fields["team"] = Group.objects.filter(name=o["team"]).first()
            if fields["team"] is None:
                raise CommandError(f"no team (group) named {o['team']!r}")
        if o["freshness_sla"] is not None:
            try:
                fields["freshness_sla"] = timedelta(seconds=o["freshness_sla"])
            except OverflowError:
                raise CommandError(
                    f"--freshness-sla {o['freshness_sla']}: more seconds than a duration holds; e.g. 3600 for one hour"
                ) from None
        try:
            collection = create_collection(**fields)
        except ValidationError as exc:
            if o["if_not_exists"] and Collection.objects.filter(name=o["name"]).exists():  # created meanwhile
                self.stdout.write(f"Collection {o['name']} exists.")
                return
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        trail.command(self, collection=collection.name)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created collection {collection.name} ({collection.model}, {collection.dimensions} dimensions, "
                f"index {collection.index_name})"
            )
        )

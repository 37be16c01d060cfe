"""One entry of the settings registry (embedportal.config): an environment variable the app
reads, with its type, default, description and whether it is a secret."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("str", "bool", "int", "float", "list", "path", "secret")


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str
    default: str | int | float | bool
    description: str
    # How the default reads when it is not a literal (a generated key, a path under the data dir).
    default_text: str = ""
    # A number of 0 is refused (a claim batch of 0 stalls every worker) unless it means something here.
    zero_ok: bool = False

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self

    @property
    def secret(self) -> bool:
        """Shown as "set"/"unset" only, and may be read from the file NAME_FILE names."""
        return self.kind == "secret"

    def shown_default(self) -> str:
        return self.default_text or (str(self.default).lower() if isinstance(self.default, bool) else str(self.default))

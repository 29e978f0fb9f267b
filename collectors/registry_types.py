"""What the registry collector and its Harbor and OCI readers share (a module of its own so that
the readers need not import the collector that imports them)."""

from __future__ import annotations

from warehouse.image_repositories import RepositoryOwners


class RegistryError(Exception):
    """A registry request failed; the message names the status and the (redacted) URL."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CodePaths:
    """Image repository -> the code repository paths of the service owning it (label trust)."""

    def __init__(
        self, owners: RepositoryOwners | None = None, paths: dict[int, set[str]] | None = None
    ):
        self.owners = owners or RepositoryOwners([])
        self.paths = paths or {}

    def get(self, repository: str) -> set[str]:
        """The paths of the code repository of `repository`'s service (empty: none known)."""
        found = self.owners.owner(repository)
        return self.paths.get(found[0], set()) if found else set()

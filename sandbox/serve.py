"""Start the sandbox: generate an organisation and serve it through the API simulators."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sandbox.generate import generate
from sandbox.gitlab_api import GitLabSimulator
from sandbox.model import Organisation
from sandbox.server import Faults, RateLimit, SimulatorApp, SimulatorServer


@dataclass
class Sandbox:
    """A running sandbox: the organisation, its simulators and their servers."""

    org: Organisation
    gitlab: GitLabSimulator
    gitlab_app: SimulatorApp
    gitlab_server: SimulatorServer
    token: str

    @classmethod
    def start(
        cls,
        size: str = "small",
        seed: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sandbox-token",
        org: Organisation | None = None,
        at: datetime | None = None,
        rate_limit: RateLimit | None = None,
        keep_log: bool = False,
    ) -> Sandbox:
        """Generate (unless `org` is given) and serve; stop it with `stop()` or a `with` block."""
        org = org or generate(seed, size)
        gitlab = GitLabSimulator(org, token=token, at=at)
        app = SimulatorApp(
            gitlab.router,
            auth=gitlab.authorised,
            rate_limit=rate_limit,
            faults=Faults(),
            keep_log=keep_log,
        )
        server = SimulatorServer(app, host=host, port=port)
        server.start()
        return cls(org, gitlab, app, server, token)

    @property
    def gitlab_url(self) -> str:
        return self.gitlab_server.url

    def config(self, token_env: str = "SANDBOX_GITLAB_TOKEN") -> str:
        """A cdmetrics.toml fragment that syncs this sandbox."""
        return (
            "[sync]\nrequests_per_second = 0\n\n"
            f'[[sources.gitlab]]\nname = "gitlab"\nurl = "{self.gitlab_url}"\n'
            f'token_env = "{token_env}"\ngroups = ["{self.org.root_group}"]\n'
        )

    def describe(self) -> str:
        """What is being served and how to sync it."""
        o = self.org
        return (
            f"sandbox {o.size} (seed {o.seed}): {len(o.teams)} teams, {len(o.services)} services, "
            f"history {o.start:%Y-%m-%d} to {o.now:%Y-%m-%d}\n"
            f"GitLab API simulator: {self.gitlab_url}/api/v4 (token: {self.token})\n\n"
            f"export SANDBOX_GITLAB_TOKEN={self.token}\n# cdmetrics.toml\n{self.config()}"
        )

    def stop(self) -> None:
        self.gitlab_server.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
